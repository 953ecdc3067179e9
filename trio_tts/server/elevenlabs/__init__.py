"""ElevenLabs' protocols on the local server (a peer of :mod:`..inworld` and :mod:`..rime`).

* :mod:`.config` — the path's voice id and the query (model, output format, timeouts), and the
  table of ElevenLabs voice ids the server speaks;
* :mod:`.proto` — the JSON messages both WebSockets share (sans-io);
* :mod:`.session` — what both WebSockets share (the protocol's rules are in its docstring);
  :mod:`.multi` — ``/v1/text-to-speech/{voice_id}/multi-stream-input`` (multi-context);
  :mod:`.single` — ``.../stream-input`` (single context);
* :mod:`.http` — ``GET /v1/voices`` and ``POST /v1/text-to-speech/{voice_id}[/stream]``.
"""
