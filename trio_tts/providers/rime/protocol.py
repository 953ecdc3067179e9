"""Rime's JSON WebSocket (``/ws3``), client side: one utterance at a time per connection.

Sans-io: :class:`RimeCodec` turns the pool's commands into JSON text frames and server frames
into :mod:`trio_tts._core.events`; :class:`RimeProvider` names the URL, credential and limits;
:class:`RimeOptions` is what a context asks for. Everything about the voice travels in the
connection URL's query (``speaker``, ``modelId``, ``audioFormat=pcm``, ``samplingRate``,
``segment``, ``lang`` and the model's own parameters), so two contexts may share a connection
only when their URLs are equal: that URL is the provider's connection key, and a change of
options retires the connections of the old URL (``Pool.update_options``).

The wire, as livekit-plugins-rime 1.8.9 (``_legacy_websocket_adapter``) uses it::

    client → {"text": "Hello there. ", "contextId": "c1"}    text to synthesise
             {"operation": "flush"}                         synthesise the buffer now
             {"operation": "clear"}                         drop the buffer (barge-in)
             {"operation": "eos"}                           synthesise the rest, then close
    server → {"type": "chunk", "data": <base64 PCM>, "contextId"?}
             {"type": "timestamps", "word_timestamps": {"words", "start", "end"}, "contextId"?}
             {"type": "done", "contextId"?}                 the synthesis asked for is complete
             {"type": "error", "message"}                   the connection stays usable

How the pool's commands map onto it — the codec is per connection and remembers the one
context it carries:

* ``create`` sends nothing (the URL carries the voice); it refuses a second context while the
  previous one is not drained (a :class:`~trio_tts.ProtocolError`, which ends the connection:
  the new context moves to a fresh one before any audio, so stale audio can never reach it).
* ``send_text`` → a text frame; ``flush`` → ``flush`` (answered by one ``done``, which
  becomes ``FlushCompleted``).
* ``close`` → ``flush`` for any text not yet flushed; when the ``done`` of the last
  outstanding flush arrives the codec emits ``ContextClosed`` and the pool frees the slot.
  An utterance that never had text closes at once, without the server (no audio, no wait).
* ``cancel`` → ``clear`` then ``flush``: the ``done`` that answers that final flush comes
  after every frame of the abandoned synthesis, so only then is the connection *provably
  drained* and the ``ContextClosed`` emitted. Until then the slot stays taken.

Frames tagged with another ``contextId`` than the current one, or arriving while no context
is current, are attributed to a context the connection no longer hosts: the connection
counts and drops them, they never reach the next utterance. A ``done`` that answers no flush
of ours (e.g. sentence segmentation finishing on its own) is ignored, never taken as an end.
Word timings restart at zero after each ``done``, like Inworld's after each flush; the
:class:`~trio_tts.Context` makes them monotonic.
"""

from __future__ import annotations

import collections
import os
import urllib.parse
from collections.abc import Hashable, Sequence
from typing import Any, Final, Literal

import attrs
import msgspec

from ..._core.errors import InvalidOptions, ProtocolError, redact, register_api_key
from ..._core.events import (
    Audio,
    ConnectionErrorEvent,
    ContextClosed,
    ContextError,
    Event,
    FlushCompleted,
    WordTiming,
)
from ..._core.options import AudioEncoding, _check, _check_names, _check_sample_rate

__all__ = [
    "DEFAULT_HTTP_URL",
    "DEFAULT_URL",
    "RimeCodec",
    "RimeOptions",
    "RimeProvider",
    "http_request_body",
    "model_params",
    "ws_query",
]

DEFAULT_URL: Final = "wss://users-ws.rime.ai/ws3"
DEFAULT_HTTP_URL: Final = "https://users.rime.ai/v1/rime-tts"

Segment = Literal["bySentence", "immediate", "never"]
_SEGMENTS: Final = ("bySentence", "immediate", "never")
_SAMPLE_RATES: Final = (8000, 16000, 22050, 24000, 32000, 44100, 48000)
_ARCANA_FIELDS: Final = ("repetition_penalty", "temperature", "top_p", "max_tokens")
_MIST_FIELDS: Final = (
    "speed_alpha",
    "reduce_latency",
    "pause_between_brackets",
    "phonemize_between_brackets",
)


def _is_mist(model: str) -> bool:
    return model.startswith("mist")


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


# ---------------------------------------------------------------------------------- options


@attrs.frozen(kw_only=True)
class RimeOptions:
    """How one Rime utterance is synthesised: everything that goes in the ``/ws3`` query.

    The model's own parameters are accepted only for its family (``None``: the service's
    default, not sent): *arcana* (and every non-mist model) takes ``repetition_penalty``,
    ``temperature``, ``top_p``, ``max_tokens``; *mist* models take ``speed_alpha``,
    ``pause_between_brackets``, ``phonemize_between_brackets`` and, over HTTP only with
    ``mistv2``, ``reduce_latency``.

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

    def __attrs_post_init__(self) -> None:
        _check_names(self, "speaker", "model")
        _check_sample_rate(self.sample_rate, _SAMPLE_RATES)
        if self.language is not None:
            _check(
                isinstance(self.language, str) and bool(self.language.strip()),
                "language",
                "must be a non-empty string or None",
            )
        _check(
            self.segment in _SEGMENTS,
            "segment",
            f"{self.segment!r} is not one of {', '.join(_SEGMENTS)}",
        )
        family, other = (
            ("mist", _ARCANA_FIELDS) if _is_mist(self.model) else ("arcana", _MIST_FIELDS)
        )
        for name in other:
            _check(
                getattr(self, name) is None,
                name,
                f"not a parameter of {family} models (model={self.model!r})",
            )
        checks: list[tuple[str, float | int | None, bool, str]] = [
            ("repetition_penalty", self.repetition_penalty, True, "must be a positive number"),
            ("temperature", self.temperature, False, "must be in 0..2"),
            ("top_p", self.top_p, False, "must be in (0, 1]"),
            ("speed_alpha", self.speed_alpha, True, "must be a positive number"),
        ]
        for name, value, positive, message in checks:
            if value is None:
                continue
            ok = _number(value)
            if ok and name == "temperature":
                ok = 0 <= value <= 2
            elif ok and name == "top_p":
                ok = 0 < value <= 1
            elif ok and positive:
                ok = value > 0
            _check(ok, name, f"{value!r} {message}")
        if self.max_tokens is not None:
            _check(
                isinstance(self.max_tokens, int)
                and not isinstance(self.max_tokens, bool)
                and self.max_tokens > 0,
                "max_tokens",
                f"{self.max_tokens!r} must be a positive integer",
            )
        for name in ("reduce_latency", "pause_between_brackets", "phonemize_between_brackets"):
            value = getattr(self, name)
            _check(value is None or isinstance(value, bool), name, "must be a bool or None")

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
        unknown = set(changes) - {f.name for f in attrs.fields(RimeOptions)}
        if unknown:
            raise InvalidOptions(f"unknown option(s): {', '.join(sorted(unknown))}")
        return attrs.evolve(self, **changes)


def model_params(options: RimeOptions) -> dict[str, object]:
    """The fields shared by the WebSocket query and the HTTP body: ``lang`` and the model
    family's own parameters that are set (the seed's ``_model_params``)."""
    params: dict[str, object] = {}
    if options.language is not None:
        params["lang"] = options.language
    if _is_mist(options.model):
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


def ws_query(options: RimeOptions) -> dict[str, str]:
    """The ``/ws3`` query parameters for ``options`` (booleans as ``true``/``false``).

    Raises:
        InvalidOptions: ``reduce_latency`` is set — an HTTP-only option the WebSocket cannot
            honour.
    """
    if options.reduce_latency is not None:
        raise InvalidOptions(
            "reduce_latency: an HTTP-only option (mistv2 over /v1/rime-tts); the /ws3 WebSocket"
            " cannot honour it — use trio_tts.http.RimeHTTPClient or leave it None"
        )
    params: dict[str, object] = {
        "speaker": options.speaker,
        "modelId": options.model,
        "audioFormat": "pcm",
        "samplingRate": options.sample_rate,
        "segment": options.segment,
        **model_params(options),
    }
    return {
        k: ("true" if v else "false") if isinstance(v, bool) else str(v) for k, v in params.items()
    }


def http_request_body(text: str, options: RimeOptions) -> dict[str, object]:
    """The JSON body of Rime's one-shot ``POST /v1/rime-tts`` (the seed's ``ChunkedStream``).

    ``segment`` is WebSocket-only and not sent; ``reduce_latency`` is sent for ``mistv2``.
    """
    body: dict[str, object] = {
        "speaker": options.speaker,
        "text": text,
        "modelId": options.model,
        **model_params(options),
        "samplingRate": options.sample_rate,
    }
    if options.model == "mistv2" and options.reduce_latency is not None:
        body["reduceLatency"] = options.reduce_latency
    return body


# ------------------------------------------------------------------------------ server frames


class _WordTimestamps(msgspec.Struct):
    words: list[str] = []
    start: list[float] = []
    end: list[float] = []


class _Frame(msgspec.Struct):
    type: str
    # msgspec decodes the base64 while parsing (see protocols/inworld.py).
    data: bytes = b""
    contextId: str | None = None
    word_timestamps: _WordTimestamps | None = None
    message: str = ""


_DECODER: Final = msgspec.json.Decoder(_Frame)
_ENCODE: Final = msgspec.json.Encoder().encode
_PendingKind = Literal["flush", "close", "cancel"]


def _short(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


# ------------------------------------------------------------------------------------ codec


class RimeCodec:
    """Client side of one Rime ``/ws3`` connection (implements :class:`ClientCodec`).

    Example::

        codec = RimeCodec()
        codec.create("c1", RimeOptions())                 # []: the URL carries the voice
        codec.send_text("c1", "Hello there.")             # ['{"text":...,"contextId":"c1"}']
        codec.close("c1")                                 # ['{"operation":"flush",...}']
        codec.receive('{"type": "done"}')                 # [ContextClosed(context_id='c1')]

    Attributes:
        stray_frames: frames tagged with a context this connection no longer carries.
        ignored_dones: ``done`` frames that answered no flush of ours.
        ignored_errors: ``error`` frames while a cancelled context drains (it still must).
        unknown_frames: frames of a ``type`` this codec does not know (counted, skipped).
    """

    def __init__(self) -> None:
        self._current: str | None = None
        self._previous: str | None = None
        # One entry per flush sent and not yet answered by a done, oldest first.
        self._pending: collections.deque[_PendingKind] = collections.deque()
        self._closing = False
        self._cancelled = False
        self._had_text = False
        self._unflushed = False
        self._events: list[Event] = []
        self.stray_frames = 0
        self.ignored_dones = 0
        self.ignored_errors = 0
        self.unknown_frames = 0

    @property
    def state(self) -> str:
        """``idle``, ``streaming``, ``closing`` (waiting for ``done``) or ``draining``
        (cancelled, waiting for the ``done`` that proves it drained)."""
        if self._current is None:
            return "idle"
        if self._cancelled:
            return "draining"
        return "closing" if self._closing else "streaming"

    def __repr__(self) -> str:
        return (
            f"<RimeCodec {self.state} context={self._current!r} pending={len(self._pending)}"
            f" strays={self.stray_frames}>"
        )

    # -- commands

    def create(self, context_id: str, options: Any) -> list[str]:
        """Start carrying ``context_id``; nothing to send (the URL carries the voice).

        Raises:
            ProtocolError: the previous utterance is not drained yet (the connection must
                not be reused: the pool moves the new context to another one).
        """
        if self._current is not None or self._pending:
            raise ProtocolError(
                f"Rime carries one utterance at a time; {self._current or self._previous} "
                "is not drained"
            )
        self._current = context_id
        self._closing = self._cancelled = self._had_text = self._unflushed = False
        return []

    def send_text(self, context_id: str, text: str, *, flush: bool = False) -> list[str]:
        """A text frame (none for ``""``); with ``flush`` a ``flush`` frame follows."""
        if context_id != self._current or self._closing:
            return []
        frames: list[str] = []
        if text:
            frames.append(_ENCODE({"text": text, "contextId": context_id}).decode())
            if text.strip():
                self._had_text = self._unflushed = True
        if flush:
            frames += self.flush(context_id)
        return frames

    def flush(self, context_id: str) -> list[str]:
        """``flush``; with no text since the last one, a ``FlushCompleted`` at once instead."""
        if context_id != self._current or self._closing:
            return []
        if not self._unflushed:
            self._events.append(FlushCompleted(context_id))
            return []
        self._unflushed = False
        self._pending.append("flush")
        return [self._operation("flush", context_id)]

    def close(self, context_id: str) -> list[str]:
        """Flush what is left; ``ContextClosed`` follows the last ``done`` (or comes at once
        for an utterance that never had text, or whose flushes were all answered)."""
        if context_id != self._current or self._closing:
            return []
        self._closing = True
        frames: list[str] = []
        if self._had_text and self._unflushed:
            self._unflushed = False
            self._pending.append("close")
            frames.append(self._operation("flush", context_id))
        if not self._pending:
            self._events.append(self._end())
        return frames

    def cancel(self, context_id: str) -> list[str]:
        """``clear`` then ``flush``: ``ContextClosed`` only once the server's ``done`` for that
        flush proves every frame of the utterance has arrived (and was dropped)."""
        if context_id != self._current or self._cancelled:
            return []
        if self._closing:
            # The close was sent: its ``done`` ends the utterance. A clear now would race
            # it; only stop reporting errors for it (it still has to drain).
            self._cancelled = True
            return []
        self._closing = self._cancelled = True
        if not self._had_text:
            self._events.append(self._end())  # nothing was sent: nothing can come back
            return []
        self._unflushed = False
        self._pending.append("cancel")
        return [self._operation("clear", context_id), self._operation("flush", context_id)]

    def take_events(self) -> list[Event]:
        """The events produced while encoding commands (see :class:`ClientCodec`)."""
        events, self._events = self._events, []
        return events

    def goodbye(self) -> list[str]:
        """``eos``: the server synthesises what is left and closes (answer awaited ≤ 1 s)."""
        return [_ENCODE({"operation": "eos"}).decode()]

    @staticmethod
    def _operation(name: str, context_id: str) -> str:
        return _ENCODE({"operation": name, "contextId": context_id}).decode()

    def _end(self) -> ContextClosed:
        """The current context is over: forget it (its late frames become strays)."""
        assert self._current is not None and not self._pending
        closed = ContextClosed(self._current)
        self._previous, self._current = self._current, None
        return closed

    # -- server frames

    def receive(self, frame: str | bytes) -> list[Event]:
        """Decode one server frame into events.

        Raises:
            ProtocolError: a binary frame, invalid JSON, wrong field types, invalid base64.
        """
        if not isinstance(frame, str):
            raise ProtocolError("unexpected binary frame from Rime")
        try:
            decoded = _DECODER.decode(frame)
        except msgspec.DecodeError as exc:
            raise ProtocolError(f"malformed Rime frame: {_short(str(exc))}") from None
        kind, tag = decoded.type, decoded.contextId
        if kind == "chunk":
            return [Audio(self._owner(tag), decoded.data)]
        if kind == "timestamps":
            ts = decoded.word_timestamps
            if ts is None or not ts.words:
                return []
            words = tuple(
                WordTiming(w, s, e) for w, s, e in zip(ts.words, ts.start, ts.end, strict=False)
            )
            return [Audio(self._owner(tag), b"", words)]
        if kind == "done":
            return self._done(tag)
        if kind == "error":
            message = redact(decoded.message) or "unspecified Rime error"
            if self._current is None:
                return [ConnectionErrorEvent(None, message)]
            if self._cancelled:
                self.ignored_errors += 1  # it still has to drain: keep waiting for done
                return []
            return [ContextError(self._current, None, message)]
        self.unknown_frames += 1
        return []

    def _owner(self, tag: str | None) -> str:
        """The context a chunk belongs to. Anything not the current context's is routed to
        an id the connection no longer hosts (counted as a stray there, never delivered)."""
        if tag is not None:
            if tag != self._current:
                self.stray_frames += 1
            return tag
        if self._current is not None:
            return self._current
        self.stray_frames += 1
        return self._previous or ""

    def _done(self, tag: str | None) -> list[Event]:
        current = self._current
        if tag is not None and tag != current:
            self.stray_frames += 1
            return []
        if current is None or not self._pending:
            self.ignored_dones += 1
            return []
        kind = self._pending.popleft()
        events: list[Event] = []
        if kind == "flush" and not self._cancelled:
            events.append(FlushCompleted(current))
        if self._closing and not self._pending:
            events.append(self._end())
        return events


# --------------------------------------------------------------------------------- provider


class RimeProvider:
    """Rime's ``/ws3`` as a :class:`~trio_tts.protocols.Provider`: URL, credential, limits.

    One utterance per connection (``contexts_per_connection = 1``); connections are reused
    until their session expires: the pool's ``max_session_duration`` defaults to this
    provider's (300 s), counted from the connection's last hand-out (``refresh_on_use``,
    LiveKit's ``mark_refreshed_on_get``). The connection key is the whole URL, so contexts
    with other options get other connections and ``Pool.update_options`` retires the old ones
    after their utterances. Closing a connection sends ``eos`` and waits up to 1 s for the
    answer.

    ``api_key`` is sent as ``Authorization: Bearer <key>`` (``None``: no credential, for the
    local speech server); it is registered with redaction and never shown by ``repr``.

    Raises:
        InvalidOptions: a URL that is not ws:// or wss://, a bad limit or key.
    """

    name = "rime"
    contexts_per_connection = 1

    def __init__(
        self,
        api_key: str | None = None,
        *,
        url: str = DEFAULT_URL,
        max_text_chars: int = 500,
        max_session_duration: float | None = 300.0,
    ) -> None:
        register_api_key(api_key)
        parts = urllib.parse.urlsplit(url) if isinstance(url, str) else None
        if parts is None or parts.scheme not in ("ws", "wss") or not parts.netloc:
            raise InvalidOptions("url: must be a ws:// or wss:// URL with a host")
        if parts.query:
            raise InvalidOptions("url: must not carry a query (the options make it)")
        path = parts.path if parts.path not in ("", "/") else "/ws3"
        if not isinstance(max_text_chars, int) or max_text_chars < 1:
            raise InvalidOptions(f"max_text_chars: {max_text_chars!r} is not a positive int")
        if max_session_duration is not None and (
            not _number(max_session_duration) or max_session_duration <= 0
        ):
            raise InvalidOptions(
                f"max_session_duration: {max_session_duration!r} must be positive or None"
            )
        self._api_key = api_key
        self._url = f"{parts.scheme}://{parts.netloc}{path}"
        self.max_text_chars = max_text_chars
        self.max_session_duration: float | None = max_session_duration

    @classmethod
    def from_env(cls, url: str = DEFAULT_URL, **settings: Any) -> RimeProvider:
        """A provider keyed by ``$RIME_API_KEY`` (no credential when it is unset or empty)."""
        return cls(os.environ.get("RIME_API_KEY") or None, url=url, **settings)

    def __repr__(self) -> str:
        key = "***" if self._api_key is not None else "None"
        return (
            f"RimeProvider(api_key={key}, url={self._url!r}, "
            f"max_session_duration={self.max_session_duration})"
        )

    def default_options(self) -> RimeOptions:
        """``RimeOptions()``: arcana, speaker astra, 24 kHz, ``bySentence``."""
        return RimeOptions()

    def connection_key(self, options: RimeOptions) -> Hashable:
        """The connection URL: equal URLs may share a connection.

        Raises:
            InvalidOptions: ``options`` are not :class:`RimeOptions`, or ask for what the
                WebSocket cannot do (``reduce_latency``).
        """
        return self.url(options)

    def url(self, options: RimeOptions) -> str:
        """``<endpoint>?speaker=...&modelId=...&audioFormat=pcm&samplingRate=...&segment=...``

        Raises:
            InvalidOptions: as :meth:`connection_key`.
        """
        if not isinstance(options, RimeOptions):
            raise InvalidOptions(f"options: expected RimeOptions, got {type(options).__name__}")
        return f"{self._url}?{urllib.parse.urlencode(ws_query(options))}"

    def headers(self) -> Sequence[tuple[str, str]]:
        """``[("Authorization", "Bearer <key>")]``, or ``[]`` without a key. Never log these."""
        if self._api_key is None:
            return []
        return [("Authorization", f"Bearer {self._api_key}")]

    def new_codec(self) -> RimeCodec:
        """A fresh codec for one connection."""
        return RimeCodec()
