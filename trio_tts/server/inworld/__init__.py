"""Inworld's protocol on the local server (a peer of :mod:`..rime`).

* :mod:`.proto` — the WebSocket and HTTP codec (sans-io);
* :mod:`.config_rules` — what a context's configuration may be; :mod:`.codecs` and
  :mod:`.chunks` — its audio, cut into frames;
* :mod:`.session` — one ``voice:streamBidirectional`` connection; :mod:`.session_faults` —
  its context-level faults;
* :mod:`.http` — ``voice:stream``, ``voice`` and ``voices``.
"""
