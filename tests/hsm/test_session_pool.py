"""The session pool's bounds: how many leases, how long a wait, what comes back."""

from __future__ import annotations

import threading

import pytest

from hsm.errors import TransientBackendError
from hsm.session_pool import SessionPool


def test_idle_sessions_are_reused() -> None:
    pool: SessionPool[str] = SessionPool(size=2, wait_seconds=1.0)
    with pool.lease() as lease:
        assert lease.item is None  # nothing idle yet: the borrower opens one
        lease.item = "session-1"
    with pool.lease() as lease:
        assert lease.item == "session-1"


def test_evicted_sessions_do_not_come_back() -> None:
    pool: SessionPool[str] = SessionPool(size=1, wait_seconds=1.0)
    with pool.lease() as lease:
        lease.item = "broken"
        lease.evict()
    with pool.lease() as lease:
        assert lease.item is None


def test_exhausted_pool_raises_transient_after_the_bounded_wait() -> None:
    pool: SessionPool[str] = SessionPool(size=1, wait_seconds=0.05)
    with pool.lease(), pytest.raises(TransientBackendError) as caught, pool.lease():
        pass
    assert str(caught.value) == "session pool exhausted after 50 ms (1 sessions in use)"
    assert caught.value.transient
    assert pool.in_use == 0


def test_waiter_gets_the_session_when_it_is_returned() -> None:
    pool: SessionPool[str] = SessionPool(size=1, wait_seconds=10.0)
    leased = threading.Event()
    release = threading.Event()
    got: list[str | None] = []

    def holder() -> None:
        with pool.lease() as lease:
            lease.item = "only-session"
            leased.set()
            release.wait()

    def waiter() -> None:
        with pool.lease() as lease:
            got.append(lease.item)

    first = threading.Thread(target=holder)
    first.start()
    leased.wait()
    second = threading.Thread(target=waiter)
    second.start()
    release.set()
    first.join()
    second.join()
    assert got == ["only-session"]


def test_drain_takes_idle_sessions_out() -> None:
    pool: SessionPool[str] = SessionPool(size=2, wait_seconds=1.0)
    with pool.lease() as a, pool.lease() as b:
        a.item, b.item = "a", "b"
    assert sorted(pool.drain()) == ["a", "b"]
    with pool.lease() as lease:
        assert lease.item is None


@pytest.mark.parametrize(("size", "wait"), [(0, 1.0), (1, 0.0)])
def test_nonsense_bounds_are_refused(size: int, wait: float) -> None:
    with pytest.raises(ValueError, match="pool size"):
        SessionPool(size=size, wait_seconds=wait)


def test_sessions_given_back_after_close_go_to_discard() -> None:
    discarded: list[str] = []
    pool: SessionPool[str] = SessionPool(size=2, wait_seconds=1.0, discard=discarded.append)
    with pool.lease() as out:
        out.item = "out"
        with pool.lease() as idle:
            idle.item = "idle"
        assert pool.close() == ["idle"]  # the closer closes these itself
    assert discarded == ["out"]
    with pool.lease() as later:
        assert later.item is None
        later.item = "later"
    assert discarded == ["out", "later"]
