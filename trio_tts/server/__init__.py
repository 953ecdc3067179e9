"""The local speech server: the providers' TTS protocols on 127.0.0.1, with real speech (eSpeak NG).

Inworld's HTTP (``voice:stream``, ``voices``) and bidirectional WebSocket, Rime's ``/ws3`` and
``/v1/rime-tts``, ElevenLabs' ``/v1/text-to-speech/{voice_id}/multi-stream-input``,
``.../stream-input`` and ``/v1/voices``, and Cartesia's ``/tts/websocket`` and ``GET /voices``
share one port, so the official ``livekit-plugins-inworld``, ``-rime``, ``-elevenlabs`` and
``-cartesia``, the ``elevenlabs`` and ``cartesia`` SDKs and trio_tts's own pool work against it
unmodified (the routes: :mod:`._app`). It enforces the providers' limits and can inject faults
for tests.

Example::

    from trio_tts.server import ServerConfig, open_server

    async with open_server(ServerConfig(synthesizer="tone")) as server:
        ...  # connect to server.ws_url / server.base_url

From asyncio or any other code that is not trio, ``with open_server_in_thread(config) as
server:`` runs it in a thread of its own.
"""

from ._app import App as App
from ._core import Core as Core
from ._core import ServerConfig as ServerConfig
from ._core import ServerStatistics as ServerStatistics
from ._faults import AcceptThenClose as AcceptThenClose
from ._faults import BadFrame as BadFrame
from ._faults import BlackHole as BlackHole
from ._faults import CloseAfterContexts as CloseAfterContexts
from ._faults import CloseConnection as CloseConnection
from ._faults import ContextErrorFault as ContextErrorFault
from ._faults import DelayFirstAudio as DelayFirstAudio
from ._faults import DropConnection as DropConnection
from ._faults import Faults as Faults
from ._faults import NoHandshakeAnswer as NoHandshakeAnswer
from ._faults import PaceAudio as PaceAudio
from ._faults import RejectHandshake as RejectHandshake
from ._faults import Stall as Stall
from ._faults import StallContext as StallContext
from ._faults import StrayAudio as StrayAudio
from ._server import LocalServer as LocalServer
from ._server import open_server as open_server
from ._server import run_forever as run_forever
from ._server import serve as serve
from ._speech import Speech as Speech
from ._speech import UnknownVoice as UnknownVoice
from ._synth import EspeakSynthesizer as EspeakSynthesizer
from ._synth import Synthesizer as Synthesizer
from ._synth import ToneSynthesizer as ToneSynthesizer
from ._synth import tone_pcm as tone_pcm
from ._synth import tone_speech as tone_speech
from ._thread import open_server_in_thread as open_server_in_thread
from ._voices import VOICES as VOICES
from ._voices import VoiceInfo as VoiceInfo

__all__ = [
    "VOICES",
    "AcceptThenClose",
    "App",
    "BadFrame",
    "BlackHole",
    "CloseAfterContexts",
    "CloseConnection",
    "ContextErrorFault",
    "Core",
    "DelayFirstAudio",
    "DropConnection",
    "EspeakSynthesizer",
    "Faults",
    "LocalServer",
    "NoHandshakeAnswer",
    "PaceAudio",
    "RejectHandshake",
    "ServerConfig",
    "ServerStatistics",
    "Speech",
    "Stall",
    "StallContext",
    "StrayAudio",
    "Synthesizer",
    "ToneSynthesizer",
    "UnknownVoice",
    "VoiceInfo",
    "open_server",
    "open_server_in_thread",
    "run_forever",
    "serve",
    "tone_pcm",
    "tone_speech",
]
