"""What an ElevenLabs WebSocket asks for: voice, model, output format, timeouts (pure).

The voice id is in the path (``/v1/text-to-speech/{voice_id}/...``), the rest in the query
(``model_id``, ``output_format``, ``language_code``, ``inactivity_timeout``, ``sync_alignment``,
``auto_mode``, ``enable_ssml_parsing``, ``enable_logging``, ``apply_text_normalization``). Both
become one :class:`ElevenLabsConfig`, or an :class:`ElevenLabsError` with ElevenLabs' error
name (``voice_not_found``, ``model_not_found``, ``invalid_output_format`` ...) that the session
sends before closing the socket with 1008.

Voices: ElevenLabs' premade voices are listed under their real ids, each spoken by one of the
server's eSpeak voices (:data:`VOICE_IDS`; the LiveKit plugin's default ``hpp4J3VqNfWAUOO0d1Us``,
"Bella", is one of them). A local voice name (``Dennis``) is accepted as a voice id too, as on
the server's Rime endpoint; any other id is ``voice_not_found``.

Output formats: ``pcm_{8000,16000,22050,24000,32000,44100,48000}`` (raw int16 LE),
``ulaw_8000`` (G.711 mu-law), ``mp3_{22050_32, 24000_48, 44100[_32|_64|_96|_128|_192]}``
(one continuous MP3 per context, LAME through libsndfile) and
``opus_48000_{32,64,96,128,192}`` (one Ogg Opus stream per context). Anything else is
``invalid_output_format``, including combinations ElevenLabs lists but the local encoders do not
make (``alaw_8000``, ``mp3_44100_192`` is made; ``mp3_16000_*`` is not an ElevenLabs format).
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Callable

import attrs

from .._asgi import Scope
from .._voices import VOICES

__all__ = [
    "DEFAULT_INACTIVITY_TIMEOUT",
    "DEFAULT_MODEL",
    "DIALOGUE_MODELS",
    "MAX_INACTIVITY_TIMEOUT",
    "MODELS",
    "VOICE_IDS",
    "AudioFormat",
    "ElevenLabsConfig",
    "ElevenLabsError",
    "parse_format",
    "parse_query",
    "voice_for",
]

DEFAULT_MODEL = "eleven_multilingual_v2"
#: Models that speak on ``/text-to-speech/.../(multi-)stream-input``.
MODELS = (
    "eleven_monolingual_v1", "eleven_multilingual_v1", "eleven_multilingual_v2",
    "eleven_turbo_v2", "eleven_turbo_v2_5", "eleven_flash_v2", "eleven_flash_v2_5",
)  # fmt: skip
#: Models ElevenLabs serves only through text-to-dialogue (not on these WebSockets).
DIALOGUE_MODELS = ("eleven_v3", "eleven_v3_conversational", "eleven_v4", "eleven_v4_turbo")
DEFAULT_INACTIVITY_TIMEOUT = 20.0
MAX_INACTIVITY_TIMEOUT = 180.0

#: ElevenLabs premade voice id → (name, the local voice that speaks it). Chosen by gender and
#: accent from the voice's public description.
VOICE_IDS: dict[str, tuple[str, str]] = {
    "hpp4J3VqNfWAUOO0d1Us": ("Bella", "Ashley"),  # professional, bright, warm (US female)
    "21m00Tcm4TlvDq8ikWAM": ("Rachel", "Claire"),  # calm young American woman
    "EXAVITQu4vr4xnSDxMaL": ("Sarah", "Lauren"),  # mature, reassuring American woman
    "FGY2WhTYpPnrIDTdsKH5": ("Laura", "Kayla"),  # enthusiastic young American woman
    "XrExE9yKIg1WjnnlVkGX": ("Matilda", "Kelsey"),  # knowledgeable, professional woman
    "cgSgspJ2msm6clMCkdW9": ("Jessica", "Jessica"),  # playful, bright American woman
    "Xb7hH8MSUJpSbSDYk0k2": ("Alice", "Olivia"),  # clear British woman
    "pFZP5JQG7iQjIQuC4Bku": ("Lily", "Victoria"),  # velvety British woman
    "XB0fDUnXU5powFXDhCwa": ("Charlotte", "Wendy"),  # seductive, calm woman
    "SAz9YHcvj6GT2YYXdXww": ("River", "Luna"),  # relaxed, neutral voice
    "JBFqnCBsd6RMkjVDRZzb": ("George", "Clive"),  # warm British storyteller
    "onwK4e9ZLuTAKqWW03F9": ("Daniel", "Graham"),  # steady British broadcaster
    "N2lVS1w4EtoT3dr4eOWO": ("Callum", "Sebastian"),  # husky trickster
    "IKne3meq5aSn9XLyUdCD": ("Charlie", "Callum"),  # deep, confident Australian man
    "TX3LPaxmHKxFdv7VOQHJ": ("Liam", "Jason"),  # energetic young American man
    "bIHbv24MWmeRgasZH58o": ("Will", "Evan"),  # relaxed optimist
    "cjVigY5qzO86Huf0OWal": ("Eric", "Dennis"),  # smooth, trustworthy American man
    "iP95p4xoKVk53GoZ742B": ("Chris", "Nate"),  # charming, down-to-earth man
    "nPczCjzI2devNBz1zQrb": ("Brian", "Brian"),  # deep, resonant American man
    "pqHfZKP75CvOlQylNhV4": ("Bill", "Theodore"),  # wise, mature American man
    "pNInz6obpgDQGcFmaJgB": ("Adam", "Derek"),  # dominant, firm American man
    "CwhRBWXzGAHq8TQ4Fs17": ("Roger", "Carter"),  # laid-back, casual man
    "ErXwobaYiN019PkySvjV": ("Antoni", "Alex"),  # well-rounded American man
}

_PCM_RATES = (8000, 16000, 22050, 24000, 32000, 44100, 48000)
_MP3_FORMATS = {
    "mp3_22050_32": (22050, 32), "mp3_24000_48": (24000, 48), "mp3_44100": (44100, 128),
    "mp3_44100_32": (44100, 32), "mp3_44100_64": (44100, 64), "mp3_44100_96": (44100, 96),
    "mp3_44100_128": (44100, 128), "mp3_44100_192": (44100, 192),
}  # fmt: skip
_OPUS_BITRATES = (32, 64, 96, 128, 192)
_TRUE = ("true", "1")
_FALSE = ("false", "0")


class ElevenLabsError(Exception):
    """A refusal as ElevenLabs words it: ``error`` is its machine name, ``message`` the text.

    ``code`` is the WebSocket close code that follows (1008, policy violation)."""

    def __init__(self, error: str, message: str, code: int = 1008) -> None:
        super().__init__(message)
        self.error = error
        self.message = message
        self.code = code


@attrs.frozen
class AudioFormat:
    """An ``output_format``: ``kind`` is ``pcm``, ``ulaw``, ``mp3`` or ``opus``."""

    name: str
    kind: str
    sample_rate: int
    bit_rate: int = 0  # bits per second (mp3, opus)

    @property
    def encoding(self) -> str | None:
        """The :class:`~..inworld.codecs.StreamEncoder` encoding, or None for pcm/ulaw."""
        return {"mp3": "MP3", "opus": "OGG_OPUS"}.get(self.kind)


def parse_format(name: str) -> AudioFormat:
    """``output_format`` → :class:`AudioFormat`.

    Raises:
        ElevenLabsError: ``invalid_output_format``.
    """
    kind, _, rest = name.partition("_")
    if kind == "pcm" and rest.isdigit() and int(rest) in _PCM_RATES:
        return AudioFormat(name, "pcm", int(rest))
    if name == "ulaw_8000":
        return AudioFormat(name, "ulaw", 8000)
    if name in _MP3_FORMATS:
        rate, kbps = _MP3_FORMATS[name]
        return AudioFormat(name, "mp3", rate, kbps * 1000)
    match = re.fullmatch(r"opus_48000_(\d+)", name)
    if match and int(match[1]) in _OPUS_BITRATES:
        return AudioFormat(name, "opus", 48000, int(match[1]) * 1000)
    raise ElevenLabsError(
        "invalid_output_format",
        f"Invalid output format '{name}'. The local server supports pcm_8000..pcm_48000, "
        "ulaw_8000, mp3_22050_32, mp3_24000_48, mp3_44100[_32|_64|_96|_128|_192] and "
        "opus_48000_{32,64,96,128,192}.",
    )


def voice_for(voice_id: str) -> str:
    """The local voice that speaks ``voice_id``.

    Raises:
        ElevenLabsError: ``voice_not_found``.
    """
    if voice_id in VOICE_IDS:
        return VOICE_IDS[voice_id][1]
    if voice_id in VOICES:
        return voice_id
    raise ElevenLabsError("voice_not_found", f"A voice with voice_id {voice_id} was not found.")


@attrs.frozen
class ElevenLabsConfig:
    """One connection's settings, from its path and query."""

    voice_id: str
    voice: str  # the local voice
    model_id: str
    audio: AudioFormat
    inactivity_timeout: float = DEFAULT_INACTIVITY_TIMEOUT
    language_code: str | None = None
    sync_alignment: bool = False
    auto_mode: bool = False


def _flag(get: Callable[[str], str | None], key: str) -> bool:
    value = get(key)
    if value is None or value.lower() in _FALSE:
        return False
    if value.lower() in _TRUE:
        return True
    raise ElevenLabsError("invalid_request", f"{key} must be true or false, not {value!r}")


def parse_query(
    scope: Scope, voice_id: str, *, default_format: str, model_id: str | None = None
) -> ElevenLabsConfig:
    """The settings from the path's voice id and the query (``model_id``, if given, instead
    of the query's: an HTTP request names its model in its body).

    Raises:
        ElevenLabsError: an unknown voice or model, an unsupported format, a bad value.
    """
    query = urllib.parse.parse_qs(bytes(scope.get("query_string", b"")).decode("latin-1"))

    def get(key: str) -> str | None:
        values = query.get(key)
        return values[-1] if values else None

    voice = voice_for(voice_id)
    model = model_id or get("model_id") or DEFAULT_MODEL
    if model in DIALOGUE_MODELS:
        raise ElevenLabsError(
            "unsupported_model",
            f"Model {model} is not supported on this WebSocket; use text-to-dialogue.",
        )
    if model not in MODELS:
        raise ElevenLabsError("model_not_found", f"A model with model ID {model} does not exist.")
    audio = parse_format(get("output_format") or default_format)
    raw = get("inactivity_timeout")
    timeout = DEFAULT_INACTIVITY_TIMEOUT
    if raw is not None:
        try:
            timeout = float(raw)
        except ValueError:
            timeout = -1.0
        if not 0 < timeout <= MAX_INACTIVITY_TIMEOUT:
            raise ElevenLabsError(
                "invalid_request",
                f"inactivity_timeout must be a number of seconds in (0, "
                f"{MAX_INACTIVITY_TIMEOUT:g}], not {raw!r}",
            )
    for key in ("enable_ssml_parsing", "enable_logging"):
        _flag(get, key)
    normalization = get("apply_text_normalization")
    if normalization not in (None, "auto", "on", "off"):
        raise ElevenLabsError(
            "invalid_request",
            f"apply_text_normalization must be auto, on or off, not {normalization!r}",
        )
    return ElevenLabsConfig(
        voice_id=voice_id, voice=voice, model_id=model, audio=audio, inactivity_timeout=timeout,
        language_code=get("language_code"), sync_alignment=_flag(get, "sync_alignment"),
        auto_mode=_flag(get, "auto_mode"),
    )  # fmt: skip
