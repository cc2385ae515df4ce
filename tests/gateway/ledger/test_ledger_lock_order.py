"""Transactions that release other merchants' holds take the merchants in one order, so
they never deadlock (PostgreSQL, the only store with concurrent writers).

Releasing a card's due hold changes the balance of the hold's merchant, and the decision
then posts to its own: two merchants. Had each been locked at its posting, two such
transactions, each having changed the merchant the other posts to next, would wait for
each other until the server's ``deadlock_timeout`` ran out and the store retried one.

Each test forces that interleaving: a transaction that has released a due hold is held
(``Meeting``) until the other has released one too, or is seen waiting for a lock (it
cannot release any until this one commits). Then it finishes. A deadlock would be broken
only after ``DEADLOCK_TIMEOUT_S`` and counted as a retry in the store's commit reports.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest

from gateway.ledger import (
    Authorized,
    CaptureItem,
    CommitStats,
    CreditItem,
    Ledger,
    LedgerKeys,
    Outcome,
    Posted,
    PostgresLedgerStore,
    PostingOutcome,
    ReversalItem,
    expiry,
)
from gateway.ledger.store import Row, Transaction
from tests.gateway.ledger.ledger_support import (
    EUR,
    EXPIRY,
    PAN_A,
    PAN_B,
    PAN_C,
    TEST_DATABASE,
    Bank,
    FakeClock,
    PgCluster,
)

# The server's deadlock_timeout in these tests' sessions: a deadlock is broken (and its
# operation retried) only once it has run out, so transactions that finish sooner had
# none. Above the default 1 s so that a slow machine's ordinary lock wait is not taken
# for one.
DEADLOCK_TIMEOUT_S = 3
# How long one transaction waits at the meeting for the other before the test fails: the
# harness is broken (the other never released a hold and never waited for a lock).
MEET_TIMEOUT_SECONDS = 10.0
# How often a transaction at the meeting looks for the other.
MEET_POLL_SECONDS = 0.005
# A hold's lifetime in these tests.
LIFETIME_MS = 60_000

M1, M2 = "merchant-1", "merchant-2"


class Meeting:
    """Holds each thread after its first hold release until the other thread has made
    one too, or some session of the test database waits for a lock. A thread that calls
    ``release_second`` is also held before its first release, likewise."""

    def __init__(self, monitor_conninfo: str) -> None:
        self._monitor = psycopg.connect(monitor_conninfo, autocommit=True)
        self._monitor_lock = threading.Lock()
        self._arrived: set[int] = set()
        self._second: int | None = None
        self._lock = threading.Lock()

    def close(self) -> None:
        self._monitor.close()

    def release_second(self) -> None:
        """The calling thread releases its first hold only once the other has."""
        self._second = threading.get_ident()

    def releasing(
        self, release: Callable[[Transaction, Row, int], int]
    ) -> Callable[[Transaction, Row, int], int]:
        """``expiry.release``, meeting the other thread at this thread's first call."""

        def release_and_meet(tx: Transaction, hold: Row, now_ms: int) -> int:
            me = threading.get_ident()
            with self._lock:
                first = me not in self._arrived
            if first and me == self._second:
                self._wait_for_the_other(me)
            amount = release(tx, hold, now_ms)
            if first:  # not a later release, nor a retry of the transaction
                with self._lock:
                    self._arrived.add(me)
                self._wait_for_the_other(me)
            return amount

        return release_and_meet

    def _wait_for_the_other(self, me: int) -> None:
        deadline = time.monotonic() + MEET_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            with self._lock:
                if self._arrived - {me}:
                    return
            if self._someone_waits_for_a_lock():
                return
            time.sleep(MEET_POLL_SECONDS)
        raise AssertionError("the other transaction neither released a hold nor waited")

    def _someone_waits_for_a_lock(self) -> bool:
        with self._monitor_lock:
            row = self._monitor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = %s"
                " AND wait_event_type = 'Lock'",
                (TEST_DATABASE,),
            ).fetchone()
        return row is not None and row[0] > 0


@pytest.fixture
def ledger(
    pg_cluster: PgCluster, keys: LedgerKeys, clock: FakeClock, commits: list[CommitStats]
) -> Iterator[Ledger]:
    """A PostgreSQL ledger with merchants M1 and M2; its books must balance at the end."""
    conninfo = pg_cluster.new_schema({"deadlock_timeout": f"{DEADLOCK_TIMEOUT_S}s"})
    led = Ledger(PostgresLedgerStore(conninfo, observer=commits.append), keys, clock=clock)
    led.open_merchant_account(M1, EUR)
    led.open_merchant_account(M2, EUR)
    yield led
    led.check_balanced()
    led.close()


@pytest.fixture
def meeting(pg_cluster: PgCluster, monkeypatch: pytest.MonkeyPatch) -> Iterator[Meeting]:
    meet = Meeting(pg_cluster.conninfo(TEST_DATABASE))
    monkeypatch.setattr(expiry, "release", meet.releasing(expiry.release))
    yield meet
    meet.close()


def _hold(bank: Bank, pan: str, merchant: str, expires_at_ms: int) -> Authorized:
    outcome = bank.authorize(pan, 100, merchant=merchant, expires_at_ms=expires_at_ms)
    assert isinstance(outcome, Authorized), outcome
    return outcome


def _together(*work: Callable[[], object]) -> tuple[list[object], float]:
    """Run each callable on a thread of its own; their results and the seconds taken."""
    started = time.monotonic()
    with ThreadPoolExecutor(len(work)) as pool:
        results = [f.result() for f in [pool.submit(w) for w in work]]
    return results, time.monotonic() - started


def _authorize(ledger: Ledger, pan: str, merchant: str) -> Callable[[], Outcome]:
    return lambda: Bank(ledger).authorize(pan, 100, merchant=merchant)


def _no_deadlock(commits: list[CommitStats], seconds: float) -> None:
    retried = [c for c in commits if c.retries]
    assert not retried, f"deadlocked: retried after the deadlock timeout: {retried}"
    assert seconds < DEADLOCK_TIMEOUT_S, seconds


def test_two_authorizations_releasing_holds_at_each_others_merchant_do_not_deadlock(
    ledger: Ledger, clock: FakeClock, commits: list[CommitStats], meeting: Meeting
) -> None:
    bank = Bank(ledger)
    ledger.open_card_account(PAN_A, EXPIRY, 10_000, EUR)
    ledger.open_card_account(PAN_B, EXPIRY, 10_000, EUR)
    start = clock.now_ms
    due_a = _hold(bank, PAN_A, M2, start + LIFETIME_MS)
    due_b = _hold(bank, PAN_B, M1, start + LIFETIME_MS)
    clock.now_ms = start + LIFETIME_MS
    commits.clear()
    # Card A releases its hold at M2, then posts to M1; card B the other way round.
    outcomes, seconds = _together(_authorize(ledger, PAN_A, M1), _authorize(ledger, PAN_B, M2))
    assert all(isinstance(o, Authorized) for o in outcomes), outcomes
    _no_deadlock(commits, seconds)
    assert [ledger.hold(h.hold_id).status for h in (due_a, due_b)] == ["expired"] * 2
    assert ledger.merchant_account(M1).pending == ledger.merchant_account(M2).pending == 100


def test_a_sweep_beside_an_authorization_releasing_a_hold_does_not_deadlock(
    ledger: Ledger, clock: FakeClock, commits: list[CommitStats], meeting: Meeting
) -> None:
    bank = Bank(ledger)
    cards = {pan: ledger.open_card_account(pan, EXPIRY, 10_000, EUR) for pan in (PAN_A, PAN_B)}
    ledger.open_card_account(PAN_C, EXPIRY, 10_000, EUR)
    # The sweep releases the holds of its cards in card order: first one at M1, then one
    # at M2. The authorization (another card, its hold due a moment later, beyond the
    # sweep's batch of two) releases its hold at M2, then posts to M1.
    first, second = sorted((PAN_A, PAN_B), key=lambda pan: cards[pan].account_id)
    start = clock.now_ms
    swept = [
        _hold(bank, first, M1, start + LIFETIME_MS),
        _hold(bank, second, M2, start + LIFETIME_MS),
    ]
    decided = _hold(bank, PAN_C, M2, start + LIFETIME_MS + 1)
    clock.now_ms = start + LIFETIME_MS + 1
    commits.clear()
    outcomes, seconds = _together(
        lambda: ledger.expire_holds(len(swept)), _authorize(ledger, PAN_C, M1)
    )
    assert outcomes[0] == len(swept)
    assert isinstance(outcomes[1], Authorized), outcomes
    _no_deadlock(commits, seconds)
    assert {ledger.hold(h.hold_id).status for h in [*swept, decided]} == {"expired"}
    assert ledger.merchant_account(M1).pending == 100
    assert ledger.merchant_account(M2).pending == 0


def _posted(outcome: object) -> None:
    assert isinstance(outcome, PostingOutcome), outcome
    assert all(isinstance(item, Posted) for item in outcome.items), outcome


def test_a_credit_reversal_beside_an_authorization_releasing_a_hold_does_not_deadlock(
    ledger: Ledger, clock: FakeClock, commits: list[CommitStats], meeting: Meeting
) -> None:
    bank = Bank(ledger)
    ledger.open_card_account(PAN_A, EXPIRY, 10_000, EUR)
    ledger.open_card_account(PAN_C, EXPIRY, 10_000, EUR)
    start = clock.now_ms
    credited = _hold(bank, PAN_A, M1, start + 2 * LIFETIME_MS).hold_id
    _posted(bank.call(ledger.capture, merchant_id=M1, items=[CaptureItem(credited, 100, EUR)]))
    _posted(
        bank.call(
            ledger.credit,
            merchant_id=M1,
            items=[CreditItem(credited, 100, EUR)],
            rrpid=b"credit-1",
        )
    )
    due = [_hold(bank, pan, M2, start + LIFETIME_MS) for pan in (PAN_A, PAN_C)]
    clock.now_ms = start + LIFETIME_MS
    commits.clear()

    # The reversal (at M1, card A) releases card A's hold at M2 once the authorization
    # (card C) has released card C's there; the authorization then posts to M1.
    def reverse_credit() -> Outcome:
        meeting.release_second()
        return Bank(ledger).call(
            ledger.reverse_credit, merchant_id=M1, items=[ReversalItem(credited, b"credit-1")]
        )

    outcomes, seconds = _together(reverse_credit, _authorize(ledger, PAN_C, M1))
    _posted(outcomes[0])
    assert isinstance(outcomes[1], Authorized), outcomes
    _no_deadlock(commits, seconds)
    assert [ledger.hold(h.hold_id).status for h in due] == ["expired"] * 2
    assert ledger.merchant_account(M1).pending == 100
    assert ledger.merchant_account(M2).pending == 0
