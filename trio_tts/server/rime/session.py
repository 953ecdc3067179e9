"""Rime on the local server: the ``/ws3`` JSON WebSocket and the one-shot ``/v1/rime-tts``.

Same engine as Inworld's side (the core's synthesiser, eSpeak or tone), same port, same
connection limit and faults. The voice is fixed per connection by the URL's query
(``speaker``, ``modelId``, ``audioFormat=pcm``, ``samplingRate``, ``segment``, ``lang``,
``speedAlpha`` ...); a bad query is refused at the upgrade with HTTP 400.

What a connection does with the client's frames (in order; one worker synthesises them one
after another, so audio never interleaves):

* ``{"text", "contextId"?}`` is appended to the buffer; the newest ``contextId`` tags what is
  synthesised next. ``segment=bySentence`` (default) synthesises every complete sentence as
  soon as its end (``.``, ``!``, ``?`` then a space or the end of the text) arrives,
  ``immediate`` each text at once, ``never`` only on ``flush``.
* ``{"operation": "flush"}`` synthesises the buffer, then answers ``{"type": "done"}``: every
  flush gets exactly one ``done``, after all the audio it asked for.
* ``{"operation": "clear"}`` empties the buffer and abandons the synthesis in progress and the
  queued ones (their remaining chunks are never sent; flushes queued before still get their
  ``done``).
* ``{"operation": "eos"}`` synthesises the rest, answers ``done`` and closes (1000).

Audio goes out as ``{"type": "chunk", "data": <base64 PCM>, "contextId"}`` frames of
``chunk_ms``, each followed by ``{"type": "timestamps", "word_timestamps": {"words", "start",
"end"}, "contextId"}`` for the words that start in it; times count from the first audio after
the previous ``done``. Errors are ``{"type": "error", "message"}`` and leave the connection
open, as at Rime.

Faults: the connection-level ones (drop, black hole, stall, close, bad frame) come with the
shared sender of :class:`~._session.Session`; of the context-level ones, ``context_error``
answers a selected utterance's synthesis with an ``error`` frame, ``delay_first_audio`` /
``first_audio_delay`` hold its first audio, and ``stray_audio`` sends a chunk tagged with an
id the client never used (``"unknown"``) or with the utterance that just got its ``done``
(``"closed"``). Utterances are numbered per connection from 0 (``when(n, context_id)``).
"""

from __future__ import annotations

import base64
import json
import math
import re
import urllib.parse
from typing import Any

import attrs
import trio

from .._core import Core
from .._speech import VOICES
from ..inworld import proto
from ..inworld.session import ASGIReceive, ASGISend, Session, _Out

__all__ = [
    "RIME_HTTP_PATH",
    "RIME_MAX_TEXT_CHARS",
    "RIME_SPEAKERS",
    "RIME_WS_PATH",
    "RimeConfig",
    "RimeSession",
    "parse_rime_query",
    "rime_http",
]

RIME_WS_PATH = "/ws3"
RIME_HTTP_PATH = "/v1/rime-tts"
#: Rime's documented limit of characters per request (and per text message here).
RIME_MAX_TEXT_CHARS = 500

#: Rime speakers → the local voices that speak for them. Any other speaker is accepted too
#: (a local voice name stands for itself; anything else gets a fixed voice of its own).
RIME_SPEAKERS: dict[str, str] = {
    "astra": "Ashley",
    "lyra": "Julia",
    "celeste": "Olivia",
    "luna": "Priya",
    "cove": "Dennis",
    "orion": "Hades",
    "atlas": "Alex",
    "marsh": "Mark",
    "abbie": "Ashley",
    "allison": "Olivia",
}
_ENGLISH = sorted(v for v, info in VOICES.items() if info.language == "en")
_SEGMENTS = ("bySentence", "immediate", "never")
#: A stray audio chunk: 10 ms of a constant sample, recognisable in any stream it lands in.
_STRAY_PCM = b"\x11\x11" * 160
_SENTENCE_END = re.compile(r"[.!?…][\"')\]]*(\s+|$)")


def _voice_for(speaker: str) -> str:
    if speaker in RIME_SPEAKERS:
        return RIME_SPEAKERS[speaker]
    if speaker in VOICES:
        return speaker
    return _ENGLISH[sum(speaker.encode()) % len(_ENGLISH)]


@attrs.frozen
class RimeConfig:
    """One connection's (or request's) synthesis settings, from the query or the JSON body."""

    speaker: str
    voice: str
    model: str
    sample_rate: int
    segment: str = "bySentence"
    language: str | None = None
    speaking_rate: float = 1.0


def _config(get: Any) -> RimeConfig | str:
    """Build a :class:`RimeConfig` from a field getter; a string is the error message."""
    speaker = get("speaker")
    if not isinstance(speaker, str) or not speaker.strip():
        return "speaker is required"
    model = get("modelId") or "arcana"
    if not isinstance(model, str):
        return "modelId must be a string"
    default_rate = 22050 if model == "mistv2" else 24000
    raw_rate = get("samplingRate")
    try:
        rate = default_rate if raw_rate in (None, "") else int(raw_rate)
    except (TypeError, ValueError):
        return f"samplingRate {raw_rate!r} is not an integer"
    if not 8000 <= rate <= 48000:
        return f"samplingRate {rate} is outside 8000..48000"
    segment = get("segment") or ("immediate" if get("immediate") in ("true", True) else None)
    segment = segment or "bySentence"
    if segment not in _SEGMENTS:
        return f"segment {segment!r} is not one of {', '.join(_SEGMENTS)}"
    speaking_rate = 1.0
    alpha = get("speedAlpha")
    if alpha not in (None, ""):
        try:
            speaking_rate = min(1.5, max(0.5, 1.0 / float(alpha)))
        except (TypeError, ValueError, ZeroDivisionError):
            return f"speedAlpha {alpha!r} is not a positive number"
    lang = get("lang")
    return RimeConfig(speaker, _voice_for(speaker), model, rate, segment,
                      str(lang) if lang else None, speaking_rate)  # fmt: skip


def parse_rime_query(scope: dict[str, Any]) -> RimeConfig | str:
    """The ``/ws3`` upgrade's settings, or the reason to refuse it (HTTP 400)."""
    query = urllib.parse.parse_qs(bytes(scope.get("query_string", b"")).decode("latin-1"))
    fmt = (query.get("audioFormat") or ["pcm"])[-1]
    if fmt != "pcm":
        return f"audioFormat {fmt} is not supported by the local server (use pcm)"

    def get(key: str) -> str | None:
        values = query.get(key)
        return values[-1] if values else None

    return _config(get)


def _frame(kind: str, context_id: str | None, **fields: Any) -> str:
    return json.dumps({"type": kind, **fields, "contextId": context_id})


def _error(message: str) -> str:
    return json.dumps({"type": "error", "message": message})


@attrs.frozen
class _Speak:
    text: str
    context_id: str | None
    epoch: int


@attrs.frozen
class _Done:
    context_id: str | None
    eos: bool = False


class RimeSession(Session):
    """Serves one accepted ``/ws3`` WebSocket (see the module docstring).

    Reuses :class:`Session`'s sender (the only writer, with the connection-level faults and
    the audio back-pressure budget) and replaces its reader, watchdog and workers.
    """

    def __init__(
        self, core: Core, index: int, scope: dict[str, Any], receive: ASGIReceive, send: ASGISend
    ) -> None:
        super().__init__(core, index, scope, receive, send)
        config = parse_rime_query(scope)
        assert isinstance(config, RimeConfig), "the app refuses bad queries before accepting"
        self.rime = config
        self._text = ""
        self._context_id: str | None = None
        self._epoch = 0  # bumped by clear: older synthesis is abandoned
        self._utterance = 0  # utterances (runs of audio between dones) on this connection
        self._fresh = True  # no audio since the last done
        self._offset = 0.0  # seconds of audio since the last done (the timestamps' origin)
        self._jobs_in, self._jobs_out = trio.open_memory_channel[_Speak | _Done](math.inf)
        # The worker lives in the session's nursery (which exists once run() started), like
        # the sender: the reader starts it on the first frame.
        self._worker_started = False

    # -- reading -------------------------------------------------------------------------------

    async def _reader(self) -> None:
        while True:
            message = await self._receive()
            if message["type"] == "websocket.disconnect":
                return
            if message["type"] != "websocket.receive":
                continue
            self._last_activity = trio.current_time()
            if self._blackholed:
                continue
            if not self._worker_started:
                self._worker_started = True
                self._nursery.start_soon(self._rime_worker)
            text = message.get("text")
            if text is None:
                self._control(_error("binary frames are not supported; send JSON text"))
                continue
            try:
                data = json.loads(text)
            except ValueError:
                self._control(_error("malformed JSON"))
                continue
            if not isinstance(data, dict):
                self._control(_error("expected a JSON object"))
                continue
            self._apply(data)

    def _apply(self, data: dict[str, Any]) -> None:
        cid = data.get("contextId")
        if cid is not None and not isinstance(cid, str):
            self._control(_error("contextId must be a string"))
            return
        if "text" in data:
            text = data["text"]
            if not isinstance(text, str):
                self._control(_error("text must be a string"))
                return
            if len(text) > RIME_MAX_TEXT_CHARS:
                self.core.violation(
                    f"connection {self.index}: text of {len(text)} characters "
                    f"(limit {RIME_MAX_TEXT_CHARS})"
                )
                self._control(_error(f"text exceeds {RIME_MAX_TEXT_CHARS} characters"))
                return
            if cid is not None and cid != self._context_id:
                self.core.contexts_created += 1
            self._context_id = cid
            self._text += text
            self._segment()
            return
        operation = data.get("operation")
        if operation == "flush":
            self._speak(len(self._text))
            self._jobs_in.send_nowait(_Done(self._context_id))
        elif operation == "clear":
            self._text = ""
            self._epoch += 1
        elif operation == "eos":
            self._speak(len(self._text))
            self._jobs_in.send_nowait(_Done(self._context_id, eos=True))
        else:
            self._control(_error(f"unknown message (operation {operation!r})"))

    def _segment(self) -> None:
        segment = self.rime.segment
        if segment == "immediate":
            self._speak(len(self._text))
        elif segment == "bySentence":
            cut = 0
            for match in _SENTENCE_END.finditer(self._text):
                cut = match.end()
            self._speak(cut)

    def _speak(self, n: int) -> None:
        text, self._text = self._text[:n], self._text[n:]
        if text.strip():
            self._jobs_in.send_nowait(_Speak(text, self._context_id, self._epoch))

    # -- the worker: one synthesis at a time, in order -------------------------------------------

    async def _rime_worker(self) -> None:
        async for job in self._jobs_out:
            if isinstance(job, _Speak):
                if job.epoch == self._epoch:
                    await self._synthesize(job)
                continue
            self._control(_frame("done", job.context_id))
            self._offset, self._fresh = 0.0, True
            stray = self.core.faults.stray_audio
            if (
                stray is not None and stray.kind == "closed" and job.context_id is not None
                and stray.when(self._utterance - 1, job.context_id)
            ):  # fmt: skip
                self._chunk(_STRAY_PCM, job.context_id)
            if job.eos:
                self._out_send.send_nowait(_Out("", close=(1000, "eos")))
                return

    async def _synthesize(self, job: _Speak) -> None:
        cid = job.context_id or ""
        if self._fresh:  # the first synthesis since the last done: a new utterance
            self._fresh = False
            self._utterance += 1
            stray = self.core.faults.stray_audio
            if (
                stray is not None
                and stray.kind == "unknown"
                and stray.when(self._utterance - 1, cid)
            ):
                self._chunk(_STRAY_PCM, f"stray-{cid}")
        index = self._utterance - 1
        fault = self.core.faults.context_error
        if fault is not None and fault.when(index, cid):
            self._control(_error(fault.message))
            return
        config = self.rime
        try:
            speech = await self.core.synthesizer.synthesize(
                job.text, voice=config.voice, sample_rate=config.sample_rate,
                speaking_rate=config.speaking_rate,
            )  # fmt: skip
        except Exception as exc:  # the connection stays usable, as at Rime
            self._control(_error(f"synthesis failed: {exc}"))
            return
        if self._offset == 0.0:
            await self._delay_first(index, cid)
        offset = self._offset
        for pcm, words in _cut(speech.pcm, speech.words, config.sample_rate, self.config.chunk_ms):
            await self._budget.acquire()
            if job.epoch != self._epoch:  # cleared: the rest of this synthesis is abandoned
                self._budget.release()
                return
            self._out_send.send_nowait(_Out(_chunk_frame(pcm, job.context_id), audio=True))
            if words:
                self._control(_frame("timestamps", job.context_id, word_timestamps={
                    "words": [w for w, _, _ in words],
                    "start": [round(s + offset, 6) for _, s, _ in words],
                    "end": [round(e + offset, 6) for _, _, e in words],
                }))  # fmt: skip
        self._offset += speech.duration

    async def _delay_first(self, index: int, cid: str) -> None:
        faults = self.core.faults
        delay = faults.first_audio_delay
        rule = faults.delay_first_audio
        if rule is not None and rule.when(index, cid):
            delay = max(delay, rule.seconds)
        if delay > 0:
            await trio.sleep(delay)

    def _chunk(self, pcm: bytes, context_id: str) -> None:
        self._control(_chunk_frame(pcm, context_id))

    async def _watchdog(self) -> None:
        timeout = self.config.inactivity_timeout
        while True:
            await trio.sleep_until(self._last_activity + timeout)
            if trio.current_time() >= self._last_activity + timeout:
                self._control(_error("closed due to inactivity"))
                self._out_send.send_nowait(_Out("", close=(1000, "inactivity timeout")))
                return


def _cut(
    pcm: bytes, words: list[tuple[str, float, float]], rate: int, chunk_ms: int
) -> list[tuple[bytes, list[tuple[str, float, float]]]]:
    """Cut one synthesis into chunks of ``chunk_ms``; each word rides with the chunk where it
    starts (the last chunk takes any word left)."""
    step = max(1, rate * chunk_ms // 1000) * 2
    starts = list(range(0, len(pcm), step)) or [0]
    out: list[tuple[bytes, list[tuple[str, float, float]]]] = []
    w = 0
    for n, offset in enumerate(starts):
        end_s = math.inf if n == len(starts) - 1 else (offset + step) / 2 / rate
        mine: list[tuple[str, float, float]] = []
        while w < len(words) and words[w][1] < end_s:
            mine.append(words[w])
            w += 1
        out.append((pcm[offset : offset + step], mine))
    return out


def _chunk_frame(pcm: bytes, context_id: str | None) -> str:
    return _frame("chunk", context_id, data=base64.b64encode(pcm).decode())


# ------------------------------------------------------------------------------------ HTTP


async def rime_http(core: Core, scope: dict[str, Any], receive: ASGIReceive,
                    send: ASGISend) -> None:  # fmt: skip
    """``POST /v1/rime-tts``: JSON ``{"speaker", "text", "modelId", "samplingRate", ...}``;
    answers the raw PCM (``Accept: audio/pcm``, the default) or a WAV (``audio/wav``),
    streamed in ``chunk_ms`` pieces, or a JSON error with 400."""
    body = b""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        body += message.get("body", b"")
        if not message.get("more_body", False):
            break
    accept = "audio/pcm"
    for key, value in scope.get("headers", []):
        if key.lower() == b"accept":
            accept = bytes(value).decode("latin-1").split(";")[0].strip() or accept
    try:
        data = json.loads(body)
    except ValueError:
        data = None
    problem: str | None = None
    config: RimeConfig | str = "expected a JSON object"
    if isinstance(data, dict):
        config = _config(data.get)
    text = data.get("text") if isinstance(data, dict) else None
    if isinstance(config, str):
        problem = config
    elif not isinstance(text, str) or not text.strip():
        problem = "text is required"
    elif len(text) > RIME_MAX_TEXT_CHARS:
        core.violation(f"HTTP request of {len(text)} characters (limit {RIME_MAX_TEXT_CHARS})")
        problem = f"text exceeds {RIME_MAX_TEXT_CHARS} characters"
    elif accept not in ("audio/pcm", "audio/wav", "*/*"):
        problem = f"Accept {accept} is not supported by the local server (audio/pcm, audio/wav)"
    if problem is not None or not isinstance(config, RimeConfig) or not isinstance(text, str):
        await _json(send, 400, {"message": problem})
        return
    speech = await core.synthesizer.synthesize(
        text, voice=config.voice, sample_rate=config.sample_rate,
        speaking_rate=config.speaking_rate,
    )  # fmt: skip
    kind = "audio/wav" if accept == "audio/wav" else "audio/pcm"
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", kind.encode())]})  # fmt: skip
    if kind == "audio/wav":
        header = proto.wav_header(len(speech.pcm), config.sample_rate)
        await send({"type": "http.response.body", "body": header, "more_body": True})
    step = max(1, config.sample_rate * core.config.chunk_ms // 1000) * 2
    for offset in range(0, len(speech.pcm), step):
        piece = speech.pcm[offset : offset + step]
        await send({"type": "http.response.body", "body": piece, "more_body": True})
    await send({"type": "http.response.body", "body": b""})


async def _json(send: ASGISend, status: int, body: dict[str, Any]) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json")]})  # fmt: skip
    await send({"type": "http.response.body", "body": json.dumps(body).encode()})
