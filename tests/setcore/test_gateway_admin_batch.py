"""BatchAdminReq/BatchAdminRes on a real PKI: the round trip, the batch ids and pages
the gateway accepts, and every merchant check of the signed, sealed answer."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from functools import partial

import pytest

from setcore.capture import peek_sealed_rrpid
from setcore.credentials import Credentials
from setcore.errors import ErrorCode
from setcore.freshness import FRESHNESS_WINDOW_MS, new_id, now_ms
from setcore.gateway_admin import (
    MAX_STARTING_POINT,
    MAX_TRANSACTION_DETAILS,
    BatchAdminDecision,
    BatchAdminState,
    TransactionPage,
    VerifiedBatchAdminRequest,
    build_batch_admin_request,
    build_batch_admin_response,
    open_batch_admin_request,
    open_batch_admin_response,
)
from setpay.v1 import gateway_admin_pb2

from .certified import Certified, eur, recipient_of, refused
from .pinning_support import gateway_of

CLOSE = gateway_admin_pb2.BATCH_OPERATION_CLOSE
OPEN = gateway_admin_pb2.BATCH_OPERATION_OPEN
BA_SUCCESS = gateway_admin_pb2.BATCH_ADMIN_STATUS_SUCCESS


def _batch(
    c: Certified,
    operation: int = CLOSE,
    *,
    batch_id: str = "batch-7",
    page: TransactionPage | None = None,
    merchant: Credentials | None = None,
    gateway_kex: object = None,
) -> tuple[gateway_admin_pb2.BatchAdminRequest, BatchAdminState]:
    return build_batch_admin_request(
        merchant or c.merchant,
        c.gateway_kex if gateway_kex is None else gateway_kex,  # type: ignore[arg-type]
        c.merchant_id,
        operation,
        batch_id=batch_id,
        return_summary=True,
        page=page,
    )


def _open_batch(
    c: Certified, request: gateway_admin_pb2.BatchAdminRequest, now: int | None = None
) -> VerifiedBatchAdminRequest:
    return open_batch_admin_request(request, c.gateway, c.trust(), now=now)


def _batch_response(payload: bytes) -> gateway_admin_pb2.BatchAdminResponse:
    return gateway_admin_pb2.BatchAdminResponse(batch_admin_res=payload)


def _details(count: int) -> tuple[gateway_admin_pb2.TransactionDetail, ...]:
    return tuple(
        gateway_admin_pb2.TransactionDetail(
            xid=new_id(), rrpid=new_id(), kind="capture", amount=eur(100 + n), batch_sequence_num=n
        )
        for n in range(count)
    )


def _decision(batch_id: str = "batch-7", details: int = 2) -> BatchAdminDecision:
    status = gateway_admin_pb2.BatchStatus(
        open_date_unix_ms=1,
        close_date_unix_ms=now_ms(),
        closed=True,
        captured_total=eur(201),
        capture_count=2,
    )
    return BatchAdminDecision(BA_SUCCESS, batch_id, status, _details(details), 0)


def test_batch_admin_round_trip(certified: Certified) -> None:
    c = certified
    request, state = _batch(c, page=TransactionPage(0, 10))
    assert peek_sealed_rrpid(request.batch_admin_req) == state.rrpid
    verified = _open_batch(c, request)
    assert verified.merchant_id == c.merchant_id
    assert verified.rrpid == state.rrpid
    assert verified.request_digest == state.request_digest
    assert verified.maximum_items == 10
    assert verified.data.batch_operation == CLOSE
    assert verified.data.return_batch_summary_ind

    payload = build_batch_admin_response(c.gateway, verified, _decision())
    result = open_batch_admin_response(
        _batch_response(payload), c.merchant, state, c.trust(), gateway_identity=gateway_of(c)
    )
    assert result.status == BA_SUCCESS
    assert result.gateway.thumbprint == c.gateway.signature_thumb
    assert result.data.batch_id == "batch-7"
    assert result.data.batch_status.captured_total.amount == 201
    assert [d.amount.amount for d in result.data.transaction_details] == [100, 101]


def test_opening_a_batch_leaves_the_id_to_the_gateway(ec_certified: Certified) -> None:
    c = ec_certified
    request, state = _batch(c, OPEN, batch_id="")
    verified = _open_batch(c, request)
    payload = build_batch_admin_response(
        c.gateway, verified, BatchAdminDecision(BA_SUCCESS, "assigned-1")
    )
    result = open_batch_admin_response(
        _batch_response(payload), c.merchant, state, c.trust(), gateway_identity=gateway_of(c)
    )
    assert result.data.batch_id == "assigned-1"


def test_opening_a_batch_under_an_id_of_the_merchants_is_refused(ec_certified: Certified) -> None:
    # The gateway names new batches; an answer naming its id would be refused by the
    # merchant as about another batch, after the batch was opened.
    c = ec_certified
    request, _ = _batch(c, OPEN, batch_id="mine-1")
    reason = refused(ErrorCode.ERROR_CODE_DECODING_FAILURE, _open_batch, c, request)
    assert "gateway" in reason


def test_batch_admin_request_bounds(ec_certified: Certified) -> None:
    c = ec_certified
    request, _ = _batch(c, batch_id="")
    assert "batch id" in refused(ErrorCode.ERROR_CODE_DECODING_FAILURE, _open_batch, c, request)
    request, _ = _batch(c, gateway_admin_pb2.BATCH_OPERATION_UNSPECIFIED)
    refused(ErrorCode.ERROR_CODE_DECODING_FAILURE, _open_batch, c, request)
    request, _ = _batch(c, page=TransactionPage(0, MAX_TRANSACTION_DETAILS + 1))
    refused(ErrorCode.ERROR_CODE_DECODING_FAILURE, _open_batch, c, request)
    request, _ = _batch(c, batch_id="b" * 65)
    refused(ErrorCode.ERROR_CODE_DECODING_FAILURE, _open_batch, c, request)
    # A uint64 past any sequence number the gateway gives (the stores count in int64).
    request, _ = _batch(c, page=TransactionPage(MAX_STARTING_POINT + 1, 10))
    assert "starting point" in refused(
        ErrorCode.ERROR_CODE_DECODING_FAILURE, _open_batch, c, request
    )
    request, _ = _batch(c, page=TransactionPage(MAX_STARTING_POINT, 10))
    assert _open_batch(c, request).data.return_transaction_detail.starting_point == (
        MAX_STARTING_POINT
    )


def test_batch_admin_request_checks(ec_certified: Certified) -> None:
    c = ec_certified
    request, _ = _batch(c)
    later = now_ms() + FRESHNESS_WINDOW_MS + 60_000
    refused(ErrorCode.ERROR_CODE_MESSAGE_TOO_OLD, _open_batch, c, request, later)
    request.header.rrpid = new_id()
    refused(ErrorCode.ERROR_CODE_WRAPPER_MSG_MISMATCH, _open_batch, c, request)
    request, _ = _batch(c, gateway_kex=recipient_of(c.other_merchant))
    refused(ErrorCode.ERROR_CODE_WRONG_RECIPIENT, _open_batch, c, request)
    request, _ = _batch(c, merchant=c.gateway)
    refused(ErrorCode.ERROR_CODE_WRONG_CERTIFICATE_ROLE, _open_batch, c, request)


def test_gateway_answers_no_more_details_than_asked(ec_certified: Certified) -> None:
    c = ec_certified
    request, _ = _batch(c, page=TransactionPage(0, 1))
    verified = _open_batch(c, request)
    with pytest.raises(ValueError, match="more transaction details"):
        build_batch_admin_response(c.gateway, verified, _decision(details=2))


def _batch_refused_at_merchant(
    c: Certified,
    code: int,
    forge: Callable[[VerifiedBatchAdminRequest], VerifiedBatchAdminRequest],
    *,
    gateway: Credentials | None = None,
    decision: BatchAdminDecision | None = None,
) -> None:
    request, state = _batch(c, page=TransactionPage(0, 2))
    verified = _open_batch(c, request)
    payload = build_batch_admin_response(
        gateway or c.gateway, forge(verified), decision or _decision()
    )
    opener = partial(open_batch_admin_response, gateway_identity=gateway_of(c))
    refused(code, opener, _batch_response(payload), c.merchant, state, c.trust())


def test_batch_admin_response_naming_another_merchant_is_refused(
    ec_certified: Certified,
) -> None:
    c = ec_certified
    other = c.other_merchant_certificate()
    _batch_refused_at_merchant(
        c, ErrorCode.ERROR_CODE_MERCHANT_MISMATCH, lambda v: dataclasses.replace(v, merchant=other)
    )


def test_batch_admin_response_to_another_request_is_refused(ec_certified: Certified) -> None:
    c = ec_certified
    _batch_refused_at_merchant(
        c,
        ErrorCode.ERROR_CODE_DIGEST_MISMATCH,
        lambda v: dataclasses.replace(v, request_digest=new_id()),
    )


def test_batch_admin_response_sealed_to_another_merchant_is_refused(
    ec_certified: Certified,
) -> None:
    c = ec_certified
    other = recipient_of(c.other_merchant)
    _batch_refused_at_merchant(
        c,
        ErrorCode.ERROR_CODE_WRONG_RECIPIENT,
        lambda v: dataclasses.replace(v, merchant_kex=other),
    )


def test_batch_admin_response_signed_by_a_merchant_is_refused(ec_certified: Certified) -> None:
    c = ec_certified
    _batch_refused_at_merchant(
        c, ErrorCode.ERROR_CODE_WRONG_CERTIFICATE_ROLE, lambda v: v, gateway=c.other_merchant
    )


def test_batch_admin_response_about_another_batch_is_refused(ec_certified: Certified) -> None:
    c = ec_certified
    _batch_refused_at_merchant(
        c, ErrorCode.ERROR_CODE_DECODING_FAILURE, lambda v: v, decision=_decision("batch-8")
    )


def test_batch_admin_response_with_more_details_than_asked_is_refused(
    ec_certified: Certified,
) -> None:
    c = ec_certified

    def bigger_page(v: VerifiedBatchAdminRequest) -> VerifiedBatchAdminRequest:
        data = gateway_admin_pb2.BatchAdminReqData()
        data.CopyFrom(v.data)
        data.return_transaction_detail.maximum_items = 3
        return dataclasses.replace(v, data=data)

    _batch_refused_at_merchant(
        c, ErrorCode.ERROR_CODE_DECODING_FAILURE, bigger_page, decision=_decision(details=3)
    )
