"""A decision awaiting its answer settled by hand (``gateway.ledger.unanswered``), on
SQLite, on SQLite behind the ledger service, and on PostgreSQL.

Once settled, the decision is never answered: a resend's read finds it settled
(``SettledByHand``), a resend whose checks pass is not decided again nor answered
(DecisionSettled, a StoreUnavailable: the gateway's UNAVAILABLE, crossing the ledger
service as itself), an answer a retry built meanwhile is not stored, and a refusal as too
old fences nothing. The settling moves no money. The settling itself refuses, changing
nothing, what is not a decision awaiting its answer and a reason it must not keep.
Retention keeps a settled decision for good, as it keeps a refund's row.

The settling is the operator's command's, on the ledger's store itself, never through the
ledger service (``cli.bank_unanswered``): here, a store of its own on the same database.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from gateway.ledger import (
    AnswerNotStored,
    Authorized,
    InvalidRequest,
    Ledger,
    LedgerStore,
    Outcome,
    SqliteLedgerStore,
    StoreUnavailable,
    Unanswered,
    idempotency,
)
from gateway.ledger.errors import DecisionSettled
from gateway.ledger.idempotency import SettledByHand
from gateway.ledger.remote import RemoteLedgerStore
from gateway.ledger.retention import DAY_MS
from gateway.ledger.unanswered import (
    MAX_REASON_CHARS,
    NotUnanswered,
    UnansweredDecision,
    list_unanswered,
    settle,
)
from tests.cards import card
from tests.gateway.ledger.ledger_support import (
    EUR,
    EXPIRY,
    MERCHANT,
    PAN_A,
    Backend,
    Bank,
    FakeClock,
)
from tests.gateway.ledger.retention_support import DAYS, decline, unsigned

REASON = "merchant gone, settled with the acquirer (ticket 4711)"


def _direct(backend: Backend, tmp_path: Path) -> LedgerStore:
    """A store on the fixture's database itself, as the operator's command opens it."""
    if backend.name.startswith("sqlite"):
        return SqliteLedgerStore(tmp_path / "ledger.db")
    return backend.open_store()


def _settle(
    backend: Backend,
    tmp_path: Path,
    rrpid: bytes,
    reason: str = REASON,
    at: int = 0,
    min_age_ms: int | None = None,
) -> UnansweredDecision:
    """Settle by hand at ``at``; with no ``min_age_ms`` whatever the decision's age (the
    operator's ``--younger-ok``: these tests move no clock to settle)."""
    store = _direct(backend, tmp_path)
    try:
        settling = functools.partial(
            settle, rrpid=rrpid, reason=reason, now_ms=at, min_age_ms=min_age_ms
        )
        return store.execute(settling)
    finally:
        store.close()


def _listed(backend: Backend, tmp_path: Path) -> tuple[UnansweredDecision, ...]:
    """Every decision awaiting its answer: those not settled by hand, then those settled
    (listed apart, the most recently settled first), checked against the counts."""
    store = _direct(backend, tmp_path)
    try:
        awaiting = store.read(list_unanswered)
        settled = store.read(functools.partial(list_unanswered, settled=True))
    finally:
        store.close()
    assert all(d.settled_at_ms is None for d in awaiting.decisions)
    assert all(d.settled_at_ms is not None for d in settled.decisions)
    counts = (len(awaiting.decisions), len(settled.decisions))
    assert counts == (awaiting.awaiting, awaiting.settled) == (settled.awaiting, settled.settled)
    return awaiting.decisions + settled.decisions


def _requests(backend: Backend) -> list[tuple[object, ...]]:
    """Every row of ``requests``, as it is, in a fixed order."""
    return sorted(
        backend.raw_query(
            "SELECT rrpid, request_digest, response, outcome, created_at_ms, checked_at_ms,"
            " settled_at_ms, settled_reason FROM requests"
        ),
        key=repr,
    )


def _sale_left_unanswered(bank: Bank, rrpid: bytes) -> None:
    """A sale of 10.00 EUR decided under ``rrpid``, its answer never stored."""
    with pytest.raises(AnswerNotStored):
        _sale(bank.ledger, rrpid, unsigned)


def _sale(ledger: Ledger, rrpid: bytes, respond: Callable[[Outcome], bytes]) -> bytes:
    return ledger.authorize(
        pan=PAN_A, pan_expiry=EXPIRY, amount=1000, currency=EUR, merchant_id=MERCHANT,
        xid=b"xid-" + rrpid, pi_digest=b"pi-" + rrpid, rrpid=rrpid,
        request_digest=b"digest-" + rrpid, respond=respond, capture_now=True,
    )  # fmt: skip


def test_a_settled_decision_is_never_answered_and_its_money_stays(
    backend: Backend, bank: Bank, tmp_path: Path, clock: FakeClock
) -> None:
    rrpid = b"settled-sale"
    _sale_left_unanswered(bank, rrpid)
    card_account = bank.ledger.find_card_account(PAN_A)
    awaiting = bank.ledger.stored_response(rrpid, b"digest-" + rrpid)
    assert isinstance(awaiting, Unanswered) and not isinstance(awaiting, SettledByHand)

    settled = _settle(backend, tmp_path, rrpid, at=clock() + 5)
    assert (settled.rrpid, settled.kind, settled.merchant_id) == (rrpid, "sale", MERCHANT)
    assert (settled.amount, settled.currency, settled.reason) == (1000, EUR, REASON)
    assert settled.settled_at_ms == clock() + 5
    assert _listed(backend, tmp_path) == (settled,)

    # A resend whose checks no longer pass reads it settled, outcome kept for audit.
    found = bank.ledger.stored_response(rrpid, b"digest-" + rrpid)
    assert isinstance(found, SettledByHand) and found.reason == REASON
    assert isinstance(found.outcome, Authorized) and found.outcome.amount == 1000
    # A refusal as too old fences nothing: the decision is there.
    assert isinstance(bank.ledger.fence_stale(rrpid, b"digest-" + rrpid), SettledByHand)
    # A resend whose checks pass is neither decided again nor answered.
    with pytest.raises(DecisionSettled, match="settled it by hand") as raised:
        _sale(bank.ledger, rrpid, bank.respond)
    assert isinstance(raised.value, StoreUnavailable)  # UNAVAILABLE to every caller
    assert bank.outcomes == []
    # An answer a retry built as the operator settled it is not stored.
    store = _direct(backend, tmp_path)
    try:
        store_answer = functools.partial(
            idempotency.store_answer, rrpid=rrpid, request_digest=b"digest-" + rrpid,
            response=b"a rebuilt answer",
        )  # fmt: skip
        with pytest.raises(DecisionSettled, match="settled it by hand"):
            store.execute(store_answer)
    finally:
        store.close()
    ((response, outcome),) = backend.raw_query("SELECT response, outcome FROM requests")
    assert response == b"" and outcome is not None
    # The settling moved no money: a sale stays captured, nothing moved back.
    after = bank.ledger.card_account(card_account.account_id)
    assert after.available == card_account.available == 10_000 - 1000


@pytest.mark.parametrize("backend", ["sqlite-service"], indirect=True)
def test_a_settled_resend_keeps_the_ledger_service_connection(
    backend: Backend, bank: Bank, tmp_path: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before, each settled resend over the ledger service dropped the gateway's
    connection as if the service had failed, and the next operation dialled again: a
    settled decision is the ledger's rule, answered in step."""
    rrpid = b"settled-sale"
    _sale_left_unanswered(bank, rrpid)
    _settle(backend, tmp_path, rrpid, at=clock() + 5)
    drops: list[RemoteLedgerStore] = []
    dropping = RemoteLedgerStore._drop

    def counted(store: RemoteLedgerStore) -> None:
        drops.append(store)
        dropping(store)

    monkeypatch.setattr(RemoteLedgerStore, "_drop", counted)
    for _ in range(5):
        with pytest.raises(DecisionSettled, match="settled it by hand"):
            _sale(bank.ledger, rrpid, bank.respond)
    assert drops == []
    assert bank.outcomes == []


def test_settling_refuses_what_is_not_a_decision_awaiting_its_answer(
    backend: Backend, bank: Bank, tmp_path: Path
) -> None:
    _sale_left_unanswered(bank, b"awaiting")
    decline(bank, b"answered", answered=True)
    assert bank.ledger.fence_stale(b"fenced", b"digest") is None
    _sale_left_unanswered(bank, b"settled")
    _settle(backend, tmp_path, b"settled")
    before = _requests(backend)

    for rrpid, said in (
        (b"unknown", "the ledger holds no request"),
        (b"answered", "was answered: there is nothing to settle"),
        (b"fenced", "refused as too old and fenced, never decided"),
        (b"settled", "was settled by hand already"),
    ):
        with pytest.raises(NotUnanswered, match=said) as refused:
            _settle(backend, tmp_path, rrpid)
        assert rrpid.hex() in str(refused.value) and "nothing changed" in str(refused.value)
    for reason, said in (
        ("", "a reason is required"),
        ("   ", "a reason is required"),
        ("x" * (MAX_REASON_CHARS + 1), f"at most {MAX_REASON_CHARS} characters"),
        ("settled\nforged line", "U+000A"),
        ("settled \u202etxet", "U+202E"),
        (f"card {card('411111', 3)} disputed", "no run of 13 or more digits"),
        (f"card {card('411111', 3)[:8]} {card('411111', 3)[8:]}", "no run of 13 or more"),
        *(
            (f"card {sep.join(_groups(card('411111', 3)))} disputed", "no run of 13 or more")
            for sep in (".", "/", ",", "_", "  ", "\u200b", "\u200b ", ") (")
        ),
        ("merchant closed \udcff", "no lone surrogate (given: U+DCFF at character 17)"),
    ):
        with pytest.raises(InvalidRequest, match=re.escape(said)) as bad:
            _settle(backend, tmp_path, b"awaiting", reason)
        assert "4111" not in str(bad.value)
    assert _requests(backend) == before
    assert [d.rrpid for d in _listed(backend, tmp_path) if d.settled_at_ms is None] == [b"awaiting"]


def _groups(number: str) -> list[str]:
    """``number`` in groups of four digits, as a card is typed."""
    return [number[i : i + 4] for i in range(0, len(number), 4)]


def test_retention_keeps_a_settled_decision_for_good(
    backend: Backend, bank: Bank, tmp_path: Path, clock: FakeClock
) -> None:
    """Before, a settled decision went as an answered row: its reason and outcome kept
    for audit with it, and its resend then refused MESSAGE_TOO_OLD (for a declined
    credit, built afresh by the merchant). Now it is kept as a refund's row is, settled
    before the scan passed it or after (its revisit mark then goes), and still read as
    settled by a resend."""
    for rrpid in (b"settled-early", b"settled-late", b"awaiting", b"answered"):
        with pytest.raises(AnswerNotStored):
            decline(bank, rrpid, answered=False)
    decline(bank, b"answered", answered=True)  # its retry answers it
    _settle(backend, tmp_path, b"settled-early")
    clock.advance((DAYS + 1) * DAY_MS)
    assert bank.ledger.prunable(DAYS).requests == 1  # the answered one alone
    assert bank.ledger.prune_requests(DAYS).deleted == 1
    assert {d.rrpid for d in _listed(backend, tmp_path)} == {
        b"settled-early", b"settled-late", b"awaiting",
    }  # fmt: skip

    _settle(backend, tmp_path, b"settled-late")
    for _ in range(3):  # looked at again a day on, and every day after: never dropped
        clock.advance(DAY_MS + 1)
        assert bank.ledger.prunable(DAYS).requests == 0
        assert bank.ledger.prune_requests(DAYS).deleted == 0
    assert {d.rrpid for d in _listed(backend, tmp_path)} == {
        b"settled-early", b"settled-late", b"awaiting",
    }  # fmt: skip
    marks = {str(name) for (name,) in backend.raw_query("SELECT name FROM retention_marks")}
    assert "unanswered:" + b"settled-late".hex() not in marks  # not revisited for ever
    assert "unanswered:" + b"awaiting".hex() in marks
    for rrpid in (b"settled-early", b"settled-late"):
        found = bank.ledger.stored_response(rrpid, b"digest")
        assert isinstance(found, SettledByHand), rrpid
