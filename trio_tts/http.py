"""One-shot HTTP synthesis and voice listing: Inworld's :class:`HTTPClient` and Rime's
:class:`RimeHTTPClient` (httpx, on trio). The clients live beside their providers in
``trio_tts.providers``; this module is their public home."""

from .providers.http import DEFAULT_HTTP_URL as DEFAULT_HTTP_URL
from .providers.http import STREAM_PATH as STREAM_PATH
from .providers.http import VOICES_PATH as VOICES_PATH
from .providers.http import AudioStream as AudioStream
from .providers.http import HTTPClient as HTTPClient
from .providers.http import RequestRejected as RequestRejected
from .providers.http import RimeHTTPClient as RimeHTTPClient
from .providers.http import Synthesis as Synthesis
from .providers.http import Voice as Voice
from .providers.http import request_body as request_body
