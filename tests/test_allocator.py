"""The synchronous allocation core, with no clock, no network and no event loop."""

from __future__ import annotations

import itertools

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
)

from trio_tts._core.allocator import Allocator, Close, ConnState, Fail, Open, Ready, Request
from trio_tts._core.errors import HandshakeRejected, PoolClosed

_ids = itertools.count()


def req(key: object = "k") -> Request:
    return Request(key, f"ctx{next(_ids)}")


def opens(actions: list[object]) -> list[Open]:
    return [a for a in actions if isinstance(a, Open)]


def test_first_request_opens_a_connection_and_waits_for_it() -> None:
    alloc = Allocator(max_connections=2, capacity=2)
    r = req()
    actions = alloc.request(r, 0.0)
    assert actions == [Open(1, "k")]
    assert r.conn_id == 1
    assert alloc.connection_opened(1, 0.1) == [Ready(r)]


def test_requests_fill_open_connections_before_opening_new_ones() -> None:
    alloc = Allocator(max_connections=3, capacity=2)
    a, b, c = req(), req(), req()
    assert opens(alloc.request(a, 0)) == [Open(1, "k")]
    assert alloc.request(b, 0) == []  # reserved on the connecting one
    assert alloc.connection_opened(1, 0) == [Ready(a), Ready(b)]
    assert alloc.request(c, 0) == [Open(2, "k")]


def test_spreads_over_open_connections_least_loaded_first() -> None:
    alloc = Allocator(max_connections=2, capacity=5)
    first = [req() for _ in range(6)]
    for r in first:
        alloc.request(r, 0)
    alloc.connection_opened(1, 0)
    alloc.connection_opened(2, 0)
    for r in first[:5]:
        alloc.release(r.conn_id or 0, r.context_id, 0)
    nxt = req()
    alloc.request(nxt, 0)
    assert nxt.conn_id == 1  # connection 1 is empty, connection 2 still has one context


def test_fifo_when_full_and_release_hands_the_slot_to_the_oldest() -> None:
    alloc = Allocator(max_connections=1, capacity=1)
    a, b, c = req(), req(), req()
    alloc.request(a, 0)
    alloc.connection_opened(1, 0)
    assert alloc.request(b, 0) == []
    assert alloc.request(c, 0) == []
    assert alloc.release(1, a.context_id, 1) == [Ready(b)]
    assert alloc.release(1, b.context_id, 2) == [Ready(c)]


def test_failed_connection_never_counts_and_reserved_requests_fail() -> None:
    alloc = Allocator(max_connections=1, capacity=5)
    a, b = req(), req()
    alloc.request(a, 0)
    alloc.request(b, 0)
    err = ConnectionError("boom")
    active, actions = alloc.connection_failed(1, err, 0)
    assert active == []
    assert actions == [Fail(a, err), Fail(b, err)]
    assert alloc.connections == {}
    c = req()
    assert alloc.request(c, 1) == [Open(2, "k")]


def test_fatal_handshake_failure_fails_all_queued_waiters_of_the_key() -> None:
    alloc = Allocator(max_connections=1, capacity=1)
    a, b, other = req(), req(), req("other")
    alloc.request(a, 0)
    alloc.request(b, 0)
    alloc.request(other, 0)
    err = HandshakeRejected(401)
    _, actions = alloc.connection_failed(1, err, 0, fatal=True)
    assert Fail(a, err) in actions and Fail(b, err) in actions
    assert all(not (isinstance(x, Fail) and x.request is other) for x in actions)
    # The other key's request now gets the freed connection budget.
    assert other.conn_id is not None


def test_active_contexts_reported_when_an_open_connection_dies() -> None:
    alloc = Allocator(max_connections=2, capacity=5)
    rs = [req() for _ in range(3)]
    for r in rs:
        alloc.request(r, 0)
    alloc.connection_opened(1, 0)
    active, _ = alloc.connection_failed(1, ConnectionError(), 0)
    assert sorted(active) == sorted(r.context_id for r in rs)
    assert alloc.slots_in_use() == 0


def test_withdraw_waiting_and_placed_requests() -> None:
    alloc = Allocator(max_connections=1, capacity=1)
    a, b = req(), req()
    alloc.request(a, 0)
    alloc.connection_opened(1, 0)
    alloc.request(b, 0)
    assert alloc.withdraw(b, 0) == []
    assert alloc.waiting == []
    alloc.withdraw(a, 0)
    assert alloc.slots_in_use() == 0


def test_idle_timeout_keeps_min_connections_warm() -> None:
    alloc = Allocator(max_connections=3, capacity=1, min_connections=1, idle_timeout=10)
    rs = [req() for _ in range(3)]
    for r in rs:
        alloc.request(r, 0)
    for cid in (1, 2, 3):
        alloc.connection_opened(cid, 0)
    for n, r in enumerate(rs):
        alloc.release(r.conn_id or 0, r.context_id, float(n))
    assert alloc.sweep(9.5) == []
    actions = alloc.sweep(12.5)  # connections idle since 0 and 1 go; the newest stays
    assert sorted(a.conn_id for a in actions if isinstance(a, Close)) == [1, 2]
    assert list(alloc.connections) == [3]
    assert alloc.sweep(1000) == []


def test_keepalive_refresh_replaces_a_warm_connection() -> None:
    alloc = Allocator(
        max_connections=2, capacity=1, min_connections=1, idle_timeout=10, keepalive_refresh=540
    )
    r = req()
    alloc.request(r, 0)
    alloc.connection_opened(1, 0)
    alloc.release(1, r.context_id, 0)
    assert alloc.sweep(539) == []
    actions = alloc.sweep(541)
    assert actions == [Open(2, "k"), Close(1)]


def test_session_expiry_refreshed_on_use_never_cuts_a_busy_connection() -> None:
    alloc = Allocator(max_connections=1, capacity=1, max_session_duration=300)
    a = req()
    alloc.request(a, 0)
    alloc.connection_opened(1, 0)
    alloc.release(1, a.context_id, 10)
    b = req()
    alloc.request(b, 250)  # handed out at 250: the session clock restarts
    assert b.conn_id == 1
    assert alloc.sweep(400) == []  # in use: never cut, and 400 - 250 < 300 anyway
    assert alloc.release(1, b.context_id, 560) == [Close(1)]  # expired once idle: closed
    c = req()
    assert alloc.request(c, 561) == [Open(2, "k")]


def test_expired_idle_connection_is_never_handed_out() -> None:
    alloc = Allocator(max_connections=2, capacity=1, max_session_duration=300)
    a = req()
    alloc.request(a, 0)
    alloc.connection_opened(1, 0)
    alloc.release(1, a.context_id, 1)
    b = req()
    actions = alloc.request(b, 302)
    assert b.conn_id == 2 and Open(2, "k") in actions


def test_retire_key_drains_busy_and_closes_idle() -> None:
    alloc = Allocator(max_connections=3, capacity=1)
    a, b = req("old"), req("old")
    alloc.request(a, 0)
    alloc.request(b, 0)
    alloc.connection_opened(1, 0)
    alloc.connection_opened(2, 0)
    alloc.release(2, b.context_id, 0)
    actions = alloc.retire_key("new", 1)
    assert actions == [Close(2)]
    assert alloc.connections[1].state is ConnState.DRAINING
    assert alloc.release(1, a.context_id, 2) == [Close(1)]


def test_close_fails_waiters_and_closes_idle_connections() -> None:
    alloc = Allocator(max_connections=1, capacity=1)
    a, b = req(), req()
    alloc.request(a, 0)
    alloc.connection_opened(1, 0)
    alloc.request(b, 0)
    actions = alloc.close()
    assert len(actions) == 1 and isinstance(actions[0], Fail)
    assert isinstance(actions[0].error, PoolClosed)
    assert alloc.release(1, a.context_id, 1) == [Close(1)]
    late = req()
    assert isinstance(alloc.request(late, 2)[0], Fail)


def test_a_full_key_does_not_block_another_key() -> None:
    alloc = Allocator(max_connections=2, capacity=1)
    a, b, c = req("x"), req("x"), req("y")
    alloc.request(a, 0)
    alloc.connection_opened(1, 0)
    alloc.request(b, 0)  # opens connection 2 for x
    alloc.connection_opened(2, 0)
    d = req("x")
    alloc.request(d, 0)  # waits
    alloc.request(c, 0)  # y waits too: both connections busy
    assert alloc.waiting == [d, c]
    # x frees a connection: the oldest waiter (d, same key) gets it; c keeps waiting.
    assert alloc.release(1, a.context_id, 1) == [Ready(d)]


class AllocatorMachine(RuleBasedStateMachine):
    """Random request/withdraw/open/fail/release/retire/sweep sequences keep the invariants."""

    def __init__(self) -> None:
        super().__init__()
        self.alloc = Allocator(
            max_connections=3,
            capacity=2,
            min_connections=1,
            idle_timeout=5,
            max_session_duration=30,
            keepalive_refresh=20,
        )
        self.now = 0.0
        self.pending: list[Request] = []  # queued or reserved, not yet Ready/Fail
        self.active: list[Request] = []  # Ready: holding a slot
        self.finished: set[int] = set()  # connections closed/failed
        self.order: list[Request] = []

    def apply(self, actions: list[object]) -> None:
        for a in actions:
            if isinstance(a, Ready):
                assert a.request in self.pending, "Ready for a request not waiting"
                # FIFO within a key: nothing older of the same key is still waiting unplaced.
                self.pending.remove(a.request)
                self.active.append(a.request)
            elif isinstance(a, Fail):
                assert a.request in self.pending
                self.pending.remove(a.request)
            elif isinstance(a, Close):
                self.finished.add(a.conn_id)

    @rule(key=st.sampled_from(["a", "b"]))
    def request(self, key: str) -> None:
        r = req(key)
        self.pending.append(r)
        self.apply(self.alloc.request(r, self.now))

    @precondition(lambda self: self.pending)
    @rule(data=st.data())
    def withdraw(self, data: st.DataObject) -> None:
        r = data.draw(st.sampled_from(self.pending))
        self.pending.remove(r)
        self.apply(self.alloc.withdraw(r, self.now))

    @precondition(lambda self: self.active)
    @rule(data=st.data())
    def release(self, data: st.DataObject) -> None:
        r = data.draw(st.sampled_from(self.active))
        self.active.remove(r)
        assert r.conn_id is not None
        self.apply(self.alloc.release(r.conn_id, r.context_id, self.now))

    @rule(data=st.data())
    def open_one(self, data: st.DataObject) -> None:
        connecting = [
            c.id for c in self.alloc.connections.values() if c.state is ConnState.CONNECTING
        ]
        if connecting:
            self.apply(
                self.alloc.connection_opened(data.draw(st.sampled_from(connecting)), self.now)
            )

    @rule(data=st.data(), fatal=st.booleans())
    def fail_one(self, data: st.DataObject, fatal: bool) -> None:
        if not self.alloc.connections:
            return
        cid = data.draw(st.sampled_from(sorted(self.alloc.connections)))
        active, actions = self.alloc.connection_failed(
            cid, ConnectionError(), self.now, fatal=fatal
        )
        for r in [r for r in self.active if r.conn_id == cid]:
            assert r.context_id in active
            self.active.remove(r)
        self.apply(actions)

    @rule(data=st.data())
    def retire_one(self, data: st.DataObject) -> None:
        if self.alloc.connections:
            cid = data.draw(st.sampled_from(sorted(self.alloc.connections)))
            self.apply(self.alloc.retire(cid, self.now))

    @rule(dt=st.floats(0, 25))
    def sweep(self, dt: float) -> None:
        self.now += dt
        self.apply(self.alloc.sweep(self.now))

    @invariant()
    def limits_hold(self) -> None:
        alloc = self.alloc
        assert len(alloc.connections) <= alloc.max_connections
        for conn in alloc.connections.values():
            assert len(conn.slots) <= conn.capacity
            assert conn.id not in self.finished
        placed = {(r.conn_id, r.context_id) for r in self.active}
        held = {(c.id, s) for c in alloc.connections.values() for s in c.slots}
        reserved = {(r.conn_id, r.context_id) for r in self.pending if r.conn_id is not None}
        # Every slot belongs to exactly one live request, and every active request holds one.
        assert placed <= held
        assert held == placed | (reserved & held)

    @invariant()
    def no_waiter_left_behind(self) -> None:
        """A waiting request always has a reason: every connection of its key is full."""
        alloc = self.alloc
        for r in alloc.waiting:
            for conn in alloc.connections.values():
                if conn.key == r.key and conn.state is not ConnState.DRAINING:
                    expired = (
                        alloc.max_session_duration is not None
                        and conn.state is ConnState.OPEN
                        and self.now - conn.refreshed_at > alloc.max_session_duration
                    )
                    assert conn.free <= 0 or expired
            # ... and no connection could be opened or evicted for it.
            assert len(alloc.connections) >= alloc.max_connections
            assert not any(
                c.key != r.key and c.state is ConnState.OPEN and not c.slots
                for c in alloc.connections.values()
            )


TestAllocatorMachine = AllocatorMachine.TestCase
TestAllocatorMachine.settings = settings(max_examples=300, stateful_step_count=40, deadline=None)
