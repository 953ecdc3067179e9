"""The TTS services the engine speaks, each a package of the same four modules:

* ``options`` — the frozen, validated options class (``VoiceOptions``, ``RimeOptions``,
  ``ElevenLabsOptions``, ``CartesiaOptions``);
* ``codec`` — the sans-io client codec of the WebSocket (a :class:`~trio_tts.ClientCodec`);
* ``provider`` — the :class:`~trio_tts.Provider`: URL, credential, limits (``DEFAULT_URL``);
* ``http`` — the HTTP client (``DEFAULT_HTTP_URL``): one-shot synthesis (``request_body``)
  and, for Inworld and ElevenLabs, the voice list.

The peers: ``inworld``, ``rime``, ``elevenlabs`` and ``cartesia``.

:mod:`.http_common` is what the HTTP clients share. The public names are re-exported from
:mod:`trio_tts` and :mod:`trio_tts.http`.
"""
