"""A decision settled by hand only once old enough (``gateway.ledger.settle_age``), by the
ledger's own record of when it was decided, on SQLite and on PostgreSQL.

Before, ``unanswered.settle`` settled a decision whatever its age: one milliseconds old,
whose answer the gateway was storing or the merchant's next retry would build, was
settled, and that answer refused for ever. Now one younger than ``SETTLE_MIN_AGE_MS``, or
dated ahead of the clock (the hosts' clocks differ, or one was set back since; under a
second ahead said so, not ``0 s``), is refused, DecisionTooYoung, nothing
changed, in the statement that would mark it; with no minimum (the operator's
``--younger-ok``) it is settled whatever its age.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

import pytest

from gateway.ledger import AnswerNotStored, LedgerError, LedgerStore, SqliteLedgerStore
from gateway.ledger.settle_age import (
    CLOCK_SKEW_ALLOWANCE_MS,
    SETTLE_MIN_AGE_MS,
    DecisionTooYoung,
    age_said,
    duration,
    too_young,
    young_refusal,
)
from gateway.ledger.unanswered import NotUnanswered, UnansweredDecision, settle
from setcore.freshness import FRESHNESS_WINDOW_MS
from tests.gateway.ledger.ledger_support import (
    EUR,
    EXPIRY,
    MERCHANT,
    PAN_A,
    Backend,
    Bank,
    FakeClock,
)
from tests.gateway.ledger.retention_support import unsigned

REASON = "merchant gone, settled with the acquirer (ticket 4711)"

# The command's own stores: never the ledger service (``cli.bank_unanswered``).
on_each_store = pytest.mark.parametrize("backend", ["sqlite", "postgres"], indirect=True)


def _settle(
    backend: Backend, tmp_path: Path, rrpid: bytes, *, at: int, min_age_ms: int | None
) -> UnansweredDecision:
    """Settle by hand on a store of the fixture's database itself, as the command does."""
    store: LedgerStore
    if backend.name.startswith("sqlite"):
        store = SqliteLedgerStore(tmp_path / "ledger.db")
    else:
        store = backend.open_store()
    try:
        settling = functools.partial(
            settle, rrpid=rrpid, reason=REASON, now_ms=at, min_age_ms=min_age_ms
        )
        return store.execute(settling)
    finally:
        store.close()


def _decided(bank: Bank, rrpid: bytes) -> None:
    """A sale decided under ``rrpid`` at the bank's clock, its answer never stored."""
    with pytest.raises(AnswerNotStored):
        bank.ledger.authorize(
            pan=PAN_A, pan_expiry=EXPIRY, amount=1000, currency=EUR, merchant_id=MERCHANT,
            xid=b"xid-" + rrpid, pi_digest=b"pi-" + rrpid, rrpid=rrpid,
            request_digest=b"digest-" + rrpid, respond=unsigned, capture_now=True,
        )  # fmt: skip


def _rows(backend: Backend) -> list[tuple[object, ...]]:
    return sorted(backend.raw_query("SELECT * FROM requests"), key=repr)


@on_each_store
def test_a_young_decision_is_refused_and_an_old_one_settled(
    backend: Backend, bank: Bank, tmp_path: Path, clock: FakeClock
) -> None:
    rrpid = b"young-sale"
    _decided(bank, rrpid)
    decided = clock()
    before = _rows(backend)
    for at, said in (
        (decided + 5, r"was decided 0 s ago \(.* UTC\), less than the 12 min 30 s"),
        (decided + SETTLE_MIN_AGE_MS - 1, r"was decided 12 min 29 s ago"),
        (decided - 3_000, r"3 s ahead of this host's clock .*taken as too young"),
        (decided - 1, r"less than 1 s ahead of this host's clock \(the hosts' clocks differ"),
    ):
        with pytest.raises(DecisionTooYoung, match=said) as refused:
            _settle(backend, tmp_path, rrpid, at=at, min_age_ms=SETTLE_MIN_AGE_MS)
        message = str(refused.value)
        assert isinstance(refused.value, LedgerError) and not isinstance(
            refused.value, NotUnanswered
        )
        assert rrpid.hex() in message and "--younger-ok" in message
        assert message.endswith("; nothing changed")
        assert re.search(r"\d{13}", message.replace(rrpid.hex(), "")) is None
        assert _rows(backend) == before

    settled = _settle(
        backend, tmp_path, rrpid, at=decided + SETTLE_MIN_AGE_MS, min_age_ms=SETTLE_MIN_AGE_MS
    )
    assert settled.settled_at_ms == decided + SETTLE_MIN_AGE_MS and settled.reason == REASON
    # Settled already is said as before, whatever the clock.
    with pytest.raises(NotUnanswered, match="was settled by hand already"):
        _settle(backend, tmp_path, rrpid, at=decided, min_age_ms=SETTLE_MIN_AGE_MS)


@on_each_store
def test_with_no_minimum_a_young_decision_or_one_ahead_of_the_clock_is_settled(
    backend: Backend, bank: Bank, tmp_path: Path, clock: FakeClock
) -> None:
    """The operator's ``--younger-ok``: an answer known never to come need not wait."""
    for rrpid, at in ((b"fresh", clock() + 1), (b"ahead", clock() - 60_000)):
        _decided(bank, rrpid)
        settled = _settle(backend, tmp_path, rrpid, at=at, min_age_ms=None)
        assert settled.settled_at_ms == at


def test_the_minimum_and_how_an_age_is_said() -> None:
    """Twice the freshness window (a date may lead the clock by one and trail it by one),
    two minutes for the merchant's slowest resending, and 30 s for the clock of the host
    settling to lead the deciding gateway's (two hosts on a PostgreSQL ledger)."""
    assert CLOCK_SKEW_ALLOWANCE_MS == 30_000
    assert SETTLE_MIN_AGE_MS == 2 * FRESHNESS_WINDOW_MS + 2 * 60_000 + 30_000 == 750_000
    assert [duration(ms) for ms in (0, 999, 5_000, 720_000, 725_000, 3_725_000)] == [
        "0 s", "0 s", "5 s", "12 min", "12 min 5 s", "1 h 2 min",
    ]  # fmt: skip
    assert duration(3 * 86_400_000 + 4 * 3_600_000 + 59_000) == "3 d 4 h"
    assert age_said(1_000, 61_000) == "age 1 min"
    assert age_said(61_000, 1_000) == "age unknown: 1 min ahead of this host's clock"
    assert age_said(1_000, 1_000) == "age 0 s"


@pytest.mark.parametrize("ahead_ms", [1, 500, 999])
def test_a_decision_under_a_second_ahead_of_the_clock_is_not_said_0_s_ahead(
    ahead_ms: int,
) -> None:
    # Before: "age unknown: 0 s ahead of this host's clock", as if it were not ahead.
    decided = 1_700_000_000_000
    said = "less than 1 s ahead of this host's clock"
    assert age_said(decided, decided - ahead_ms) == f"age unknown: {said}"
    refusal = young_refusal(b"\x01" * 32, decided, decided - ahead_ms)
    assert f", {said} (the hosts' clocks differ, or one was set back since): " in refusal
    assert age_said(decided, decided - 1_000) == "age unknown: 1 s ahead of this host's clock"
    assert too_young(0, SETTLE_MIN_AGE_MS - 1) and not too_young(0, SETTLE_MIN_AGE_MS)
    assert too_young(1, 0) and too_young(1, 0, min_age_ms=0) and not too_young(0, 0, 0)
