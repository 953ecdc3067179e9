"""ElevenLabs' options: how one context is synthesised on the multi-context WebSocket.

Two kinds of fields, and the difference matters for pooling:

* **Connection fields** travel in the WebSocket URL (``/v1/text-to-speech/{voice_id}/
  multi-stream-input?model_id=...&output_format=...``): the voice, the model, the output
  format, the language, normalisation, alignment, ``auto_mode``, ``inactivity_timeout``.
  Contexts share a socket only when all of them are equal (the provider's connection key).
* **Context fields** travel in the context's first message (``voice_settings``,
  ``chunk_length_schedule``, pronunciation dictionaries): contexts that differ only in them
  share a socket.

Names follow the official ``livekit-plugins-elevenlabs`` (``voice_id``, ``model``,
``language``, ``voice_settings``, ``auto_mode``, ``chunk_length_schedule`` ...), except
``output_format``, which LiveKit calls ``encoding`` (here ``encoding`` is the engine's
:class:`~trio_tts.AudioEncoding`, derived from the format).
"""

from __future__ import annotations

from typing import Any, Final, Literal

import attrs

from ..._core.errors import InvalidOptions
from ..._core.options import AudioEncoding, check, check_fields, check_names, is_number

__all__ = [
    "DIALOGUE_MODEL_PREFIXES",
    "LANGUAGE_MODELS",
    "MODELS",
    "OUTPUT_FORMATS",
    "ElevenLabsOptions",
    "OutputFormat",
    "VoiceSettings",
    "parse_output_format",
]

#: The text-to-speech models of ``multi-stream-input`` (``GET /v1/models``, 2026-12).
MODELS: Final = (
    "eleven_flash_v2_5",
    "eleven_turbo_v2_5",
    "eleven_multilingual_v2",
    "eleven_flash_v2",
    "eleven_turbo_v2",
    "eleven_multilingual_v1",
    "eleven_monolingual_v1",
)
#: Models that speak the text-to-dialogue protocol (another endpoint, other messages); the
#: multi-context WebSocket is "not available for the eleven_v3 model" (ElevenLabs' guide).
DIALOGUE_MODEL_PREFIXES: Final = ("eleven_v3", "eleven_v4")
#: The models that take ``language_code`` (the others answer it with an error).
LANGUAGE_MODELS: Final = ("eleven_flash_v2_5", "eleven_turbo_v2_5")
#: Models on which ``apply_text_normalization="on"`` cannot be turned on.
_NO_FORCED_NORMALIZATION: Final = ("eleven_flash_v2_5", "eleven_turbo_v2_5")

#: ``output_format`` → (encoding, sample rate, bit rate in kbit/s or None).
OUTPUT_FORMATS: Final[dict[str, tuple[AudioEncoding, int, int | None]]] = {
    **{f"pcm_{rate}": (AudioEncoding.PCM, rate, None)
       for rate in (8000, 16000, 22050, 24000, 32000, 44100, 48000)},
    "ulaw_8000": (AudioEncoding.MULAW, 8000, None),
    "mp3_22050_32": (AudioEncoding.MP3, 22050, 32),
    "mp3_24000_48": (AudioEncoding.MP3, 24000, 48),
    "mp3_44100": (AudioEncoding.MP3, 44100, 128),  # LiveKit's list; ElevenLabs' 128 kbit/s
    **{f"mp3_44100_{kbps}": (AudioEncoding.MP3, 44100, kbps) for kbps in (32, 64, 96, 128, 192)},
    **{f"opus_48000_{kbps}": (AudioEncoding.OGG_OPUS, 48000, kbps)
       for kbps in (32, 64, 96, 128, 192)},
}  # fmt: skip

OutputFormat = Literal[
    "pcm_8000", "pcm_16000", "pcm_22050", "pcm_24000", "pcm_32000", "pcm_44100", "pcm_48000",
    "ulaw_8000", "mp3_22050_32", "mp3_24000_48", "mp3_44100", "mp3_44100_32", "mp3_44100_64",
    "mp3_44100_96", "mp3_44100_128", "mp3_44100_192",
    "opus_48000_32", "opus_48000_64", "opus_48000_96", "opus_48000_128", "opus_48000_192",
]  # fmt: skip

#: LiveKit's default voice (``livekit-plugins-elevenlabs``' ``DEFAULT_VOICE_ID``).
DEFAULT_VOICE_ID: Final = "hpp4J3VqNfWAUOO0d1Us"


def parse_output_format(output_format: object) -> tuple[AudioEncoding, int, int | None]:
    """``(encoding, sample_rate, kbit/s)`` of an ``output_format`` name such as ``pcm_24000``.

    Raises:
        InvalidOptions: not one of :data:`OUTPUT_FORMATS` (e.g. ``pcm_11025``, ``mp3_8000``).
    """
    found = OUTPUT_FORMATS.get(output_format) if isinstance(output_format, str) else None
    if found is None:
        raise InvalidOptions(
            f"output_format: {output_format!r} is not one of {', '.join(OUTPUT_FORMATS)}"
        )
    return found


def _unit(name: str, value: object, low: float = 0.0, high: float = 1.0) -> None:
    check(
        value is None or (is_number(value) and low <= value <= high),  # type: ignore[operator]
        name,
        f"{value!r} is outside {low:g}..{high:g}",
    )


@attrs.frozen(kw_only=True)
class VoiceSettings:
    """The ``voice_settings`` of a context's first message (None: the voice's stored value).

    Ranges are ElevenLabs': ``stability``, ``similarity_boost`` and ``style`` in 0..1,
    ``speed`` in 0.7..1.2 (1.0 is normal), ``use_speaker_boost`` a bool.

    Raises:
        InvalidOptions: a value out of range or of the wrong type.
    """

    stability: float | None = None
    similarity_boost: float | None = None
    style: float | None = None
    use_speaker_boost: bool | None = None
    speed: float | None = None

    def __attrs_post_init__(self) -> None:
        for name in ("stability", "similarity_boost", "style"):
            _unit(f"voice_settings.{name}", getattr(self, name))
        _unit("voice_settings.speed", self.speed, 0.7, 1.2)
        check(
            self.use_speaker_boost is None or isinstance(self.use_speaker_boost, bool),
            "voice_settings.use_speaker_boost",
            "must be a bool or None",
        )

    def to_json(self) -> dict[str, Any]:
        """The fields that are set, as ElevenLabs names them."""
        return {k: v for k, v in attrs.asdict(self).items() if v is not None}


def _to_voice_settings(value: object) -> VoiceSettings | None:
    """An attrs converter: a mapping becomes :class:`VoiceSettings` (unknown keys refused)."""
    if value is None or isinstance(value, VoiceSettings):
        return value
    if isinstance(value, dict):
        unknown = set(value) - {f.name for f in attrs.fields(VoiceSettings)}
        if unknown:
            raise InvalidOptions(f"voice_settings: unknown field(s) {', '.join(sorted(unknown))}")
        return VoiceSettings(**value)
    raise InvalidOptions(f"voice_settings: expected VoiceSettings, got {type(value).__name__}")


def _to_tuple(value: object) -> object:
    return tuple(value) if isinstance(value, list) else value


def _to_pairs(value: object) -> object:
    if not isinstance(value, list | tuple):
        return value
    return tuple(tuple(p) if isinstance(p, list | tuple) else p for p in value)


@attrs.frozen(kw_only=True)
class ElevenLabsOptions:
    """How one ElevenLabs context is synthesised (``multi-stream-input``).

    Example::

        opts = ElevenLabsOptions(voice_id="21m00Tcm4TlvDq8ikWAM", output_format="pcm_16000")
        calmer = opts.replace(voice_settings=VoiceSettings(stability=0.8, speed=0.9))

    Connection fields (in the URL; contexts share a socket only when these are equal):
    ``voice_id``, ``model``, ``output_format`` (its sample rate is the format's),
    ``language`` (``language_code``, ISO 639-1; only the ``*_v2_5`` models take it),
    ``apply_text_normalization`` (``auto``/``on``/``off``; ``on`` is refused by the ``*_v2_5``
    models), ``apply_language_text_normalization``, ``enable_ssml_parsing``,
    ``enable_logging`` (False: zero-retention mode), ``inactivity_timeout`` (1..180 s: the
    server closes a context that long without input; the pool sends keep-alives),
    ``sync_alignment`` (timings with every audio chunk), ``auto_mode`` (None: not sent).

    Context fields (in the context's first message): ``voice_settings``,
    ``chunk_length_schedule`` (1..4 sizes of 50..500 characters), and
    ``pronunciation_dictionary_locators`` (up to 3 ``(id, version_id)`` pairs).

    ``preferred_alignment`` picks which timings become :attr:`~trio_tts.Audio.words`: the
    ``normalized`` text's (LiveKit's default) or the ``original`` text's.

    Raises:
        InvalidOptions: an unknown or text-to-dialogue model (``eleven_v3``, ``eleven_v4``:
            another protocol), an unsupported output format, a language the model cannot
            take, a value out of range.
    """

    voice_id: str = DEFAULT_VOICE_ID
    model: str = "eleven_turbo_v2_5"
    output_format: str = "pcm_24000"
    language: str | None = None
    voice_settings: VoiceSettings | None = attrs.field(default=None, converter=_to_voice_settings)
    apply_text_normalization: Literal["auto", "on", "off"] | None = "auto"
    apply_language_text_normalization: bool | None = None
    enable_ssml_parsing: bool = False
    enable_logging: bool = True
    inactivity_timeout: int = 180
    sync_alignment: bool = True
    auto_mode: bool | None = None
    chunk_length_schedule: tuple[int, ...] | None = attrs.field(default=None, converter=_to_tuple)
    pronunciation_dictionary_locators: tuple[tuple[str, str], ...] | None = attrs.field(
        default=None, converter=_to_pairs
    )
    preferred_alignment: Literal["normalized", "original"] = "normalized"

    def __attrs_post_init__(self) -> None:
        check_names(self, "voice_id", "model")
        if self.model.startswith(DIALOGUE_MODEL_PREFIXES):
            raise InvalidOptions(
                f"model: {self.model!r} speaks ElevenLabs' text-to-dialogue protocol, not the"
                " multi-context WebSocket (use one of " + ", ".join(MODELS) + ")"
            )
        check(self.model in MODELS, "model", f"{self.model!r} is not one of {', '.join(MODELS)}")
        parse_output_format(self.output_format)
        if self.language is not None:
            check(
                isinstance(self.language, str)
                and 2 <= len(self.language) <= 3
                and self.language.isascii()
                and self.language.isalpha(),
                "language",
                f"{self.language!r} is not an ISO 639-1 code (e.g. 'en')",
            )
            check(
                self.model in LANGUAGE_MODELS,
                "language",
                f"model {self.model!r} takes no language_code (only {', '.join(LANGUAGE_MODELS)})",
            )
        check(
            self.apply_text_normalization in (None, "auto", "on", "off"),
            "apply_text_normalization",
            f"{self.apply_text_normalization!r} is not 'auto', 'on', 'off' or None",
        )
        check(
            not (self.apply_text_normalization == "on" and self.model in _NO_FORCED_NORMALIZATION),
            "apply_text_normalization",
            f"cannot be 'on' with model {self.model!r}",
        )
        for name in ("enable_ssml_parsing", "enable_logging", "sync_alignment"):
            check(isinstance(getattr(self, name), bool), name, "must be True or False")
        for name in ("apply_language_text_normalization", "auto_mode"):
            value = getattr(self, name)
            check(value is None or isinstance(value, bool), name, "must be a bool or None")
        check(
            isinstance(self.inactivity_timeout, int)
            and not isinstance(self.inactivity_timeout, bool)
            and 1 <= self.inactivity_timeout <= 180,
            "inactivity_timeout",
            f"{self.inactivity_timeout!r} is not an integer in 1..180 (seconds)",
        )
        schedule = self.chunk_length_schedule
        if schedule is not None:
            check(
                isinstance(schedule, tuple)
                and 1 <= len(schedule) <= 4
                and all(
                    isinstance(n, int) and not isinstance(n, bool) and 50 <= n <= 500
                    for n in schedule
                ),
                "chunk_length_schedule",
                f"{schedule!r} is not 1..4 sizes in 50..500",
            )
        locators = self.pronunciation_dictionary_locators
        if locators is not None:
            check(
                isinstance(locators, tuple)
                and 1 <= len(locators) <= 3
                and all(
                    isinstance(pair, tuple)
                    and len(pair) == 2
                    and all(isinstance(s, str) and s for s in pair)
                    for pair in locators
                ),
                "pronunciation_dictionary_locators",
                "must be 1..3 (pronunciation_dictionary_id, version_id) pairs",
            )
        check(
            self.preferred_alignment in ("normalized", "original"),
            "preferred_alignment",
            f"{self.preferred_alignment!r} is not 'normalized' or 'original'",
        )

    # -- the engine's Options protocol

    @property
    def voice(self) -> str:
        """The voice id (the name every provider's options share)."""
        return self.voice_id

    @property
    def encoding(self) -> AudioEncoding:
        """The output format's encoding: raw 16-bit ``PCM``, ``MULAW``, ``MP3`` or
        ``OGG_OPUS`` (each context's chunks concatenate into one stream)."""
        return OUTPUT_FORMATS[self.output_format][0]

    @property
    def sample_rate(self) -> int:
        """The output format's sample rate (Hz): ``pcm_16000`` → 16000."""
        return OUTPUT_FORMATS[self.output_format][1]

    def replace(self, **changes: Any) -> ElevenLabsOptions:
        """Return a copy with ``changes`` applied (validated the same way).

        Raises:
            InvalidOptions: for an unknown field name or an invalid value.
        """
        check_fields(ElevenLabsOptions, changes)
        return attrs.evolve(self, **changes)

    # -- the wire

    def query(self) -> dict[str, str]:
        """The URL query of the context's connection, in LiveKit's order (booleans as
        ``true``/``false``; unset fields are not sent)."""
        params: dict[str, object] = {"model_id": self.model, "output_format": self.output_format}
        if self.language is not None:
            params["language_code"] = self.language
        params["enable_ssml_parsing"] = self.enable_ssml_parsing
        params["enable_logging"] = self.enable_logging
        params["inactivity_timeout"] = self.inactivity_timeout
        if self.apply_text_normalization is not None:
            params["apply_text_normalization"] = self.apply_text_normalization
        if self.apply_language_text_normalization is not None:
            params["apply_language_text_normalization"] = self.apply_language_text_normalization
        if self.sync_alignment:
            params["sync_alignment"] = True
        if self.auto_mode is not None:
            params["auto_mode"] = self.auto_mode
        return {
            k: ("true" if v else "false") if isinstance(v, bool) else str(v)
            for k, v in params.items()
        }

    def context_fields(self) -> dict[str, Any]:
        """The fields of the context's first message besides ``text`` and ``context_id``:
        ``voice_settings`` (``{}`` when unset, as LiveKit sends it), ``generation_config``
        and ``pronunciation_dictionary_locators`` when set."""
        fields: dict[str, Any] = {
            "voice_settings": {} if self.voice_settings is None else self.voice_settings.to_json()
        }
        if self.chunk_length_schedule is not None:
            schedule = list(self.chunk_length_schedule)
            fields["generation_config"] = {"chunk_length_schedule": schedule}
        if self.pronunciation_dictionary_locators is not None:
            fields["pronunciation_dictionary_locators"] = [
                {"pronunciation_dictionary_id": d, "version_id": v}
                for d, v in self.pronunciation_dictionary_locators
            ]
        return fields
