"""The fault matrix: every server fault × {1 context, 5 on the connection, others elsewhere}
× every provider (:data:`PROVIDERS`: Inworld, ElevenLabs, Cartesia, Rime).

Each case runs the pool against the local server's application through the in-memory
transport of :mod:`trio_tts.testing` under ``MockClock(autojump_threshold=0)`` (exact virtual
times, no sockets); the faults that live at the TCP level run again over real sockets. After
every case the global invariants are checked: no audio lost or misrouted, no slot leaked, the
per-connection cap never exceeded (the server's own peak and violations).
Rapid cancel and re-open runs per provider too.

The layouts (:func:`layout_for`). For the multiplexed providers a connection carries 5
contexts at once: ``one`` is a single caller on a single connection; ``five`` is five callers
on one connection, the fault on it (a context fault on its 3rd context); ``others`` is ten
callers over two connections, the fault on the second while the first (opened ahead) must
stay untouched.

Rime's ``/ws3`` carries one utterance at a time (``per = 1``): a connection hosts contexts
only *in turn*, so the layouts keep their connections, callers and fault targets and mean:

* ``one`` — unchanged: one caller, one connection;
* ``five`` — five callers taking turns on one connection (capacity 1: four queue behind the
  one speaking, and each reuses the connection only after the previous ``done`` proved it
  drained). A connection fault hits the utterance on the wire and the four queued behind it
  must be served by a new connection; a context fault hits the connection's 3rd utterance;
* ``others`` — ten callers over two connections of one context each, the fault on the
  second. The first (opened ahead) takes turn after turn while the second is dialled, so the
  second may carry a single utterance: a context fault there selects all of its utterances.

Rime's server counts a context open from its first text until a ``done`` leaves nothing of it
outstanding, so its ``peak_contexts_per_connection`` and violations prove the cap of 1 per
connection held (a second context's text while one is open is a violation). Every fault case
applies to Rime, none is skipped: the connection and handshake faults are the shared ones,
and the context faults select utterances (:mod:`trio_tts.server.rime.session_faults`) —
"on create" is an ``error`` answering the utterance's text before any audio, "after audio"
one after its first chunk (Rime's errors carry no code), a stall, delay or pacing holds its
audio (and so its ``done``), and stray audio is a chunk tagged with an id never used as it
starts, or with its own id after its ``done``.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable, Mapping
from typing import Any

import attrs
import pytest
import trio
import trio.testing

import trio_tts
from trio_tts.server import (
    AcceptThenClose,
    BadFrame,
    BlackHole,
    CloseConnection,
    ContextErrorFault,
    DelayFirstAudio,
    DropConnection,
    Faults,
    LocalServer,
    NoHandshakeAnswer,
    PaceAudio,
    RejectHandshake,
    ServerConfig,
    StallContext,
    StrayAudio,
    open_server,
    tone_pcm,
)
from trio_tts.testing import (
    MemoryServer,
    always,
    assert_quiescent,
    at,
    nth,
    open_memory_server,
    provider_for,
)

from helpers import connection_of

# -- regressions found by the matrix -----------------------------------------------------------


class _ClosesAt:
    """A transport the server closes at ``at`` (virtual time): its receiver fails then."""

    def __init__(self, at: float) -> None:
        self.at = at

    async def send(self, message: str) -> None:
        await trio.lowlevel.checkpoint()

    async def send_many(self, messages: object) -> None:
        await trio.lowlevel.checkpoint()

    async def receive(self) -> str | bytes:
        await trio.sleep_until(self.at)
        raise trio_tts.ConnectionLost("closed by the server (code 1000)", code=1000)

    async def ping(self) -> None:
        await trio.lowlevel.checkpoint()

    async def aclose(self, code: int = 1000, reason: str = "") -> None:
        await trio.lowlevel.checkpoint()


async def test_a_slot_on_a_connection_that_is_ending_is_never_a_raw_trio_error(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Regression. Between the receiver's failure and the actor reporting its end, the sender
    has already closed the outbound channel while the connection still reads "open"; a caller
    placed on it in that window got ``trio.BrokenResourceError`` from ``open_context`` (and a
    moved context's ``_move`` task crashed the pool's nursery, taking the pool down). Four
    callers arriving exactly when the connection fails hit the window (trio orders a batch
    at random, so each one does with probability 1/2): the fix lets the failing connection
    move them like its other contexts."""

    async def connect(url: str, headers: object, **_: object) -> _ClosesAt:
        await trio.lowlevel.checkpoint()
        return _ClosesAt(start + 1.0)

    provider = trio_tts.InworldProvider(url="ws://closing.invalid/x")
    for _round in range(3):
        errors: list[BaseException] = []
        start = trio.current_time()
        async with trio_tts.open_pool(
            provider, transport_factory=connect, heartbeat_interval=None, max_connections=1
        ) as pool:

            async def caller(
                at: float, pool: trio_tts.Pool = pool, errors: list[BaseException] = errors
            ) -> None:
                await trio.sleep_until(at)
                try:
                    ctx = await pool.open_context()
                    async with ctx:
                        await ctx.send_text("never spoken")
                        await ctx.finish()
                        async for _ in ctx:
                            pass
                except trio_tts.TTSError as exc:
                    errors.append(exc)

            with trio.fail_after(60):
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(caller, start)
                    for _ in range(4):
                        nursery.start_soon(caller, start + 1.0)
            await assert_quiescent(pool)
        assert len(errors) == 5
        assert all(isinstance(e, trio_tts.ConnectionLost) for e in errors)
        assert pool.statistics().contexts_moved <= 5 * 2  # move_attempts=3: two moves each


# -- the providers ---------------------------------------------------------------------------




# -- the matrix --------------------------------------------------------------------------------

LATENCY = 0.005  # virtual seconds per in-memory handshake
DEADLINE = 60.0  # every caller's own deadline (virtual seconds)
STALE = 10.0  # the pool's stale_close_timeout in the matrix
PCM = trio_tts.VoiceOptions(encoding="PCM", sample_rate=24000)
LAYOUTS = ("one", "five", "others")


@attrs.frozen
class Target:
    """A multiplexed provider the matrix runs against (the local server speaks each)."""

    #: The protocol's name (:func:`trio_tts.testing.provider_for`).
    name: str
    #: The server's limits for ``max_connections`` connections of ``per`` contexts.
    config: Callable[[int, int], ServerConfig]
    #: The provider for those limits, pointed at the memory server.
    provider: Callable[[MemoryServer, int, int], trio_tts.Provider[Any]]
    #: The pool's default options: raw 24 kHz PCM.
    defaults: trio_tts.Options
    #: What the server synthesises for a context given ``text`` then closed.
    spoken: Callable[[str], str]
    #: The codes a ``ContextErrorFault`` may reach the caller with (``ContextFailed.code``).
    fault_codes: frozenset[int | None]
    #: The most contexts a connection carries at once: the matrix asks for
    #: ``min(wanted, max_per)`` (Rime's ``/ws3``: one utterance at a time).
    max_per: int = 5

    def per(self, wanted: int) -> int:
        return min(wanted, self.max_per)


def _config(conns: int, per: int) -> ServerConfig:
    return ServerConfig(
        synthesizer="tone", max_connections=conns, max_contexts_per_connection=per,
        elevenlabs_max_contexts=per,
    )  # fmt: skip


PROVIDERS = (
    Target("inworld", _config, lambda server, conns, per: provider_for(server), PCM,
           lambda text: text, frozenset({13})),
    # A context begins with its init message's text, one space; errors carry no code.
    Target("elevenlabs", _config, lambda server, conns, per: provider_for(server, "elevenlabs"),
           trio_tts.ElevenLabsOptions(), lambda text: " " + text, frozenset({None})),
    Target(
        "cartesia",
        # Cartesia counts contexts per account: the server's plan limit is the pool's whole
        # capacity, and each connection is held to ``per`` as well.
        lambda conns, per: ServerConfig(
            synthesizer="tone", max_connections=conns, cartesia_concurrency=conns * per,
            cartesia_contexts_per_connection=per,
        ),
        lambda server, conns, per: trio_tts.CartesiaProvider(
            url=server.cartesia_url, concurrency=conns * per, contexts_per_connection=per
        ),
        trio_tts.CartesiaOptions(),
        lambda text: text,
        frozenset({500}),  # a status outside 400..599 is a 500 on Cartesia's error event
    ),
    # One utterance per connection (the server holds every connection to 1 context); Rime's
    # error frames carry a message and no code.
    Target("rime", lambda conns, per: ServerConfig(synthesizer="tone", max_connections=conns),
           lambda server, conns, per: provider_for(server, "rime"), trio_tts.RimeOptions(),
           lambda text: text, frozenset({None}), max_per=1),
)  # fmt: skip
TARGETS = {t.name: t for t in PROVIDERS}


def text_for(i: int) -> str:
    # A distinct first letter: the very first samples differ between contexts, so a single
    # misrouted chunk breaks the prefix check.
    return f"{chr(65 + i)}{i} has its own words here."


@attrs.frozen
class Case:
    """One fault: ``build(target, ctx_pred)`` makes the rules for server connection
    ``target``; affected callers may end in ``allowed`` outcomes (others must get audio)."""

    name: str
    build: Callable[[int, Callable[..., bool]], Faults]
    allowed: frozenset[str]
    settings: Mapping[str, Any] = attrs.field(factory=dict)
    #: Extra checks: (outcomes, pool, server, t_fault, target) -> None.
    check: Callable[[list[Outcome], trio_tts.Pool, MemoryServer, float, Target], None] | None = (
        None
    )
    #: The fault must visibly fire (some affected caller saw something) — off for the
    #: faults a caller cannot see (stray audio is dropped silently, by design).
    visible: bool = True

    @property
    def handshake_fault(self) -> bool:
        """Faults of the upgrade itself: callers waiting for that dial are re-queued."""
        return self.name.startswith(("reject-", "accept-then-close", "no-answer"))


@attrs.define
class Outcome:
    index: int
    kind: str = "pending"
    error: BaseException | None = None
    data: bytes = b""
    conn: int | None = None
    elapsed: float = 0.0


def _lost_or_moved(*extra: str) -> frozenset[str]:
    return frozenset({"audio", "ConnectionLost", *extra})


_Check = Callable[[list[Outcome], trio_tts.Pool, MemoryServer, float, Target], None]


def _codes(code: int) -> _Check:
    def check(
        outcomes: list[Outcome], pool: trio_tts.Pool, server: MemoryServer, t0: float,
        target: Target,
    ) -> None:  # fmt: skip
        for o in outcomes:
            if isinstance(o.error, trio_tts.ConnectionLost):
                assert o.error.code == code, (o.error, o.error.code)

    return check


def _handshakes_after(server: MemoryServer, t0: float) -> list[float]:
    return [t for t in server.handshake_statistics().times if t >= t0]


def _no_retry(
    outcomes: list[Outcome], pool: trio_tts.Pool, server: MemoryServer, t0: float, _: Target
) -> None:
    # 401/403: one handshake fails every caller waiting for it; nobody tries again.
    assert len(_handshakes_after(server, t0)) == 1
    for o in outcomes:
        if o.error is not None:
            assert isinstance(o.error, trio_tts.HandshakeRejected)
            assert o.error.status in (401, 403)


def _retry_after_2(
    outcomes: list[Outcome], pool: trio_tts.Pool, server: MemoryServer, t0: float, _: Target
) -> None:
    times = _handshakes_after(server, t0)
    assert len(times) == 2
    # Rejected at +LATENCY; the retry waits exactly Retry-After: 2 s.
    assert times[1] - times[0] == pytest.approx(2.0 + LATENCY, abs=1e-9)


def _retry_after_1_three_times(
    outcomes: list[Outcome], pool: trio_tts.Pool, server: MemoryServer, t0: float, _: Target
) -> None:
    times = _handshakes_after(server, t0)
    # connect_attempts (3), then HandshakeRejected(429) to the callers waiting for that dial;
    # callers queued behind it (Rime: one at a time) dial on until the circuit opens after
    # circuit_threshold (5) failures in a row, then fail fast with CircuitOpen.
    circuit = any(isinstance(o.error, trio_tts.CircuitOpen) for o in outcomes)
    assert len(times) == (5 if circuit else 3)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert gaps == [pytest.approx(1.0 + LATENCY, abs=1e-9)] * (len(times) - 1)
    assert any(isinstance(o.error, trio_tts.HandshakeRejected) for o in outcomes)


def _jittered_503(
    outcomes: list[Outcome], pool: trio_tts.Pool, server: MemoryServer, t0: float, _: Target
) -> None:
    times = _handshakes_after(server, t0)
    assert len(times) == 2
    gap = times[1] - times[0] - LATENCY
    # backoff_base 0.25 × 2**0, jittered into [50 %, 100 %], then spread by up to half of it.
    assert 0.125 <= gap <= 0.375


def _bounded_accept_close(
    outcomes: list[Outcome], pool: trio_tts.Pool, server: MemoryServer, t0: float, _: Target
) -> None:
    affected = [o for o in outcomes if o.kind != "audio"]
    # No tight loop: each affected context tries at most move_attempts (3) connections.
    assert len(_handshakes_after(server, t0)) <= 3 * max(1, len(affected))
    assert all(isinstance(o.error, trio_tts.ConnectionLost) for o in affected)


def _delayed(
    outcomes: list[Outcome], pool: trio_tts.Pool, server: MemoryServer, t0: float, _: Target
) -> None:
    assert max(o.elapsed for o in outcomes) >= 3.0


def _context_failed(
    outcomes: list[Outcome], pool: trio_tts.Pool, server: MemoryServer, t0: float,
    target: Target,
) -> None:  # fmt: skip
    failed = [o for o in outcomes if o.error is not None]
    assert len(failed) == 1
    error = failed[0].error
    assert isinstance(error, trio_tts.ContextFailed) and error.code in target.fault_codes


def _stray_dropped(
    outcomes: list[Outcome], pool: trio_tts.Pool, server: MemoryServer, t0: float, _: Target
) -> None:
    assert all(o.kind == "audio" for o in outcomes)


CASES: list[Case] = [
    Case("drop", lambda t, c: Faults(drop=DropConnection(after_frames=7, connections=at(t))),
         _lost_or_moved()),
    Case("blackhole", lambda t, c: Faults(blackhole=BlackHole(after_frames=7, connections=at(t))),
         _lost_or_moved(), settings={"heartbeat_interval": 2.0, "heartbeat_timeout": 1.0}),
    Case("stall-one-context",
         lambda t, c: Faults(stall_context=StallContext(when=c, after_frames=1, connections=at(t))),
         frozenset({"deadline", "ContextFailed"})),
    Case("delay-first-audio",
         lambda t, c: Faults(delay_first_audio=DelayFirstAudio(3.0, when=c, connections=at(t))),
         frozenset({"audio"}), check=_delayed, visible=False),
    *[
        Case(f"close-{code}",
             lambda t, c, code=code: Faults(close_connection=CloseConnection(
                 code=code, reason="going away", after_frames=7, connections=at(t))),
             _lost_or_moved(), check=_codes(code))
        for code in (1000, 1001, 1008, 1011, 4000)
    ],
    *[
        Case(f"reject-{status}",
             lambda t, c, status=status: Faults(reject=RejectHandshake(status=status)),
             frozenset({"HandshakeRejected"}), check=_no_retry)
        for status in (401, 403)
    ],
    Case("reject-429-retry-after",
         lambda t, c: Faults(reject=RejectHandshake(status=429, retry_after=2, count=1)),
         frozenset({"audio"}), check=_retry_after_2, visible=False),
    # In the "-always" cases callers queued behind the failing dial (Rime's five take turns
    # on one connection) may fail fast with CircuitOpen: the pool stopped dialling.
    Case("reject-429-always",
         lambda t, c: Faults(reject=RejectHandshake(status=429, retry_after=1)),
         frozenset({"HandshakeRejected", "CircuitOpen"}), check=_retry_after_1_three_times),
    Case("reject-503-once", lambda t, c: Faults(reject=RejectHandshake(status=503, count=1)),
         frozenset({"audio"}), check=_jittered_503, visible=False),
    Case("accept-then-close-once",
         lambda t, c: Faults(accept_then_close=AcceptThenClose(handshakes=at(t))),
         _lost_or_moved(), visible=False),
    Case("accept-then-close-always",
         lambda t, c: Faults(accept_then_close=AcceptThenClose(handshakes=lambda n: n >= t)),
         frozenset({"ConnectionLost", "CircuitOpen"}), check=_bounded_accept_close),
    Case("no-answer-once",
         lambda t, c: Faults(no_answer=NoHandshakeAnswer(handshakes=at(t))),
         frozenset({"audio"}), settings={"handshake_timeout": 2.0}, visible=False),
    Case("no-answer-always",
         lambda t, c: Faults(no_answer=NoHandshakeAnswer(handshakes=lambda n: n >= t)),
         frozenset({"ConnectionLost", "CircuitOpen"}), settings={"handshake_timeout": 2.0}),
    *[
        Case(f"bad-frame-{kind}",
             lambda t, c, kind=kind: Faults(bad_frame=BadFrame(
                 after_frames=7, kind=kind, connections=at(t))),
             _lost_or_moved(),
             check=_codes({"oversize": 1009, "utf8": 1007}[kind])
             if kind in ("oversize", "utf8") else None)
        for kind in ("json", "binary", "oversize", "utf8")
    ],
    Case("context-error-on-create",
         lambda t, c: Faults(context_error=ContextErrorFault(when=c, connections=at(t))),
         frozenset({"ContextFailed"}), check=_context_failed),
    Case("context-error-after-audio",
         lambda t, c: Faults(context_error=ContextErrorFault(
             when=c, connections=at(t), after_audio=True)),
         frozenset({"ContextFailed"}), check=_context_failed),
    Case("stray-audio-unknown-context",
         lambda t, c: Faults(stray_audio=StrayAudio("unknown", when=c, connections=at(t))),
         frozenset({"audio"}), check=_stray_dropped, visible=False),
    Case("stray-audio-closed-context",
         lambda t, c: Faults(stray_audio=StrayAudio("closed", when=c, connections=at(t))),
         frozenset({"audio"}), check=_stray_dropped, visible=False),
]  # fmt: skip


async def _caller(pool: trio_tts.Pool, outcome: Outcome, target: Target = PROVIDERS[0]) -> None:
    start = trio.current_time()
    text = text_for(outcome.index)
    expected = tone_pcm(target.spoken(text), 24000)
    with trio.move_on_after(DEADLINE) as scope:
        try:
            ctx = await pool.open_context()
            outcome.conn = connection_of(pool, ctx)
            async with ctx:
                await ctx.send_text(text)
                await ctx.finish()
                async for event in ctx:
                    if isinstance(event, trio_tts.Audio):
                        outcome.data += event.data
                    # Own bytes, in order, never anybody else's: always a prefix.
                    assert expected.startswith(outcome.data)
                outcome.kind = "audio"
        except trio_tts.TTSError as exc:
            outcome.kind, outcome.error = type(exc).__name__, exc
            if isinstance(exc, trio_tts.ProtocolError | trio_tts.HandshakeRejected):
                outcome.kind = (
                    "HandshakeRejected" if isinstance(exc, trio_tts.HandshakeRejected)
                    else "ConnectionLost"
                )  # fmt: skip
            if "ctx" in locals():
                # Nothing after an error: iteration raises again, with no event.
                with pytest.raises(trio_tts.TTSError):
                    await ctx.__anext__()
    if scope.cancelled_caught:
        outcome.kind = "deadline"
    outcome.elapsed = trio.current_time() - start
    assert expected.startswith(outcome.data)
    if outcome.kind == "audio":
        assert outcome.data == expected


@attrs.frozen
class Layout:
    """Where the callers go and where the fault lands (see the module docstring)."""

    #: Contexts per connection, connections, callers.
    per: int
    max_connections: int
    callers: int
    #: The server connection (accept order) the fault is aimed at, and the contexts (or
    #: Rime utterances) on it a context fault selects.
    target: int
    ctx_pred: Callable[..., bool]


def layout_for(provider: Target, layout: str) -> Layout:
    """``one``, ``five`` or ``others`` for ``provider``: the same connections, callers and
    fault targets for every provider; only the contexts a connection carries at once differ
    (5, or 1 for Rime: its five share one connection in turn)."""
    per = provider.per(5)
    ctx_pred = always if layout == "one" else nth(3)
    if per == 1 and layout == "others":
        # The healthy connection (opened ahead) takes turn after turn while the second is
        # dialled, so the second may carry a single utterance: the fault takes all of its.
        ctx_pred = always
    return Layout(
        per=per,
        max_connections=2 if layout == "others" else 1,
        callers={"one": 1, "five": 5, "others": 10}[layout],
        target=1 if layout == "others" else 0,
        ctx_pred=ctx_pred,
    )


async def run_case(case: Case, layout: str, provider: Target = PROVIDERS[0]) -> None:
    shape = layout_for(provider, layout)
    per, max_connections, callers = shape.per, shape.max_connections, shape.callers
    target, ctx_pred = shape.target, shape.ctx_pred
    config = provider.config(max_connections, per)
    settings: dict[str, Any] = {
        "defaults": provider.defaults,
        "max_connections": max_connections,
        "contexts_per_connection": per,
        "stale_close_timeout": STALE,
        "max_concurrent_handshakes": 4,
        **case.settings,
    }
    async with (
        open_memory_server(config, handshake_latency=LATENCY) as server,
        trio_tts.open_pool(
            provider.provider(server, max_connections, per), transport_factory=server.connect,
            **settings,
        ) as pool,
    ):
        if layout == "others":
            assert await pool.prewarm(1) == 1  # server connection 0: the healthy one
        server.faults = case.build(target, ctx_pred)
        t0 = trio.current_time()
        outcomes = [Outcome(i) for i in range(callers)]
        async with trio.open_nursery() as nursery:
            for outcome in outcomes:
                nursery.start_soon(_caller, pool, outcome, provider)
        healthy = [o for o in outcomes if layout == "others" and o.conn == 1]
        affected = [o for o in outcomes if o not in healthy]
        summary = [(o.index, o.kind, o.conn) for o in outcomes]
        # Contexts on other connections are untouched: exact audio.
        assert all(o.kind == "audio" for o in healthy), summary
        if layout == "others":
            # At least those placed first (a full connection); callers re-queued after a
            # failed dial may take a slot the healthy connection freed meanwhile.
            assert len(healthy) >= per, summary
        if layout == "others" and case.handshake_fault and not affected:
            # The dial failed and every caller waiting for it took a slot the healthy
            # connection freed first: no redial was needed (nobody waited for one).
            assert _handshakes_after(server, t0), summary
            assert all(o.kind == "audio" for o in outcomes), summary
            await assert_quiescent(pool, timeout=STALE + 5)
            return
        for o in affected:
            assert o.kind in case.allowed | {"audio"}, summary
            if o.kind != "deadline":
                assert o.elapsed < DEADLINE, summary
        if case.visible:
            assert any(o.kind != "audio" for o in affected) or pool.statistics().contexts_moved, (
                summary
            )
        if case.check is not None:
            case.check(affected, pool, server, t0, provider)
        # Global invariants: never over the limits (the server records every violation),
        # a few handshakes at most at once, nothing held or leaked.
        assert server.statistics().violations == ()
        assert server.handshake_statistics().peak_in_flight <= 4
        await assert_quiescent(pool, timeout=STALE + 5)
        stats = server.statistics()
        assert stats.peak_contexts_per_connection <= per
        assert stats.peak_connections <= max_connections


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
@pytest.mark.parametrize("provider", PROVIDERS, ids=[p.name for p in PROVIDERS])
async def test_fault_matrix(
    provider: Target, case: Case, layout: str, autojump_clock: trio.testing.MockClock
) -> None:
    await run_case(case, layout, provider)


# -- rapid cancel and re-open: the cap holds --------------------------------------------------

CHURN_FAULTS: dict[str, Callable[[], Faults]] = {
    "healthy": Faults,
    "paced-audio": lambda: Faults(pace_audio=PaceAudio(0.3)),
    "delay-first-audio": lambda: Faults(delay_first_audio=DelayFirstAudio(1.0)),
    "drop": lambda: Faults(drop=DropConnection(after_frames=40, connections=at(0))),
    "close-1008": lambda: Faults(close_connection=CloseConnection(
        code=1008, after_frames=30, connections=at(1))),
}  # fmt: skip


@pytest.mark.parametrize("fault", list(CHURN_FAULTS))
@pytest.mark.parametrize("provider", PROVIDERS, ids=[p.name for p in PROVIDERS])
async def test_rapid_cancel_and_reopen_never_exceeds_the_cap(
    provider: Target, fault: str, autojump_clock: trio.testing.MockClock
) -> None:
    """Twelve callers each abandon six contexts in a row — half before any audio, half at
    their first audio (barge-ins) — then speak one turn. The slot of an abandoned context
    comes back only when the server confirms it gone, so the server never sees a sixth
    context on a socket (its peak and its violations), whatever the fault; no slot or lease
    is left behind; every turn that completes has exactly its own audio. (Rime: two
    connections of one utterance each, reused only after the ``done`` that proves the
    abandoned one drained — never a second context on a socket.)"""
    per, max_connections = provider.per(5), 2
    config = provider.config(max_connections, per)
    config.faults = CHURN_FAULTS[fault]()
    async with (
        open_memory_server(config, handshake_latency=LATENCY) as server,
        trio_tts.open_pool(
            provider.provider(server, max_connections, per), transport_factory=server.connect,
            defaults=provider.defaults, max_connections=max_connections,
            contexts_per_connection=per, stale_close_timeout=STALE,
        ) as pool,
    ):  # fmt: skip
        outcomes = [Outcome(i) for i in range(12)]

        async def churner(outcome: Outcome) -> None:
            for k in range(6):
                with contextlib.suppress(trio_tts.ConnectionLost):
                    ctx = await pool.open_context()
                    async with ctx:  # leaving cancels it on the server
                        await ctx.send_text(text_for(outcome.index), flush=True)
                        if k % 2:
                            async for event in ctx:
                                if isinstance(event, trio_tts.Audio) and event.data:
                                    break
            await _caller(pool, outcome, provider)

        with trio.fail_after(DEADLINE * 2):
            async with trio.open_nursery() as nursery:
                for outcome in outcomes:
                    nursery.start_soon(churner, outcome)
        kinds = {o.kind for o in outcomes}
        assert kinds <= ({"audio"} if fault in ("healthy", "paced-audio", "delay-first-audio")
                         else {"audio", "ConnectionLost"}), [(o.kind, o.error) for o in outcomes]
        await assert_quiescent(pool, timeout=STALE + 5)
        stats = server.statistics()
        assert stats.violations == ()
        assert stats.peak_contexts_per_connection <= per
        assert stats.peak_connections <= max_connections
        assert stats.contexts_open == 0


@pytest.mark.parametrize("spec", PROVIDERS, ids=[p.name for p in PROVIDERS])
async def test_rapid_cancel_and_reopen_stays_within_the_caps(
    spec: Target, autojump_clock: trio.testing.MockClock
) -> None:
    """Barge-in after barge-in: contexts cancelled before any text, right after their text,
    or after some audio, and new ones opened at once. A slot comes back only when the server
    confirmed (Inworld: ``contextClosed``; Cartesia: its expiry after the cancel), so neither
    the connection's cap nor the account's is ever passed (the server records every
    violation); no audio is misrouted (each caller's audio is a prefix of its own), and
    nothing leaks. (Rime: two connections of one utterance each; a slot comes back at the
    ``done`` answering the ``clear`` + ``flush`` of a cancel.)"""
    conns, per = 2, spec.per(3)
    config = spec.config(conns, per)
    config.faults = Faults(pace_audio=PaceAudio(0.02))  # replies that keep streaming
    async with (
        open_memory_server(config, handshake_latency=LATENCY) as server,
        trio_tts.open_pool(
            spec.provider(server, conns, per), transport_factory=server.connect,
            defaults=spec.defaults, max_connections=conns, contexts_per_connection=per,
        ) as pool,
    ):  # fmt: skip
        peak = heard = 0

        async def barge_in(worker: int) -> None:
            nonlocal peak, heard
            for i in range(10):
                text = text_for((worker * 10 + i) % 26)
                expected = tone_pcm(spec.spoken(text), 24000)
                ctx = await pool.open_context()
                peak = max(peak, *(len(c.contexts) for c in pool.inspect().connections))
                got = b""
                async with ctx:
                    if i % 3:
                        await ctx.send_text(text, flush=i % 3 == 2)
                    if i % 3 == 2:
                        async for event in ctx:  # some audio, then the user barges in
                            assert isinstance(event, trio_tts.Audio)
                            got += event.data
                            if len(got) > 2000:
                                break
                assert expected.startswith(got)
                heard += bool(got)

        with trio.fail_after(DEADLINE):
            async with trio.open_nursery() as nursery:
                for worker in range(8):
                    nursery.start_soon(barge_in, worker)
        await assert_quiescent(pool, timeout=STALE + 5)
        stats = server.statistics()
        assert peak <= per and stats.peak_contexts_per_connection <= per
        assert stats.peak_connections <= conns
        assert stats.violations == ()
        assert (stats.contexts_open, pool.statistics().contexts_opened) == (0, 80)
        assert stats.contexts_created >= 8 * 6 and heard == 8 * 3  # all really ran

# -- reconnect storms: jitter and the handshake limit ------------------------------------------


async def test_a_reconnect_storm_is_spread_and_bounded(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """20 connections closed at the same instant (1011), each carrying a context that had no
    audio yet: the 20 moves reconnect with jittered backoff, never more than
    ``max_concurrent_handshakes`` handshakes at once, and every caller still gets exactly its
    audio. (Every first audio is held 1 s, so each moved context keeps its new connection
    busy and the pool really needs 20 new ones.)"""
    config = ServerConfig(synthesizer="tone", max_connections=20)
    async with (
        open_memory_server(config, handshake_latency=0.05) as server,
        trio_tts.open_pool(
            provider_for(server), transport_factory=server.connect, defaults=PCM,
            max_connections=20, contexts_per_connection=1, max_concurrent_handshakes=4,
        ) as pool,
    ):  # fmt: skip
        assert await pool.prewarm(20) == 20
        server.faults = Faults(
            delay_first_audio=DelayFirstAudio(1.0),
            close_connection=CloseConnection(1011, after_frames=1, connections=lambda n: n < 20),
        )
        t0 = trio.current_time()
        outcomes = [Outcome(i) for i in range(20)]
        async with trio.open_nursery() as nursery:
            for outcome in outcomes:
                nursery.start_soon(_caller, pool, outcome)
        assert [o.kind for o in outcomes] == ["audio"] * 20, [(o.kind, o.error) for o in outcomes]
        assert pool.statistics().contexts_moved == 20
        storm = [t for t in server.handshake_statistics().times if t >= t0]
        assert len(storm) == 20
        assert server.handshake_statistics().peak_in_flight <= 4
        assert len(set(storm)) >= 15 and max(storm) - min(storm) > 0.1  # jittered, not a herd
        assert server.statistics().violations == ()
        await assert_quiescent(pool)


# -- the TCP-level faults again, over real sockets ---------------------------------------------


async def _tcp_turns(
    server: LocalServer, n: int, target: Target, **settings: Any
) -> list[Outcome]:
    outcomes = [Outcome(i) for i in range(n)]
    async with trio_tts.open_pool(
        provider_for(server, target.name), defaults=target.defaults, stale_close_timeout=STALE,
        **settings,
    ) as pool:  # fmt: skip
        cap = pool.statistics().contexts_per_connection
        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                for outcome in outcomes:
                    nursery.start_soon(_caller, pool, outcome, target)
        await assert_quiescent(pool, timeout=10)
    stats = server.statistics()
    assert stats.violations == ()
    assert stats.peak_contexts_per_connection <= cap
    return outcomes


@pytest.mark.parametrize("target", PROVIDERS, ids=[p.name for p in PROVIDERS])
async def test_tcp_drop_mid_audio(target: Target) -> None:
    faults = Faults(drop=DropConnection(after_frames=7, connections=at(0)))
    async with open_server(ServerConfig(synthesizer="tone", faults=faults)) as server:
        outcomes = await _tcp_turns(server, 5, target, max_connections=1)
    kinds = {o.kind for o in outcomes}
    assert kinds <= {"audio", "ConnectionLost"} and "ConnectionLost" in kinds
    for o in outcomes:
        if o.error is not None:
            assert isinstance(o.error, trio_tts.ConnectionLost) and o.error.code == 1006


@pytest.mark.parametrize("target", PROVIDERS, ids=[p.name for p in PROVIDERS])
async def test_tcp_accept_then_close_is_bounded(target: Target) -> None:
    faults = Faults(accept_then_close=AcceptThenClose(code=1011, reason="nope"))
    async with open_server(ServerConfig(synthesizer="tone", faults=faults)) as server:
        outcomes = await _tcp_turns(server, 10, target)
        accepted = server.statistics().connections_accepted
    assert {o.kind for o in outcomes} == {"ConnectionLost"}
    assert accepted <= 3 * 10  # move_attempts per context at most: no retry loop


@pytest.mark.parametrize("target", PROVIDERS, ids=[p.name for p in PROVIDERS])
async def test_tcp_retry_after_is_honoured(target: Target) -> None:
    faults = Faults(reject=RejectHandshake(status=429, retry_after=1, count=1))
    async with open_server(ServerConfig(synthesizer="tone", faults=faults)) as server:
        outcomes = await _tcp_turns(server, 3, target, max_connections=1)  # one dial
        times = server.statistics().handshake_times
    assert {o.kind for o in outcomes} == {"audio"}
    assert len(times) == 2 and times[1] - times[0] >= 1.0


@pytest.mark.parametrize("target", PROVIDERS, ids=[p.name for p in PROVIDERS])
async def test_tcp_handshake_never_answered(target: Target) -> None:
    faults = Faults(no_answer=NoHandshakeAnswer(handshakes=at(0)))
    async with open_server(ServerConfig(synthesizer="tone", faults=faults)) as server:
        outcomes = await _tcp_turns(server, 2, target, handshake_timeout=0.3)
        assert server.statistics().connections_accepted == 1
    assert {o.kind for o in outcomes} == {"audio"}


@pytest.mark.parametrize("target", PROVIDERS, ids=[p.name for p in PROVIDERS])
async def test_tcp_invalid_utf8_is_a_1007(target: Target) -> None:
    faults = Faults(bad_frame=BadFrame(after_frames=1, kind="utf8", connections=at(0)))
    async with open_server(ServerConfig(synthesizer="tone", faults=faults)) as server:
        outcomes = await _tcp_turns(server, 1, target)
    assert outcomes[0].kind in ("audio", "ConnectionLost")
    if outcomes[0].error is not None:
        assert isinstance(outcomes[0].error, trio_tts.ConnectionLost)
        assert outcomes[0].error.code == 1007
