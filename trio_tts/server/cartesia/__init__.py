"""Cartesia's protocol on the local server (a peer of :mod:`..inworld` and :mod:`..rime`).

* :mod:`.proto` — the ``/tts/websocket`` JSON codec (sans-io);
* :mod:`.config` — what a context may ask for; :mod:`.voices` — the voices under
  Cartesia-style ids; :mod:`.pcm` — the raw encodings (s16le, f32le, µ-law, A-law);
* :mod:`.auth` — the handshake: key and API version;
* :mod:`.session` — one ``/tts/websocket`` connection and its contexts;
* :mod:`.http` — ``GET /voices``.
"""
