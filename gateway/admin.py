"""Gateway certificates (PCertReq) and settlement-batch administration (BatchAdminReq)."""

from __future__ import annotations

from gateway.bank import Bank
from gateway.ledger import (
    BatchOutcome,
    BatchPage,
    BatchSummary,
    Decline,
    Declined,
    Outcome,
    TransactionKind,
    UnknownBatch,
)
from gateway.outcomes import batch_status_for
from setcore.currency import exponent_for
from setcore.gateway_admin import (
    BatchAdminDecision,
    VerifiedBatchAdminRequest,
    build_batch_admin_response,
    build_pcert_response,
    open_batch_admin_request,
    open_pcert_request,
)
from setpay.v1 import common_pb2, gateway_admin_pb2


def gateway_certificates(
    bank: Bank, request: gateway_admin_pb2.GatewayCertificatesRequest
) -> bytes:
    """PCertReq -> PCertRes: this gateway's certificates for each brand it serves."""
    verified = open_pcert_request(request, bank.trust)
    codes = [
        gateway_admin_pb2.P_CERT_CODE_SUCCESS
        if entry.brand_id == bank.trust.brand_id
        else gateway_admin_pb2.P_CERT_CODE_BRAND_NOT_SUPPORTED
        for entry in verified.data.brand_and_bins
    ]
    return build_pcert_response(bank.credentials, verified, codes)


def _status(summary: BatchSummary) -> gateway_admin_pb2.BatchStatus:
    """The batch's BatchStatus: each kind of transaction filed in it, and its net.

    A batch that takes the reversal of a capture or credit filed in an earlier batch can
    show a negative net: that is what it takes back, and it is said as it is.
    """

    def total(amount: int) -> common_pb2.CurrencyAmount:
        return common_pb2.CurrencyAmount(
            currency=summary.currency, amount=amount, exp10=exponent_for(summary.currency)
        )

    captures, credits = (
        summary.totals[TransactionKind.CAPTURE],
        summary.totals[TransactionKind.CREDIT],
    )
    capture_reversals = summary.totals[TransactionKind.CAPTURE_REVERSAL]
    credit_reversals = summary.totals[TransactionKind.CREDIT_REVERSAL]
    return gateway_admin_pb2.BatchStatus(
        open_date_unix_ms=summary.opened_at_ms,
        close_date_unix_ms=summary.closed_at_ms or 0,
        closed=summary.status != "open",
        captured_total=total(captures.amount),
        capture_count=captures.count,
        credited_total=total(credits.amount),
        credit_count=credits.count,
        capture_reversed_total=total(capture_reversals.amount),
        capture_reversal_count=capture_reversals.count,
        credit_reversed_total=total(credit_reversals.amount),
        credit_reversal_count=credit_reversals.count,
        net_total=total(summary.net),
    )


def _transaction_details(
    page: BatchPage | None,
) -> tuple[tuple[gateway_admin_pb2.TransactionDetail, ...], int]:
    if page is None:
        return (), 0
    details = tuple(
        gateway_admin_pb2.TransactionDetail(
            xid=t.xid,
            rrpid=t.rrpid,
            kind=t.kind.value,
            amount=common_pb2.CurrencyAmount(
                currency=t.currency, amount=t.amount, exp10=exponent_for(t.currency)
            ),
            batch_sequence_num=t.batch_seq,
        )
        for t in page.items
    )
    return details, page.next_starting_point


def _decision(
    verified: VerifiedBatchAdminRequest, outcome: Outcome, page: BatchPage | None
) -> BatchAdminDecision:
    if isinstance(outcome, Declined):
        return BatchAdminDecision(
            status=batch_status_for(outcome.reason), batch_id=verified.data.batch_id
        )
    if not isinstance(outcome, BatchOutcome):
        raise TypeError(f"unexpected outcome {type(outcome).__name__}")
    summary = outcome.summary
    details, next_point = _transaction_details(page)
    # BatchStatus goes in every success, whatever return_batch_summary_ind asks: the
    # ledger has made it already for the decision, it is a few numbers, and it is what
    # the merchant records of the batch (whether it is closed) and reconciles against; an
    # answer without it would leave a merchant that asked for none unable to tell a close.
    return BatchAdminDecision(
        status=gateway_admin_pb2.BATCH_ADMIN_STATUS_SUCCESS,
        batch_id=summary.batch_id,
        batch_status=_status(summary),
        transaction_details=details,
        next_starting_point=next_point,
    )


def _refuse_a_decided_rrpid(bank: Bank, verified: VerifiedBatchAdminRequest) -> None:
    """Refuse a batch query under an RRPID the ledger decided for another request.

    A query is a read and keeps nothing, but its RRPID is one of the merchant's like any
    other (SET-PROTOCOL.md 3.3): one already used for a capture, a close or any request
    decided is a reuse, refused RRPID_REUSED (``RrpidReused``, ``gateway.answers``) as a
    capture under it would be, not answered as fresh. A query's own bytes are never
    stored, so the lookup finds nothing else, but a fence: a query refused as too old
    fences its RRPID as any request does (``gateway.servicer``), and these very bytes
    are then refused MESSAGE_TOO_OLD again (``RequestFenced``). The gateway's other
    read, PCertReq, is not held to this: it asks for public certificates, and a ledger
    read would fail it whenever the ledger is away.
    """
    bank.ledger.stored_response(verified.rrpid, verified.request_digest)


def batch_admin(bank: Bank, request: gateway_admin_pb2.BatchAdminRequest) -> bytes:
    """BatchAdminReq -> BatchAdminRes: open, close, purge or query a settlement batch."""
    verified = open_batch_admin_request(
        request, bank.opening_credentials(), bank.trust, at=bank.as_of_time, now=bank.as_of_ms
    )
    data = verified.data
    op = data.batch_operation
    merchant_id = verified.merchant_id
    ledger = bank.ledger

    def respond(outcome: Outcome, page: BatchPage | None = None) -> bytes:
        return build_batch_admin_response(
            bank.credentials, verified, _decision(verified, outcome, page)
        )

    def respond_closed(outcome: Outcome) -> bytes:
        # The decision has no detail in it; it is read once the close is committed. A
        # closed batch takes no more transactions, so the read lists what was closed
        # (or nothing, if a purge has retired the detail since).
        page = None
        if isinstance(outcome, BatchOutcome) and verified.maximum_items:
            page = ledger.batch_details(
                merchant_id,
                outcome.summary.batch_id,
                starting_point=data.return_transaction_detail.starting_point,
                max_items=verified.maximum_items,
            )
        return respond(outcome, page)

    rrpid, digest, checked = verified.rrpid, verified.request_digest, bank.as_of_ms
    if op == gateway_admin_pb2.BATCH_OPERATION_OPEN:
        # A batch just opened holds no transaction: no detail to read.
        return ledger.open_batch(
            merchant_id, rrpid=rrpid, request_digest=digest, respond=respond, checked_at_ms=checked
        )
    if op == gateway_admin_pb2.BATCH_OPERATION_CLOSE:
        return ledger.close_batch(
            merchant_id,
            data.batch_id,  # never empty: setcore refuses a close naming no batch
            rrpid=rrpid,
            request_digest=digest,
            respond=respond_closed,
            checked_at_ms=checked,
        )
    if op == gateway_admin_pb2.BATCH_OPERATION_PURGE:
        # A purged batch lists no transaction: no detail to read.
        return ledger.purge_batch(
            merchant_id,
            data.batch_id,
            rrpid=rrpid,
            request_digest=digest,
            respond=respond,
            checked_at_ms=checked,
        )
    # REQUEST: a read; nothing changes, so nothing is stored. An open batch takes
    # postings while it is read, so its totals and its detail come from one snapshot.
    # The batch is always named (setcore refuses a query naming none).
    _refuse_a_decided_rrpid(bank, verified)
    batch_id = data.batch_id
    try:
        if not verified.maximum_items:
            return respond(BatchOutcome(summary=ledger.batch_summary(merchant_id, batch_id)))
        report = ledger.batch_report(
            merchant_id,
            batch_id,
            starting_point=data.return_transaction_detail.starting_point,
            max_items=verified.maximum_items,
        )
    except UnknownBatch:
        return respond(Declined(reason=Decline.BATCH_UNKNOWN))
    return respond(BatchOutcome(summary=report.summary), report.page)
