"""Inworld's options: how one context is synthesised (the ``create`` message's fields)."""

from __future__ import annotations

from typing import Any, Final

import attrs

from ..._core.options import (
    AudioEncoding,
    TimestampType,
    check,
    check_fields,
    check_names,
    check_sample_rate,
    to_encoding,
    to_timestamp_type,
)

__all__ = [
    "AUTO_MODE_STRATEGIES",
    "DELIVERY_MODES",
    "ENCODINGS",
    "TIMESTAMP_TRANSPORTS",
    "VoiceOptions",
]

#: ``deliveryMode`` (output variation on ``inworld-tts-2`` models).
DELIVERY_MODES: Final = ("DELIVERY_MODE_UNSPECIFIED", "STABLE", "BALANCED", "CREATIVE")
#: ``timestampTransportStrategy``: timestamps in the audio chunks (SYNC) or after them (ASYNC).
TIMESTAMP_TRANSPORTS: Final = ("TIMESTAMP_TRANSPORT_STRATEGY_UNSPECIFIED", "SYNC", "ASYNC")
#: ``autoModeStrategy``: who cuts the text into generations (``inworld-tts-2``: the server may).
AUTO_MODE_STRATEGIES: Final = ("CLIENT_SEGMENTED", "SENTENCE_BOUNDARY")
#: The audio encodings this client asks Inworld for.
ENCODINGS: Final = (
    AudioEncoding.LINEAR16,
    AudioEncoding.PCM,
    AudioEncoding.MP3,
    AudioEncoding.OGG_OPUS,
    AudioEncoding.FLAC,
)


@attrs.frozen(kw_only=True)
class VoiceOptions:
    """How one context is synthesised (Inworld's ``create`` message).

    Example::

        opts = VoiceOptions(voice="Ashley", sample_rate=24000)
        faster = opts.replace(speaking_rate=1.2)

    ``delivery_mode``, ``timestamp_transport_strategy`` and ``auto_mode_strategy`` are sent
    only when set (None: the service's default).

    Raises:
        InvalidOptions: for an empty voice/model, an unsupported sample rate, a speaking
            rate outside 0.5–1.5, a temperature outside (0, 2], or a bad enum value.
    """

    voice: str = "Ashley"
    model: str = "inworld-tts-1"
    encoding: AudioEncoding = attrs.field(
        default=AudioEncoding.LINEAR16, converter=to_encoding
    )
    sample_rate: int = 24000
    bit_rate: int = 64000
    speaking_rate: float = 1.0
    temperature: float = 1.0
    timestamp_type: TimestampType | None = attrs.field(
        default=None, converter=to_timestamp_type
    )
    language: str | None = None
    apply_text_normalization: bool | None = None
    auto_mode: bool | None = None
    buffer_char_threshold: int | None = None
    max_buffer_delay_ms: int | None = None
    delivery_mode: str | None = None
    timestamp_transport_strategy: str | None = None
    auto_mode_strategy: str | None = None

    def __attrs_post_init__(self) -> None:
        check_names(self, "voice", "model")
        check(
            self.encoding in ENCODINGS,
            "encoding",
            f"{self.encoding.value} is not one of {', '.join(e.value for e in ENCODINGS)}",
        )
        check_sample_rate(self.sample_rate)
        check(
            isinstance(self.bit_rate, int) and 8000 <= self.bit_rate <= 320000,
            "bit_rate",
            f"{self.bit_rate!r} is outside 8000..320000",
        )
        check(
            isinstance(self.speaking_rate, int | float) and 0.5 <= self.speaking_rate <= 1.5,
            "speaking_rate",
            f"{self.speaking_rate!r} is outside 0.5..1.5",
        )
        check(
            isinstance(self.temperature, int | float) and 0 < self.temperature <= 2,
            "temperature",
            f"{self.temperature!r} is outside (0, 2]",
        )
        if self.language is not None:
            check(
                isinstance(self.language, str) and bool(self.language),
                "language",
                "must be non-empty",
            )
        if self.buffer_char_threshold is not None:
            check(
                isinstance(self.buffer_char_threshold, int)
                and 1 <= self.buffer_char_threshold <= 1000,
                "buffer_char_threshold",
                f"{self.buffer_char_threshold!r} is outside 1..1000",
            )
        if self.max_buffer_delay_ms is not None:
            check(
                isinstance(self.max_buffer_delay_ms, int)
                and 0 <= self.max_buffer_delay_ms <= 10000,
                "max_buffer_delay_ms",
                f"{self.max_buffer_delay_ms!r} is outside 0..10000",
            )
        for name, allowed in (
            ("delivery_mode", DELIVERY_MODES),
            ("timestamp_transport_strategy", TIMESTAMP_TRANSPORTS),
            ("auto_mode_strategy", AUTO_MODE_STRATEGIES),
        ):
            value = getattr(self, name)
            check(
                value is None or value in allowed,
                name,
                f"{value!r} is not one of {', '.join(allowed)}",
            )

    def replace(self, **changes: Any) -> VoiceOptions:
        """Return a copy with ``changes`` applied (validated the same way).

        Raises:
            InvalidOptions: for an unknown field name or an invalid value.
        """
        check_fields(VoiceOptions, changes)
        return attrs.evolve(self, **changes)

    def optional_fields(self) -> dict[str, Any]:
        """The optional request fields that were set, under their wire names — the same in
        the WebSocket ``create`` and the HTTP request body (unset ones are not sent)."""
        fields: dict[str, Any] = {}
        if self.language is not None:
            fields["language"] = self.language
        if self.timestamp_type is not None:
            fields["timestampType"] = self.timestamp_type.value
        if self.apply_text_normalization is not None:
            fields["applyTextNormalization"] = "ON" if self.apply_text_normalization else "OFF"
        if self.delivery_mode is not None:
            fields["deliveryMode"] = self.delivery_mode
        if self.timestamp_transport_strategy is not None:
            fields["timestampTransportStrategy"] = self.timestamp_transport_strategy
        return fields
