"""``reports.batch_totals``, the batch ``setpay bank show-batch`` prints: a merchant's batch's
state and, per currency, each settlement kind's count and sum (every store, and the
ledger service's wire)."""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial

import pytest

from gateway.ledger import (
    BatchOutcome,
    KindTotals,
    LedgerStore,
    TransactionKind,
    UnknownBatch,
    UnknownMerchant,
)
from gateway.ledger.reports import BatchTotals, batch_totals
from setcore.pan import mask_pan
from tests.cards import card
from tests.gateway.ledger.ledger_support import EUR, MERCHANT, PAN_B, USD, Backend, Bank
from tests.gateway.ledger.operator_support import (
    CAPTURE_REVERSALS,
    CAPTURES,
    CREDIT_REVERSALS,
    CREDITS,
    NET,
    settle,
)

OTHER_MERCHANT = "merchant-2"
# A card number typed where an id goes.
PAN_LIKE = card("411111", 7)


@pytest.fixture
def store(backend: Backend) -> Iterator[LedgerStore]:
    """A second store on the ``bank`` fixture's database, as the command opens one."""
    opened = backend.open_store()
    yield opened
    opened.close()


def _totals(store: LedgerStore, batch_id: str, merchant_id: str = MERCHANT) -> BatchTotals:
    return store.read(partial(batch_totals, merchant_id=merchant_id, batch_id=batch_id))


def test_a_batch_s_totals_by_kind(bank: Bank, store: LedgerStore) -> None:
    settled = settle(bank)
    found = _totals(store, settled.batch_id)
    assert (found.merchant_id, found.batch_id, found.status) == (
        MERCHANT, settled.batch_id, "open",
    )  # fmt: skip
    assert found.closed_at_ms is None and found.account_currency == EUR
    assert found.totals == {
        EUR: {
            TransactionKind.CAPTURE: KindTotals(*CAPTURES),
            TransactionKind.CAPTURE_REVERSAL: KindTotals(*CAPTURE_REVERSALS),
            TransactionKind.CREDIT: KindTotals(*CREDITS),
            TransactionKind.CREDIT_REVERSAL: KindTotals(*CREDIT_REVERSALS),
        }
    }
    assert found.net(EUR) == NET
    # The gateway's own summary of the batch says the same.
    summary = bank.ledger.batch_summary(MERCHANT, settled.batch_id)
    assert summary.totals == found.totals[EUR] and summary.net == NET


def test_a_closed_and_purged_batch_keeps_its_totals(bank: Bank, store: LedgerStore) -> None:
    settled = settle(bank)
    closed = bank.call(bank.ledger.close_batch, MERCHANT, settled.batch_id)
    assert isinstance(closed, BatchOutcome)
    found = _totals(store, settled.batch_id)
    assert (found.status, found.closed_at_ms) == ("closed", closed.summary.closed_at_ms)
    assert isinstance(bank.call(bank.ledger.purge_batch, MERCHANT, settled.batch_id), BatchOutcome)
    purged = _totals(store, settled.batch_id)
    assert purged.status == "purged" and purged.totals == found.totals


def test_an_empty_batch_shows_zeros_in_the_account_s_currency(
    bank: Bank, store: LedgerStore
) -> None:
    opened = bank.call(bank.ledger.open_batch, MERCHANT)
    assert isinstance(opened, BatchOutcome)
    found = _totals(store, opened.summary.batch_id)
    assert found.totals == {EUR: {kind: KindTotals(0, 0) for kind in TransactionKind}}
    assert found.net(EUR) == 0


def test_an_unknown_merchant_is_refused_its_id_masked(bank: Bank, store: LedgerStore) -> None:
    settled = settle(bank)
    with pytest.raises(UnknownMerchant) as refused:
        _totals(store, settled.batch_id, merchant_id=PAN_LIKE)
    assert str(refused.value) == f"merchant {mask_pan(PAN_LIKE)} has no account"


def test_another_merchant_s_batch_is_not_shown_under_this_one(
    bank: Bank, store: LedgerStore
) -> None:
    bank.ledger.open_merchant_account(OTHER_MERCHANT, EUR)
    theirs = settle(bank, OTHER_MERCHANT, PAN_B)
    assert _totals(store, theirs.batch_id, OTHER_MERCHANT).totals[EUR][
        TransactionKind.CAPTURE
    ] == KindTotals(*CAPTURES)
    with pytest.raises(UnknownBatch, match=f"^merchant {MERCHANT} has no batch batch-"):
        _totals(store, theirs.batch_id)


def test_an_unknown_batch_is_refused_a_number_in_it_masked(bank: Bank, store: LedgerStore) -> None:
    settle(bank)
    with pytest.raises(UnknownBatch) as refused:
        _totals(store, f"batch-{PAN_LIKE}")
    assert PAN_LIKE not in str(refused.value) and mask_pan(PAN_LIKE) in str(refused.value)


def test_a_transfer_in_another_currency_is_shown_apart(
    bank: Bank, store: LedgerStore, backend: Backend
) -> None:
    """Books that held one (a fault ``check-books`` reports) are shown as they are: the
    transfer is counted under its own currency, not added into the account's."""
    settled = settle(bank)
    ((first,),) = backend.raw_query(
        f"SELECT MIN(id) FROM transfers WHERE batch_id = '{settled.batch_id}' AND kind = 'capture'"
    )
    backend.raw_execute(f"UPDATE transfers SET currency = {USD} WHERE id = {first}")
    try:
        found = _totals(store, settled.batch_id)
    finally:
        backend.raw_execute(f"UPDATE transfers SET currency = {EUR} WHERE id = {first}")
    assert list(found.totals) == [USD, EUR]
    assert found.totals[USD][TransactionKind.CAPTURE] == KindTotals(1, 3000)
    assert found.totals[EUR][TransactionKind.CAPTURE] == KindTotals(1, CAPTURES[1] - 3000)
    assert found.net(USD) + found.net(EUR) == NET
