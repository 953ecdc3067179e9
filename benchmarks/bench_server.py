"""The local speech server in "firehose" mode, in its own process (run by ``run.py``).

    .venv/bin/python benchmarks/bench_server.py --scenario spec

Prints one JSON line ``{"url": ..., "pid": ...}`` once listening, then serves until its
standard input closes. Commands on standard input, one per line: ``scenario NAME`` switches
faults and pacing (scenarios with the same audio length and chunking share a server),
``stats`` prints one ``{"stats": ...}`` line (counters, drops, the server's CPU seconds).

Firehose: every generation's frames come from a :class:`FrameCache`: the audio
(:func:`_audio.firehose_pcm`, the tone synthesiser's keyed by the whole text), its base64 and
its JSON are built once per (text, audio config) by the local server's own ``audio_frames``,
and only the context id is spliced in per turn: no synthesis or encoding cost. Audio can be
paced at N × real time (the scenario's ``pace``; the local server has no pacing of its own).

Two servers serve those frames (``--server``):

* ``lean`` (default): :mod:`_lean_server`, the protocol subset the benchmark uses, writing
  pre-built frames — ~10x cheaper per message than hypercorn, so it is not the bottleneck;
* ``local``: ``trio_tts.server`` itself (hypercorn, the real session logic and limits) with a
  session subclass whose generation step is the cached, paced one above.
"""

from __future__ import annotations

import json
import math
import os
import sys
from typing import Any

import trio

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import contextlib

import _harness
from _audio import FirehoseSynthesizer
from _lean_server import LeanCore, serve_lean

from trio_tts.server import (
    CloseAfterContexts,
    Faults,
    LocalServer,
    ServerConfig,
    _app,
    open_server,
)
from trio_tts.server.inworld import chunks as _chunks
from trio_tts.server.inworld import proto
from trio_tts.server.inworld.session import InworldSession

_PLACEHOLDER = "@@CONTEXT-ID@@"


class FrameCache:
    """Each generation's frames, built once per (text, audio config): the context id is left
    out (``head + context_id + tail``), so serving a turn costs no synthesis or encoding.

    The first time an audio config is seen, the frames of *every* turn text are built for it
    at once (``texts``): run.py primes each driver with a discarded run before measuring, so
    no measured window pays for building frames (a cold first repetition was measured at
    +50-200 ms TTFA and +20 points of server CPU for every driver)."""

    def __init__(self, synth: FirehoseSynthesizer, chunk_ms: int, texts: list[str]) -> None:
        self.synth = synth
        self.chunk_ms = chunk_ms
        self.texts = texts
        self._str: dict[tuple[Any, ...], list[tuple[str, str]]] = {}
        self._bytes: dict[tuple[Any, ...], list[tuple[bytes, bytes]]] = {}
        self._configs_str: set[tuple[Any, ...]] = set()
        self._configs_bytes: set[tuple[Any, ...]] = set()

    @staticmethod
    def _config_key(config: Any) -> tuple[Any, ...]:
        return (
            config.encoding,
            config.sample_rate_hertz,
            config.word_timestamps,
            config.model_id,
        )

    def _build_str(self, config: Any, text: str) -> list[tuple[str, str]]:
        sp = self.synth.speech(text, config.sample_rate_hertz)
        raw = _chunks.audio_frames(_PLACEHOLDER, text, sp.pcm, sp.words, config, self.chunk_ms)
        return [_split(f) for f in raw]

    def str_frames(self, config: Any, text: str) -> list[tuple[str, str]]:
        ckey = self._config_key(config)
        if ckey not in self._configs_str:  # a new config: every text's frames, now
            self._configs_str.add(ckey)
            for t in self.texts:
                self._str.setdefault((t, *ckey), self._build_str(config, t))
        key = (text, *ckey)
        frames = self._str.get(key)
        if frames is None:
            frames = self._str[key] = self._build_str(config, text)
        return frames

    def byte_frames(self, config: Any, text: str) -> list[tuple[bytes, bytes]]:
        ckey = self._config_key(config)
        if ckey not in self._configs_bytes:
            self._configs_bytes.add(ckey)
            for each in self.texts:
                self._bytes[(each, *ckey)] = self._encoded(config, each)
        key = (text, *ckey)
        frames = self._bytes.get(key)
        if frames is None:
            frames = self._bytes[key] = self._encoded(config, text)
        return frames

    def _encoded(self, config: Any, text: str) -> list[tuple[bytes, bytes]]:
        return [(head.encode(), tail.encode()) for head, tail in self.str_frames(config, text)]


def _split(frame: str) -> tuple[str, str]:
    head, tail = frame.split(_PLACEHOLDER, 1)
    return head, tail


class FirehoseSession(InworldSession):
    """A ``trio_tts.server`` session whose generations come from a :class:`FrameCache`,
    optionally paced (``--server local``)."""

    cache: FrameCache
    pace: float | None = None
    #: Contexts open on a connection when the chaos fault closed it, one entry per close.
    open_at_drop: list[int] = []

    def _create(self, command: Any) -> None:
        super()._create(command)
        close = self.core.faults.close
        if close is not None and self.creates == close.after_contexts:
            self.open_at_drop.append(len(self.contexts))

    async def _generate(self, ctx: Any, text: str, *, flushed: bool = True) -> None:
        if text.strip():
            ctx.generations += 1
            frames = self.cache.str_frames(ctx.config, text)
            if ctx.generations == 1 and self.core.faults.first_audio_delay > 0:
                await trio.sleep(self.core.faults.first_audio_delay)
            step = self.config.chunk_ms / 1000 / self.pace if self.pace else 0.0
            start = trio.current_time()
            cid = ctx.id
            for n, (head, tail) in enumerate(frames):
                if step:
                    await trio.sleep_until(start + n * step)
                await self.acquire_audio()
                self.queue_audio(head + cid + tail, ctx)
        if flushed:
            self.queue_control(proto.encode_flush_completed(ctx.id), ctx)


def _cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


class _Local:
    """``--server local``: ``trio_tts.server`` itself (hypercorn) with :class:`FirehoseSession`."""

    def __init__(self, server: LocalServer) -> None:
        self.server = server

    def configure(self, s: _harness.Scenario) -> None:
        FirehoseSession.pace = s.pace
        faults = Faults(first_audio_delay=s.first_audio_delay)
        if s.close_after is not None:
            faults.close = CloseAfterContexts(after_contexts=s.close_after, code=1011)
        self.server.set_faults(faults)

    def stats(self) -> dict[str, Any]:
        st = self.server.statistics()
        return {
            "connections_accepted": st.connections_accepted,
            "contexts_created": st.contexts_created,
            "peak_connections": st.peak_connections,
            "violations": len(st.violations),
            "drops": len(FirehoseSession.open_at_drop),
            "open_at_drops": sum(FirehoseSession.open_at_drop),
        }


class _Lean:
    """``--server lean`` (the default): :mod:`_lean_server`."""

    def __init__(self, core: LeanCore) -> None:
        self.core = core

    def configure(self, s: _harness.Scenario) -> None:
        self.core.pace = s.pace
        self.core.first_audio_delay = s.first_audio_delay
        self.core.close_after = s.close_after

    def stats(self) -> dict[str, Any]:
        c = self.core
        return {
            "connections_accepted": c.connections_accepted,
            "contexts_created": c.contexts_created,
            "peak_connections": c.peak_connections,
            "violations": c.violations,
            "drops": len(c.open_at_drop),
            "open_at_drops": sum(c.open_at_drop),
        }


async def _control_loop(handle: _Local | _Lean) -> None:
    """Commands on stdin, one per line, until it closes: ``scenario NAME`` switches faults
    and pacing; ``stats`` prints one JSON line (counters, drops, the server's CPU seconds)."""
    while line := await trio.to_thread.run_sync(sys.stdin.readline, abandon_on_cancel=True):
        cmd = line.split()
        if cmd[:1] == ["scenario"]:
            handle.configure(_harness.SCENARIOS[cmd[1]])
            print(json.dumps({"ok": cmd[1]}), flush=True)
        else:
            print(json.dumps({"stats": {**handle.stats(), "cpu_s": _cpu_seconds()}}), flush=True)


async def main() -> None:
    import argparse

    p = argparse.ArgumentParser()
    p.add_argument("--scenario", required=True, choices=sorted(_harness.SCENARIOS))
    p.add_argument("--server", choices=("lean", "local"), default="lean")
    args = p.parse_args()
    s = _harness.SCENARIOS[args.scenario]
    synth = FirehoseSynthesizer(s.seconds)
    texts = _harness.all_texts()
    for text in texts:  # every turn's audio, computed before any client comes
        synth.speech(text, _harness.RATE)
    cache = FrameCache(synth, s.chunk_ms, texts)
    handle: _Local | _Lean
    if args.server == "lean":
        core = LeanCore(cache.byte_frames, max_contexts=_harness.CONTEXTS_PER_CONNECTION)
        core.chunk_ms = s.chunk_ms
        handle = _Lean(core)
        handle.configure(s)
        async with trio.open_nursery() as nursery:  # the listener
            port = await nursery.start(serve_lean, core)
            url = f"ws://127.0.0.1:{port}/tts/v1/voice:streamBidirectional"
            print(json.dumps({"url": url, "pid": os.getpid()}), flush=True)
            await _control_loop(handle)
            nursery.cancel_scope.cancel()
        return
    FirehoseSession.cache = cache
    _app.SESSIONS[FirehoseSession.PATH] = FirehoseSession  # the benchmark-only session
    config = ServerConfig(
        synthesizer=synth,
        chunk_ms=s.chunk_ms,
        max_connections=_harness.MAX_CONNECTIONS + 4,  # a pool replacing dropped ones races
        inactivity_timeout=math.inf,
    )
    async with open_server(config) as server:
        handle = _Local(server)
        handle.configure(s)
        print(json.dumps({"url": server.ws_url, "pid": os.getpid()}), flush=True)
        await _control_loop(handle)


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        trio.run(main)
