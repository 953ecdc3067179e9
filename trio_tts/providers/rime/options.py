"""Rime's options: how one utterance is synthesised (the ``/ws3`` query, the HTTP body).

The model's own parameters belong to its family: *arcana* (and every non-mist model) and
*mist*; :func:`model_params` is what the WebSocket query and the HTTP body share.
"""

from __future__ import annotations

from typing import Any, Final, Literal

import attrs

from ..._core.options import (
    AudioEncoding,
    check,
    check_fields,
    check_names,
    check_sample_rate,
    is_number,
)

__all__ = [
    "ARCANA_FIELDS",
    "MIST_FIELDS",
    "SEGMENTS",
    "RimeOptions",
    "Segment",
    "is_mist",
    "model_params",
]

Segment = Literal["bySentence", "immediate", "never"]
SEGMENTS: Final = ("bySentence", "immediate", "never")
ARCANA_FIELDS: Final = ("repetition_penalty", "temperature", "top_p", "max_tokens")
MIST_FIELDS: Final = (
    "speed_alpha",
    "reduce_latency",
    "pause_between_brackets",
    "phonemize_between_brackets",
)


def is_mist(model: str) -> bool:
    """True for the *mist* model family (``mist``, ``mistv2`` ...); the rest take arcana's
    parameters."""
    return model.startswith("mist")


@attrs.frozen(kw_only=True)
class RimeOptions:
    """How one Rime utterance is synthesised: everything that goes in the ``/ws3`` query.

    The model's own parameters are accepted only for its family (``None``: the service's
    default, not sent): *arcana* (and every non-mist model) takes ``repetition_penalty``,
    ``temperature``, ``top_p``, ``max_tokens``; *mist* models take ``speed_alpha``,
    ``pause_between_brackets``, ``phonemize_between_brackets`` and, over HTTP only with
    ``mistv2``, ``reduce_latency``. ``time_scale_factor`` (``timeScaleFactor``, the pace of
    speech) is taken by every model but ``mistv2``.

    Example::

        opts = RimeOptions(speaker="astra", model="arcana", sample_rate=24000)
        mist = RimeOptions(speaker="cove", model="mistv2", speed_alpha=1.1, segment="immediate")

    Raises:
        InvalidOptions: an empty speaker/model/language, an unsupported sample rate, a
            segment that is not ``bySentence``/``immediate``/``never``, a parameter out of
            range or of the other model family.
    """

    speaker: str = "astra"
    model: str = "arcana"
    sample_rate: int = 24000
    #: ``lang``: a three-letter code (``eng``, ``spa``, ``fra``, ``ger``); None: not sent.
    language: str | None = "eng"
    #: When the server synthesises: at sentence ends (default), each text at once, or only
    #: on ``flush``. WebSocket only.
    segment: Segment = "bySentence"
    repetition_penalty: float | None = None
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    speed_alpha: float | None = None
    reduce_latency: bool | None = None
    pause_between_brackets: bool | None = None
    phonemize_between_brackets: bool | None = None
    time_scale_factor: float | None = None

    def __attrs_post_init__(self) -> None:
        check_names(self, "speaker", "model")
        check_sample_rate(self.sample_rate)
        if self.language is not None:
            check(
                isinstance(self.language, str) and bool(self.language.strip()),
                "language",
                "must be a non-empty string or None",
            )
        check(
            self.segment in SEGMENTS,
            "segment",
            f"{self.segment!r} is not one of {', '.join(SEGMENTS)}",
        )
        family, other = (
            ("mist", ARCANA_FIELDS) if is_mist(self.model) else ("arcana", MIST_FIELDS)
        )
        for name in other:
            check(
                getattr(self, name) is None,
                name,
                f"not a parameter of {family} models (model={self.model!r})",
            )
        checks: list[tuple[str, float | int | None, bool, str]] = [
            ("repetition_penalty", self.repetition_penalty, True, "must be a positive number"),
            ("temperature", self.temperature, False, "must be in 0..2"),
            ("top_p", self.top_p, False, "must be in (0, 1]"),
            ("speed_alpha", self.speed_alpha, True, "must be a positive number"),
            ("time_scale_factor", self.time_scale_factor, True, "must be a positive number"),
        ]
        for name, value, positive, message in checks:
            if value is None:
                continue
            ok = is_number(value)
            if ok and name == "temperature":
                ok = 0 <= value <= 2
            elif ok and name == "top_p":
                ok = 0 < value <= 1
            elif ok and positive:
                ok = value > 0
            check(ok, name, f"{value!r} {message}")
        check(
            self.time_scale_factor is None or self.model != "mistv2",
            "time_scale_factor",
            "not supported by the mistv2 model",
        )
        if self.max_tokens is not None:
            check(
                isinstance(self.max_tokens, int)
                and not isinstance(self.max_tokens, bool)
                and self.max_tokens > 0,
                "max_tokens",
                f"{self.max_tokens!r} must be a positive integer",
            )
        for name in ("reduce_latency", "pause_between_brackets", "phonemize_between_brackets"):
            value = getattr(self, name)
            check(value is None or isinstance(value, bool), name, "must be a bool or None")

    @property
    def voice(self) -> str:
        """The speaker (the name every provider's options share)."""
        return self.speaker

    @property
    def encoding(self) -> AudioEncoding:
        """Always raw 16-bit PCM: the codec asks for ``audioFormat=pcm``."""
        return AudioEncoding.PCM

    def replace(self, **changes: Any) -> RimeOptions:
        """Return a copy with ``changes`` applied (validated the same way).

        Raises:
            InvalidOptions: for an unknown field name or an invalid value.
        """
        check_fields(RimeOptions, changes)
        return attrs.evolve(self, **changes)


def model_params(options: RimeOptions) -> dict[str, object]:
    """The fields shared by the WebSocket query and the HTTP body: ``lang``,
    ``timeScaleFactor`` and the model family's own parameters that are set (the seed's
    ``_model_params``)."""
    params: dict[str, object] = {}
    if options.language is not None:
        params["lang"] = options.language
    if options.time_scale_factor is not None:
        params["timeScaleFactor"] = options.time_scale_factor
    if is_mist(options.model):
        for key, value in (
            ("speedAlpha", options.speed_alpha),
            ("pauseBetweenBrackets", options.pause_between_brackets),
            ("phonemizeBetweenBrackets", options.phonemize_between_brackets),
        ):
            if value is not None:
                params[key] = value
    else:
        for key, value in (
            ("repetition_penalty", options.repetition_penalty),
            ("temperature", options.temperature),
            ("top_p", options.top_p),
            ("max_tokens", options.max_tokens),
        ):
            if value is not None:
                params[key] = value
    return params
