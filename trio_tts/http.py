"""One-shot HTTP synthesis and voice listing: Inworld's :class:`InworldHTTPClient` (also
:class:`HTTPClient`, its first name), Rime's :class:`RimeHTTPClient`, ElevenLabs'
:class:`ElevenLabsHTTPClient` and Cartesia's :class:`CartesiaHTTPClient` (httpx, on trio).

The clients live beside their providers (``trio_tts.providers.inworld.http``,
``trio_tts.providers.rime.http``, ``trio_tts.providers.elevenlabs.http``,
``trio_tts.providers.cartesia.http``); this module is their
public home.
"""

from ._core.errors import RequestRejected as RequestRejected
from .providers.cartesia.http import CartesiaAudioStream as CartesiaAudioStream
from .providers.cartesia.http import CartesiaHTTPClient as CartesiaHTTPClient
from .providers.cartesia.http import CartesiaVoice as CartesiaVoice
from .providers.elevenlabs.http import ElevenLabsAudioStream as ElevenLabsAudioStream
from .providers.elevenlabs.http import ElevenLabsHTTPClient as ElevenLabsHTTPClient
from .providers.elevenlabs.http import ElevenLabsVoice as ElevenLabsVoice
from .providers.http_common import Synthesis as Synthesis
from .providers.inworld.http import DEFAULT_HTTP_URL as DEFAULT_HTTP_URL
from .providers.inworld.http import STREAM_PATH as STREAM_PATH
from .providers.inworld.http import VOICES_PATH as VOICES_PATH
from .providers.inworld.http import AudioStream as AudioStream
from .providers.inworld.http import HTTPClient as HTTPClient
from .providers.inworld.http import InworldAudioStream as InworldAudioStream
from .providers.inworld.http import InworldHTTPClient as InworldHTTPClient
from .providers.inworld.http import Voice as Voice
from .providers.inworld.http import request_body as request_body
from .providers.rime.http import RimeAudioStream as RimeAudioStream
from .providers.rime.http import RimeHTTPClient as RimeHTTPClient
