"""What a context's configuration may be, and what ``update_config`` may change (pure).

``create`` is checked by :func:`validated`; ``update_config`` by :func:`updated`, which applies
the changes and checks the result the same way. An update may change the voice, speaking
rate, temperature, language, text normalisation, timestamps and the buffering settings
(``autoMode``, ``bufferCharThreshold``, ``maxBufferDelayMs``) at any time: they apply from the
next generation. It may not change the model (the service binds a context to one model), and
it may change the audio (encoding, sample rate, bit rate) only before the context's first
audio: a context's chunks form one continuous stream (see :mod:`.codecs`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from .._voices import VOICES
from . import proto
from .codecs import COMPRESSED, audio_config_problem

__all__ = ["MODELS", "ConfigError", "updated", "validated"]

_AUDIO_FIELDS = ("audio_encoding", "sample_rate_hertz", "bit_rate")
#: The model ids Inworld documents; any of them is served by the same synthesiser here.
MODELS = (
    "inworld-tts-2",
    "inworld-tts-1.5-max",
    "inworld-tts-1.5-mini",
    "inworld-tts-1",
    "inworld-tts-1-max",
)


class ConfigError(ValueError):
    """A configuration the server refuses, with the gRPC status code to answer."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def validated(config: proto.Create) -> proto.Create:
    """``config`` if the server can serve it.

    Raises:
        ConfigError: code 12 for an encoding it cannot produce, 3 for any other bad value
            (an unknown voice or model included).
    """
    if config.encoding not in ("LINEAR16", "PCM", *COMPRESSED):
        raise ConfigError(12, f"audioEncoding {config.encoding} is not supported by the local "
                          "server (use LINEAR16, PCM, MP3, OGG_OPUS or FLAC)")  # fmt: skip
    if config.voice_id not in VOICES:
        raise ConfigError(3, f"Unknown voice: {config.voice_id}")
    if config.model_id not in MODELS:
        raise ConfigError(3, f"Unknown model: {config.model_id} (use {', '.join(MODELS)})")
    if not 8000 <= config.sample_rate_hertz <= 48000:
        raise ConfigError(3, f"sampleRateHertz {config.sample_rate_hertz} is outside 8000..48000")
    problem = audio_config_problem(config.encoding, config.sample_rate_hertz, config.bit_rate)
    if problem is not None:
        raise ConfigError(3, problem)
    if not 0.5 <= config.speaking_rate <= 1.5:
        raise ConfigError(3, f"speakingRate {config.speaking_rate} is outside 0.5..1.5")
    if config.buffer_char_threshold is not None and config.buffer_char_threshold < 1:
        raise ConfigError(3, "bufferCharThreshold must be positive")
    if config.max_buffer_delay_ms is not None and config.max_buffer_delay_ms < 0:
        raise ConfigError(3, "maxBufferDelayMs must not be negative")
    return config


def updated(
    config: proto.Create, changes: Mapping[str, Any], *, audio_started: bool
) -> proto.Create:
    """``config`` with an ``update_config``'s ``changes`` applied and checked.

    Raises:
        ConfigError: code 3 for a change of model, a change of audio after audio started, or
            a value :func:`validated` refuses.
    """
    if "model_id" in changes and changes["model_id"] != config.model_id:
        raise ConfigError(
            3, f"modelId cannot be changed by update_config (the context uses {config.model_id})"
        )
    if audio_started:
        for name in _AUDIO_FIELDS:
            if name in changes and changes[name] != getattr(config, name):
                raise ConfigError(
                    3, "audioConfig cannot be changed after the context's audio started "
                    "(its chunks form one stream)",
                )  # fmt: skip
    return validated(attrs.evolve(config, **changes))
