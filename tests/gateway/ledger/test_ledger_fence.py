"""A refusal as too old is final: ``Ledger.fence_stale`` fences the request's RRPID so no
decision of it lands after the refusal, on every store (SQLite, the ledger service,
PostgreSQL), and returns a decision committed first, or being committed, instead.

The merchant builds a request refused MESSAGE_TOO_OLD afresh under a new RRPID
(``clients.merchant.renewal``); a decision of an earlier sending of the same bytes,
committed after the refusal, would leave a hold on the card beside the request built
afresh. A decision "being committed" is held here between its INSERT and its commit by
stalling the clock read ``decide_once`` makes last (``idempotency._decided_in_time``), as
a stalled fsync or a COMMIT waiting on a synchronous standby would hold it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from functools import partial
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from gateway.answers import _error_code
from gateway.ledger import (
    AnswerNotStored,
    Authorized,
    Decline,
    InvalidRequest,
    Ledger,
    LedgerKeys,
    Outcome,
    PostgresLedgerStore,
    PrebuiltApproval,
    RequestFenced,
    RrpidReused,
    Unanswered,
    idempotency,
)
from gateway.ledger.postgres import PostgresTransaction
from gateway.ledger.retention import DAY_MS
from setcore import freshness
from setcore.errors import ErrorCode
from tests.gateway.ledger.ledger_support import (
    EUR,
    EXPIRY,
    MERCHANT,
    PAN_A,
    Backend,
    Bank,
    FakeClock,
    PgCluster,
)
from tests.gateway.ledger.retention_support import DAYS, count_rows, unsigned

RRPID = b"r-stale"
DIGEST = b"d-stale"
# How long a held operation is seen still waiting before the test lets it go.
HELD_SECONDS = 0.3


def _authorize(
    bank: Bank,
    *,
    digest: bytes = DIGEST,
    respond: Callable[[Outcome], bytes] | None = None,
    **extra: Any,
) -> bytes:
    """The late decision: 1000 on PAN_A under RRPID, as a sending let in while fresh."""
    return bank.ledger.authorize(
        pan=PAN_A,
        pan_expiry=EXPIRY,
        amount=1000,
        currency=EUR,
        merchant_id=MERCHANT,
        xid=b"x-stale",
        pi_digest=b"pi-stale",
        rrpid=RRPID,
        request_digest=digest,
        respond=respond or bank.respond,
        **extra,
    )


def _nothing_held(bank: Bank) -> None:
    assert bank.ledger.find_card_account(PAN_A).pending == 0
    assert bank.outcomes == []


def test_a_decision_after_a_fence_is_refused_as_too_old_and_holds_nothing(
    bank: Bank,
) -> None:
    assert bank.ledger.fence_stale(RRPID, DIGEST) is None
    with pytest.raises(RequestFenced) as fenced:
        _authorize(bank, checked_at_ms=freshness.now_ms())
    # The gateway answers it as it answered the refusal.
    assert _error_code(fenced.value) == ErrorCode.ERROR_CODE_MESSAGE_TOO_OLD
    with pytest.raises(RequestFenced):  # the usual approval, signed ahead, alike
        _authorize(bank, hold_id="h-1", prebuilt=PrebuiltApproval("h-1", 1000, EUR, b"ok"))
    with pytest.raises(RequestFenced):  # a gateway decline alike
        bank.ledger.decline(
            Decline.AMOUNT_MISMATCH, rrpid=RRPID, request_digest=DIGEST, respond=bank.respond
        )
    _nothing_held(bank)
    with pytest.raises(RequestFenced):  # a retry's read finds the fence, not an answer
        bank.ledger.stored_response(RRPID, DIGEST)
    assert bank.ledger.fence_stale(RRPID, DIGEST) is None  # a refusal again: still fenced


def test_a_fence_after_a_decision_returns_its_answer_and_writes_nothing(
    bank: Bank, backend: Backend
) -> None:
    answer = _authorize(bank)
    assert bank.ledger.fence_stale(RRPID, DIGEST) == answer
    assert bank.ledger.stored_response(RRPID, DIGEST) == answer
    assert count_rows(backend, "requests") == 1
    assert bank.ledger.find_card_account(PAN_A).pending == 1000


def test_a_fence_after_an_unanswered_decision_returns_it_to_be_answered(
    bank: Bank,
) -> None:
    with pytest.raises(AnswerNotStored):  # decided; its answer failed to sign
        _authorize(bank, respond=unsigned)
    recorded = bank.ledger.fence_stale(RRPID, DIGEST)
    assert isinstance(recorded, Unanswered) and isinstance(recorded.outcome, Authorized)
    # No fence was written: the retry answers the decision as ever.
    answer = _authorize(bank)
    assert bank.ledger.stored_response(RRPID, DIGEST) == answer
    assert bank.ledger.find_card_account(PAN_A).pending == 1000


def test_a_fence_or_decision_of_other_bytes_under_a_fenced_rrpid_is_a_reuse(
    bank: Bank,
) -> None:
    assert bank.ledger.fence_stale(RRPID, DIGEST) is None
    with pytest.raises(RrpidReused):
        bank.ledger.fence_stale(RRPID, b"other bytes")
    with pytest.raises(RrpidReused):
        _authorize(bank, digest=b"other bytes")
    _nothing_held(bank)


def test_a_fence_of_other_bytes_under_a_decided_rrpid_is_a_reuse(
    bank: Bank, backend: Backend
) -> None:
    answer = _authorize(bank)
    with pytest.raises(RrpidReused):
        bank.ledger.fence_stale(RRPID, b"other bytes")
    assert bank.ledger.stored_response(RRPID, DIGEST) == answer
    assert count_rows(backend, "requests") == 1


def test_an_answer_is_never_stored_over_a_fence(bank: Bank, backend: Backend) -> None:
    assert bank.ledger.fence_stale(RRPID, DIGEST) is None
    store = backend.open_store()  # a store of its own on the ledger's database
    try:
        with pytest.raises(RequestFenced):
            store.execute(
                partial(
                    idempotency.store_answer, rrpid=RRPID, request_digest=DIGEST, response=b"late"
                )
            )
    finally:
        store.close()
    assert backend.raw_query("SELECT response, outcome FROM requests") == [(b"", None)]
    with pytest.raises(RequestFenced):
        bank.ledger.stored_response(RRPID, DIGEST)


@pytest.mark.parametrize(
    ("rrpid", "digest"),
    [(b"", DIGEST), (RRPID, b""), ("r", DIGEST), (RRPID, None), (b"r" * 65, DIGEST)],
    ids=["empty-rrpid", "empty-digest", "text-rrpid", "no-digest", "long-rrpid"],
)
def test_a_fence_with_bad_arguments_is_refused_and_writes_nothing(
    bank: Bank, backend: Backend, rrpid: Any, digest: Any
) -> None:
    with pytest.raises(InvalidRequest):
        bank.ledger.fence_stale(rrpid, digest)
    assert count_rows(backend, "requests") == 0


def test_retention_prunes_a_fence_past_the_horizon_as_an_answered_row(
    bank: Bank, backend: Backend, clock: FakeClock
) -> None:
    assert bank.ledger.fence_stale(RRPID, DIGEST) is None
    clock.advance(DAYS * DAY_MS)
    assert bank.ledger.fence_stale(b"r-young", DIGEST) is None  # a fence within the horizon
    clock.advance(1)
    assert bank.ledger.prunable(DAYS).requests == 1
    assert bank.ledger.prune_requests(DAYS).deleted == 1
    assert backend.raw_query("SELECT rrpid FROM requests") == [(b"r-young",)]
    # Gone, a sending of those bytes would be refused by its date again, and fenced anew.
    assert bank.ledger.fence_stale(RRPID, DIGEST) is None
    assert count_rows(backend, "requests") == 2


def _stalled_decision_clock(monkeypatch: pytest.MonkeyPatch) -> tuple[threading.Event, ...]:
    """Hold the next decision between its INSERT and its commit: the first read of the
    gateway's clock after this (``decide_once``'s last statement) waits for ``release``.
    Returns (reached, release, fail): ``fail`` set, the held decision raises instead."""
    reached, release, fail = threading.Event(), threading.Event(), threading.Event()
    armed = [True]
    real = freshness.now_ms

    def stalled() -> int:
        if armed[0]:
            armed[0] = False
            reached.set()
            assert release.wait(30)
            if fail.is_set():
                raise RuntimeError("the decision's transaction failed")
        return real()

    monkeypatch.setattr(freshness, "now_ms", stalled)
    return reached, release, fail


def _in_thread(work: Callable[[], object]) -> tuple[threading.Thread, list[object]]:
    """Run ``work`` in a thread; its result or exception lands in the list."""
    out: list[object] = []

    def run() -> None:
        try:
            out.append(work())
        except BaseException as exc:  # handed to the test thread
            out.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    return thread, out


def test_a_fence_waits_for_a_decision_being_committed_and_returns_it(
    bank: Bank, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The race a read lost: the decision's row written and not yet committed when the
    refusal comes. The fence waits for it (PostgreSQL: on the key; SQLite: for the
    writer), then returns its answer: never the refusal while a hold is being made."""
    real_now = freshness.now_ms()
    reached, release, _ = _stalled_decision_clock(monkeypatch)
    prebuilt = PrebuiltApproval("h-1", 1000, EUR, b"the approval")
    deciding, decided = _in_thread(
        lambda: _authorize(bank, checked_at_ms=real_now, hold_id="h-1", prebuilt=prebuilt)
    )
    assert reached.wait(30), "the decision never reached its last statement"
    fencing, fenced = _in_thread(lambda: bank.ledger.fence_stale(RRPID, DIGEST))
    fencing.join(HELD_SECONDS)
    assert fencing.is_alive(), f"the fence did not wait for the decision: {fenced}"
    release.set()
    deciding.join(30)
    fencing.join(30)
    assert decided == [b"the approval"]
    assert fenced == [b"the approval"]
    assert bank.ledger.find_card_account(PAN_A).pending == 1000


def test_a_fence_after_a_decision_that_rolled_back_is_written(
    bank: Bank, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_now = freshness.now_ms()
    reached, release, fail = _stalled_decision_clock(monkeypatch)
    deciding, decided = _in_thread(lambda: _authorize(bank, checked_at_ms=real_now))
    assert reached.wait(30)
    fencing, fenced = _in_thread(lambda: bank.ledger.fence_stale(RRPID, DIGEST))
    fencing.join(HELD_SECONDS)
    fail.set()
    release.set()
    deciding.join(30)
    fencing.join(30)
    assert len(decided) == 1 and isinstance(decided[0], Exception), decided
    assert fenced == [None]
    with pytest.raises(RequestFenced):  # the same bytes once more: never decided
        _authorize(bank, checked_at_ms=real_now)
    _nothing_held(bank)


def test_a_decision_racing_an_uncommitted_fence_on_postgres_is_refused(
    pg_cluster: PgCluster, keys: LedgerKeys, clock: FakeClock
) -> None:
    """The other order, on PostgreSQL, where two hosts race: the fence written in one
    connection and not committed; the decision's INSERT waits for it, then fails on the
    key, and its retry meets the fence. Nothing held. (SQLite's one writer orders the
    two: the tests above cover it.)"""
    conninfo = pg_cluster.new_schema()
    ledger = Ledger(PostgresLedgerStore(conninfo), keys, clock=clock)
    try:
        ledger.open_merchant_account(MERCHANT, EUR)
        ledger.open_card_account(PAN_A, EXPIRY, 10_000, EUR)
        bank = Bank(ledger)
        with psycopg.connect(conninfo, row_factory=dict_row) as conn:
            fence = idempotency.fence(
                PostgresTransaction(conn), rrpid=RRPID, request_digest=DIGEST, now_ms=0
            )
            assert fence is None
            deciding, decided = _in_thread(
                lambda: _authorize(bank, checked_at_ms=freshness.now_ms())
            )
            deciding.join(HELD_SECONDS)
            assert deciding.is_alive(), f"the decision did not wait for the fence: {decided}"
            conn.commit()
        deciding.join(30)
        assert len(decided) == 1 and isinstance(decided[0], RequestFenced), decided
        _nothing_held(bank)
        ledger.check_balanced()
    finally:
        ledger.close()
