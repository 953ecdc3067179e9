"""Rime's protocol on the local server (a peer of :mod:`..inworld`).

* :mod:`.proto` — the ``/ws3`` JSON codec (sans-io);
* :mod:`.config` — what a connection or request asks for (speaker, rate, segmentation);
* :mod:`.session` — one ``/ws3`` connection; :mod:`.session_faults` — its utterance-level
  faults;
* :mod:`.http` — the one-shot ``/v1/rime-tts``.
"""
