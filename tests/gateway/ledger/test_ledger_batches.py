"""Settlement batches: numbering, summaries, close, purge, paged detail (both stores)."""

from __future__ import annotations

import pytest

from gateway.ledger import (
    Authorized,
    BatchOutcome,
    BatchSummary,
    CaptureItem,
    CreditItem,
    Decline,
    Declined,
    InvalidRequest,
    KindTotals,
    Posted,
    PostingOutcome,
    ReversalItem,
    TransactionKind,
    UnknownBatch,
    batches,
)
from gateway.ledger.store import Row, Transaction
from tests.gateway.ledger.ledger_support import EUR, MERCHANT, PAN_A, PAN_B, Bank


def hold_of(bank: Bank, pan: str, amount: int) -> str:
    outcome = bank.authorize(pan, amount)
    assert isinstance(outcome, Authorized), outcome
    return outcome.hold_id


def posted(outcome: object) -> Posted:
    assert isinstance(outcome, PostingOutcome), outcome
    (item,) = outcome.items
    assert isinstance(item, Posted), item
    return item


def batch_op(bank: Bank, method: str, *args: object) -> BatchOutcome | Declined:
    outcome = bank.call(getattr(bank.ledger, method), MERCHANT, *args)
    assert isinstance(outcome, BatchOutcome | Declined)
    return outcome


def test_transactions_are_numbered_in_the_open_batch(bank: Bank) -> None:
    hold = hold_of(bank, PAN_A, 5000)
    cap = posted(
        bank.call(
            bank.ledger.capture,
            merchant_id=MERCHANT,
            items=[CaptureItem(hold, 3000, EUR)],
            rrpid=b"cap-1",
        )
    )
    cred = posted(
        bank.call(
            bank.ledger.credit,
            merchant_id=MERCHANT,
            items=[CreditItem(hold, 1000, EUR)],
            rrpid=b"cred-1",
        )
    )
    crev = posted(
        bank.call(
            bank.ledger.reverse_credit, merchant_id=MERCHANT, items=[ReversalItem(hold, b"cred-1")]
        )
    )
    caprev = posted(
        bank.call(
            bank.ledger.reverse_capture, merchant_id=MERCHANT, items=[ReversalItem(hold, b"cap-1")]
        )
    )
    assert {p.batch_id for p in (cap, cred, crev, caprev)} == {cap.batch_id}
    assert [p.batch_seq for p in (cap, cred, crev, caprev)] == [1, 2, 3, 4]
    summary = bank.ledger.batch_summary(MERCHANT)
    assert (summary.batch_id, summary.status, summary.currency) == (cap.batch_id, "open", EUR)
    assert summary.totals == {
        TransactionKind.CAPTURE: KindTotals(1, 3000),
        TransactionKind.CREDIT: KindTotals(1, 1000),
        TransactionKind.CREDIT_REVERSAL: KindTotals(1, 1000),
        TransactionKind.CAPTURE_REVERSAL: KindTotals(1, 3000),
    }
    # Everything was undone: the batch settles nothing.
    assert (summary.captured_net, summary.credited_net, summary.net) == (0, 0, 0)


def test_a_batch_is_net_of_what_it_undoes_even_from_an_earlier_batch(bank: Bank) -> None:
    hold = hold_of(bank, PAN_A, 5000)
    bank.call(
        bank.ledger.capture, merchant_id=MERCHANT, items=[CaptureItem(hold, 3000, EUR)],
        rrpid=b"cap-1",
    )  # fmt: skip
    bank.call(
        bank.ledger.credit, merchant_id=MERCHANT, items=[CreditItem(hold, 500, EUR)],
        rrpid=b"cred-1",
    )  # fmt: skip
    first = bank.ledger.batch_summary(MERCHANT)
    assert (first.captured_net, first.credited_net, first.net) == (3000, 500, 2500)
    assert batch_op(bank, "close_batch") == BatchOutcome(bank.ledger.batch_summary(
        MERCHANT, first.batch_id
    ))  # fmt: skip
    # The original's batch is closed, so the reversals go into the next one, which
    # takes back what they undo.
    bank.call(
        bank.ledger.reverse_credit, merchant_id=MERCHANT, items=[ReversalItem(hold, b"cred-1")]
    )
    bank.call(
        bank.ledger.capture, merchant_id=MERCHANT, items=[CaptureItem(hold, 1000, EUR)],
        rrpid=b"cap-2",
    )  # fmt: skip
    bank.call(
        bank.ledger.reverse_capture, merchant_id=MERCHANT, items=[ReversalItem(hold, b"cap-1")]
    )
    second = bank.ledger.batch_summary(MERCHANT)
    assert second.batch_id != first.batch_id
    assert (second.captured_net, second.credited_net, second.net) == (-2000, -500, -1500)
    # Together they settle what the merchant holds.
    assert first.net + second.net == bank.ledger.merchant_account(MERCHANT).balance == 1000


def test_close_then_the_next_transaction_opens_a_new_batch(bank: Bank) -> None:
    hold = hold_of(bank, PAN_A, 5000)
    first = posted(
        bank.call(bank.ledger.capture, merchant_id=MERCHANT, items=[CaptureItem(hold, 1000, EUR)])
    )
    closed = batch_op(bank, "close_batch")
    assert isinstance(closed, BatchOutcome)
    assert (closed.summary.batch_id, closed.summary.status) == (first.batch_id, "closed")
    assert closed.summary.closed_at_ms is not None
    assert closed.summary.totals[TransactionKind.CAPTURE] == KindTotals(1, 1000)
    second = posted(
        bank.call(bank.ledger.capture, merchant_id=MERCHANT, items=[CaptureItem(hold, 1000, EUR)])
    )
    assert second.batch_id != first.batch_id and second.batch_seq == 1


def test_closed_batch_takes_no_transactions(bank: Bank) -> None:
    hold = hold_of(bank, PAN_A, 5000)
    first = posted(
        bank.call(bank.ledger.capture, merchant_id=MERCHANT, items=[CaptureItem(hold, 1000, EUR)])
    )
    batch_op(bank, "close_batch", first.batch_id)
    refused = bank.call(
        bank.ledger.capture,
        merchant_id=MERCHANT,
        items=[CaptureItem(hold, 1000, EUR, batch_id=first.batch_id)],
    )
    assert refused == PostingOutcome((Declined(Decline.BATCH_CLOSED),))
    unknown = bank.call(
        bank.ledger.capture,
        merchant_id=MERCHANT,
        items=[CaptureItem(hold, 1000, EUR, batch_id="batch-nope")],
    )
    assert unknown == PostingOutcome((Declined(Decline.BATCH_UNKNOWN),))
    assert bank.ledger.hold(hold).captured == 1000
    assert batch_op(bank, "close_batch", first.batch_id) == Declined(Decline.BATCH_CLOSED)
    assert batch_op(bank, "close_batch", "batch-nope") == Declined(Decline.BATCH_UNKNOWN)


def test_open_batch_explicitly_once(bank: Bank) -> None:
    opened = batch_op(bank, "open_batch")
    assert isinstance(opened, BatchOutcome) and opened.summary.status == "open"
    assert batch_op(bank, "open_batch") == Declined(Decline.BATCH_ALREADY_OPEN)
    hold = hold_of(bank, PAN_A, 5000)
    cap = posted(
        bank.call(bank.ledger.capture, merchant_id=MERCHANT, items=[CaptureItem(hold, 10, EUR)])
    )
    assert cap.batch_id == opened.summary.batch_id


def test_batches_belong_to_their_merchant(bank: Bank) -> None:
    bank.ledger.open_merchant_account("other-shop", EUR)
    opened = batch_op(bank, "open_batch")
    assert isinstance(opened, BatchOutcome)
    foreign = bank.call(bank.ledger.close_batch, "other-shop", opened.summary.batch_id)
    assert foreign == Declined(Decline.BATCH_UNKNOWN)
    with pytest.raises(UnknownBatch):
        bank.ledger.batch_summary("other-shop", opened.summary.batch_id)
    with pytest.raises(UnknownBatch):
        bank.ledger.batch_summary("other-shop")


def test_purge_retires_a_closed_batch(bank: Bank) -> None:
    hold = hold_of(bank, PAN_A, 5000)
    cap = posted(
        bank.call(
            bank.ledger.capture,
            merchant_id=MERCHANT,
            items=[CaptureItem(hold, 1000, EUR)],
            rrpid=b"cap-1",
        )
    )
    assert batch_op(bank, "purge_batch", cap.batch_id) == Declined(Decline.BATCH_NOT_CLOSED)
    batch_op(bank, "close_batch")
    purged = batch_op(bank, "purge_batch", cap.batch_id)
    assert isinstance(purged, BatchOutcome) and purged.summary.status == "purged"
    assert purged.summary.totals[TransactionKind.CAPTURE] == KindTotals(1, 1000)
    assert bank.ledger.batch_details(MERCHANT, cap.batch_id).items == ()
    reversal = bank.call(
        bank.ledger.reverse_capture, merchant_id=MERCHANT, items=[ReversalItem(hold, b"cap-1")]
    )
    assert reversal == PostingOutcome((Declined(Decline.ORIGINAL_PURGED),))
    assert batch_op(bank, "purge_batch", cap.batch_id) == Declined(Decline.BATCH_UNKNOWN)
    # The money stays where it went: purging is not a reversal.
    assert bank.ledger.find_card_account(PAN_A).posted_debt == 1000


def test_reversal_of_a_capture_in_a_closed_batch_goes_to_the_open_one(bank: Bank) -> None:
    hold = hold_of(bank, PAN_A, 5000)
    cap = posted(
        bank.call(
            bank.ledger.capture,
            merchant_id=MERCHANT,
            items=[CaptureItem(hold, 1000, EUR)],
            rrpid=b"cap-1",
        )
    )
    batch_op(bank, "close_batch")
    undone = posted(
        bank.call(
            bank.ledger.reverse_capture, merchant_id=MERCHANT, items=[ReversalItem(hold, b"cap-1")]
        )
    )
    assert undone.batch_id != cap.batch_id and undone.batch_seq == 1


def test_paged_transaction_detail(bank: Bank) -> None:
    holds = [hold_of(bank, PAN_A, 100) for _ in range(7)] + [hold_of(bank, PAN_B, 100)]
    for i, hold in enumerate(holds):
        bank.call(
            bank.ledger.capture,
            merchant_id=MERCHANT,
            items=[CaptureItem(hold, 10 + i, EUR)],
            rrpid=f"cap-{i}".encode(),
        )
    batch_id = bank.ledger.batch_summary(MERCHANT).batch_id
    seen: list[int] = []
    start = 0
    pages = 0
    while True:
        page = bank.ledger.batch_details(MERCHANT, batch_id, starting_point=start, max_items=3)
        pages += 1
        seen.extend(t.batch_seq for t in page.items)
        if page.next_starting_point == 0:
            break
        start = page.next_starting_point
    assert seen == list(range(1, 9)) and pages == 3
    first = bank.ledger.batch_details(MERCHANT, batch_id, max_items=1).items[0]
    hold = bank.ledger.hold(holds[0])
    assert (first.kind, first.hold_id, first.amount, first.currency) == (
        TransactionKind.CAPTURE,
        holds[0],
        10,
        EUR,
    )
    assert (first.xid, first.rrpid) == (hold.xid, b"cap-0")
    exact = bank.ledger.batch_details(MERCHANT, batch_id, starting_point=5, max_items=3)
    assert [t.batch_seq for t in exact.items] == [6, 7, 8] and exact.next_starting_point == 0


@pytest.mark.parametrize(
    ("start", "size", "argument"),
    [
        (-1, 10, "starting_point"),
        # A merchant's uint64: past any sequence number a database column holds. SQLite
        # cannot even bind it; every store refuses it alike, before any SQL.
        (2**63, 10, "starting_point"),
        (0, 0, "max_items"),
        (0, 501, "max_items"),
    ],
    ids=["start-below-0", "start-past-int64", "no-items", "too-many-items"],
)
def test_page_limits(bank: Bank, start: int, size: int, argument: str) -> None:
    opened = batch_op(bank, "open_batch")
    assert isinstance(opened, BatchOutcome)
    with pytest.raises(InvalidRequest, match=f"^{argument} "):
        bank.ledger.batch_details(
            MERCHANT, opened.summary.batch_id, starting_point=start, max_items=size
        )
    with pytest.raises(InvalidRequest, match=f"^{argument} "):
        bank.ledger.batch_report(
            MERCHANT, opened.summary.batch_id, starting_point=start, max_items=size
        )


def test_unknown_batch_detail(bank: Bank) -> None:
    with pytest.raises(UnknownBatch):
        bank.ledger.batch_details(MERCHANT, "batch-nope")


def _capture(bank: Bank, hold: str, rrpid: bytes) -> Posted:
    return posted(
        bank.call(
            bank.ledger.capture,
            merchant_id=MERCHANT,
            items=[CaptureItem(hold, 100, EUR)],
            rrpid=rrpid,
        )
    )


def test_a_batch_report_counts_and_lists_the_same_transactions(bank: Bank) -> None:
    for i in range(3):
        _capture(bank, hold_of(bank, PAN_A, 100), f"cap-{i}".encode())
    report = bank.ledger.batch_report(MERCHANT, max_items=2)
    assert report.summary.totals[TransactionKind.CAPTURE] == KindTotals(count=3, amount=300)
    assert [t.rrpid for t in report.page.items] == [b"cap-0", b"cap-1"]
    rest = bank.ledger.batch_report(
        MERCHANT, report.summary.batch_id, starting_point=report.page.next_starting_point
    )
    assert [t.rrpid for t in rest.page.items] == [b"cap-2"] and rest.page.next_starting_point == 0
    with pytest.raises(UnknownBatch):
        bank.ledger.batch_report(MERCHANT, "batch-nope")
    with pytest.raises(InvalidRequest, match=r"^max_items "):
        bank.ledger.batch_report(MERCHANT, max_items=0)


# The stores that run the read in this process, where the patched function runs; over
# the ledger service the read runs in the service's process.
@pytest.mark.parametrize("backend", ["sqlite", "postgres"], indirect=True)
def test_a_batch_report_is_one_snapshot(bank: Bank, monkeypatch: pytest.MonkeyPatch) -> None:
    first, second = hold_of(bank, PAN_A, 100), hold_of(bank, PAN_A, 100)
    _capture(bank, first, b"cap-0")
    committed: list[Posted] = []
    read_summary = batches.summary

    def summary_then_a_capture(
        tx: Transaction, merchant: Row, batch_id: str | None
    ) -> BatchSummary:
        # Once the totals are read, another capture commits on another connection,
        # before the page is read.
        found = read_summary(tx, merchant, batch_id)
        if not committed:
            committed.append(_capture(bank, second, b"cap-1"))
        return found

    monkeypatch.setattr(batches, "summary", summary_then_a_capture)
    report = bank.ledger.batch_report(MERCHANT)
    assert committed and committed[0].batch_id == report.summary.batch_id
    # Neither the totals nor the page see the capture that committed during the read.
    assert report.summary.totals[TransactionKind.CAPTURE].count == 1
    assert [t.rrpid for t in report.page.items] == [b"cap-0"]
    monkeypatch.undo()
    after = bank.ledger.batch_report(MERCHANT)
    assert after.summary.totals[TransactionKind.CAPTURE].count == 2
    assert [t.rrpid for t in after.page.items] == [b"cap-0", b"cap-1"]


def test_no_posting_or_purge_in_another_merchants_batch(bank: Bank) -> None:
    bank.ledger.open_merchant_account("other-shop", EUR)
    hold = hold_of(bank, PAN_A, 5000)
    mine = posted(
        bank.call(bank.ledger.capture, merchant_id=MERCHANT, items=[CaptureItem(hold, 10, EUR)])
    )
    other_hold = bank.authorize(PAN_B, 100, merchant="other-shop")
    assert isinstance(other_hold, Authorized)
    stray = bank.call(
        bank.ledger.capture,
        merchant_id="other-shop",
        items=[CaptureItem(other_hold.hold_id, 100, EUR, batch_id=mine.batch_id)],
    )
    assert stray == PostingOutcome((Declined(Decline.BATCH_UNKNOWN),))
    batch_op(bank, "close_batch", mine.batch_id)
    purge = bank.call(bank.ledger.purge_batch, "other-shop", mine.batch_id)
    assert purge == Declined(Decline.BATCH_UNKNOWN)
    summary = bank.ledger.batch_summary(MERCHANT, mine.batch_id)
    assert summary.status == "closed"
    assert summary.totals[TransactionKind.CAPTURE] == KindTotals(1, 10)
    assert bank.ledger.hold(other_hold.hold_id).captured == 0
    with pytest.raises(UnknownBatch):
        bank.ledger.batch_summary("other-shop")


def test_a_refused_posting_opens_no_batch(bank: Bank) -> None:
    hold = hold_of(bank, PAN_A, 1000)
    refused = bank.call(
        bank.ledger.capture, merchant_id=MERCHANT, items=[CaptureItem(hold, 1001, EUR)]
    )
    assert refused == PostingOutcome((Declined(Decline.AMOUNT_EXCEEDS_AUTHORIZATION),))
    with pytest.raises(UnknownBatch):
        bank.ledger.batch_summary(MERCHANT)
    first = posted(
        bank.call(bank.ledger.capture, merchant_id=MERCHANT, items=[CaptureItem(hold, 1000, EUR)])
    )
    assert first.batch_seq == 1
