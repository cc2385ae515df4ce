"""PCertReq/PCertRes and BatchAdminReq/BatchAdminRes on a real PKI."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from functools import partial

import pytest

from setcore.capture import peek_sealed_rrpid
from setcore.credentials import Credentials
from setcore.error_message import build_error
from setcore.errors import ErrorCode, PeerError
from setcore.freshness import FRESHNESS_WINDOW_MS, new_id, now_ms
from setcore.gateway_admin import (
    MAX_BRAND_AND_BINS,
    MAX_STARTING_POINT,
    MAX_TRANSACTION_DETAILS,
    PCERT_RES_CT,
    BatchAdminDecision,
    BatchAdminState,
    PCertRequestState,
    TransactionPage,
    VerifiedBatchAdminRequest,
    VerifiedPCertRequest,
    build_batch_admin_request,
    build_batch_admin_response,
    build_pcert_request,
    build_pcert_response,
    open_batch_admin_request,
    open_batch_admin_response,
    open_pcert_request,
    open_pcert_response,
)
from setcore.pan import PAN
from setcore.pki.roles import PAYMENT_GATEWAY, CertificateUsage
from setcore.purchase import build_pinit_request, build_pinit_response, open_pinit_response
from setcore.signed import parse_signed, sign
from setpay.v1 import common_pb2, gateway_admin_pb2

from .certified import Certified, eur, recipient_of, refused
from .pinning_support import gateway_of
from .pki.conftest import TEST_PAN

P_SUCCESS = gateway_admin_pb2.P_CERT_CODE_SUCCESS
NOT_SUPPORTED = gateway_admin_pb2.P_CERT_CODE_BRAND_NOT_SUPPORTED
CLOSE = gateway_admin_pb2.BATCH_OPERATION_CLOSE
OPEN = gateway_admin_pb2.BATCH_OPERATION_OPEN
BA_SUCCESS = gateway_admin_pb2.BATCH_ADMIN_STATUS_SUCCESS


# --- PCertReq / PCertRes -------------------------------------------------------------


def _pcert(
    c: Certified, entries: list[tuple[str, str]] | None = None, merchant: Credentials | None = None
) -> tuple[gateway_admin_pb2.GatewayCertificatesRequest, PCertRequestState]:
    entries = [(c.brand_id, "411111")] if entries is None else entries
    return build_pcert_request(merchant or c.merchant, entries, c.merchant_id)


def _open_pcert(
    c: Certified, request: gateway_admin_pb2.GatewayCertificatesRequest, now: int | None = None
) -> VerifiedPCertRequest:
    return open_pcert_request(request, c.trust(), now=now)


def _pcert_response(payload: bytes) -> gateway_admin_pb2.GatewayCertificatesResponse:
    return gateway_admin_pb2.GatewayCertificatesResponse(p_cert_res=payload)


def test_pcert_round_trip_feeds_pinit(certified: Certified) -> None:
    c = certified
    request, state = _pcert(c, [(c.brand_id, "411111"), ("otherbrand", "")])
    verified = _open_pcert(c, request)
    assert verified.merchant_id == c.merchant_id
    assert verified.request_digest == state.request_digest
    assert verified.rrpid == state.rrpid

    payload = build_pcert_response(c.gateway, verified, [P_SUCCESS, NOT_SUPPORTED])
    answer = open_pcert_response(_pcert_response(payload), c.merchant, state, c.trust())
    assert answer.gateway.thumbprint == c.gateway.signature_thumb
    ours, other = answer.items
    assert (ours.brand_id, ours.bin, ours.code) == (c.brand_id, "411111", P_SUCCESS)
    assert ours.key_exchange is not None and ours.signature is not None
    assert ours.key_exchange.thumbprint == c.gateway.key_exchange_thumb
    assert ours.key_exchange.certificate_type == PAYMENT_GATEWAY
    assert ours.key_exchange.usage is CertificateUsage.KEY_EXCHANGE
    assert ours.signature.thumbprint == c.gateway.signature_thumb
    assert ours.signature.usage is CertificateUsage.SIGNATURE
    assert ours.chain == (c.world.brand.gateway_ca.ca.der,)
    assert (other.code, other.key_exchange, other.signature, other.chain) == (
        NOT_SUPPORTED,
        None,
        None,
        (),
    )

    # What the merchant learnt is what a wallet needs: PInitRes naming this gateway key.
    pinit, pinit_state = build_pinit_request(PAN(TEST_PAN), c.brand_id, b"wallet-order")
    ids = common_pb2.TransIDs(lid_c=b"wallet-order", xid=new_id(), preq_date_unix_ms=now_ms())
    pinit_res = build_pinit_response(
        c.merchant, pinit, ids, new_id(), ours.key_exchange.der, ours.chain
    )
    offer = open_pinit_response(pinit_res, pinit_state, c.trust())
    assert offer.gateway.thumbprint == c.gateway.key_exchange_thumb


def _forged_pcert(
    c: Certified,
    change: Callable[[gateway_admin_pb2.PCertResTBS], None],
    extra_certificates: tuple[bytes, ...] = (),
) -> tuple[bytes, PCertRequestState]:
    """A PCertRes really signed by the gateway, with TBS contents changed before signing."""
    request, state = _pcert(c)
    verified = _open_pcert(c, request)
    honest = build_pcert_response(c.gateway, verified, [P_SUCCESS])
    tbs = gateway_admin_pb2.PCertResTBS.FromString(parse_signed(honest).tbs)
    change(tbs)
    bundle = c.gateway.bundle()
    bundle.certificates.extend(extra_certificates)
    signed = sign(
        c.gateway.backend,
        c.gateway.signature_key,
        c.gateway.signature_thumb,
        PCERT_RES_CT,
        tbs.SerializeToString(),
        bundle,
    )
    return signed.SerializeToString(), state


@pytest.mark.parametrize("which", ["pcert", "batch"])
@pytest.mark.parametrize("field", ["rrpid", "xid", "lid_c", "lid_m"])
def test_request_header_naming_other_ids_is_refused(
    ec_certified: Certified, which: str, field: str
) -> None:
    # SET-PROTOCOL.md 3.1: PCertReq and BatchAdminReq sign their RRPID and no transaction;
    # a header naming another RRPID, or any XID or LID, differs from the signed ids.
    c = ec_certified
    request, opener = (
        (_pcert(c)[0], _open_pcert) if which == "pcert" else (_batch(c)[0], _open_batch)
    )
    assert opener(c, request)  # type: ignore[operator, arg-type]
    setattr(request.header, field, new_id() if field in ("rrpid", "xid") else b"forged")
    reason = refused(ErrorCode.ERROR_CODE_WRAPPER_MSG_MISMATCH, opener, c, request)
    assert "header ids differ" in reason


@pytest.mark.parametrize("field", ["rrpid", "xid", "lid_c", "lid_m"])
def test_pcert_response_header_naming_other_ids_is_refused(
    ec_certified: Certified, field: str
) -> None:
    # SET-PROTOCOL.md 3.1: PCertRes signs its RRPID and no transaction; a header naming
    # another RRPID, or any XID or LID, differs from the signed ids.
    c = ec_certified
    request, state = _pcert(c)
    response = _pcert_response(
        build_pcert_response(c.gateway, _open_pcert(c, request), [P_SUCCESS])
    )
    response.header.CopyFrom(request.header)  # as the gateway answers: the request's ids echoed
    assert open_pcert_response(response, c.merchant, state, c.trust()).items[0].code == P_SUCCESS
    setattr(response.header, field, new_id() if field in ("rrpid", "xid") else b"forged")
    reason = refused(
        ErrorCode.ERROR_CODE_WRAPPER_MSG_MISMATCH, open_pcert_response, response, c.merchant,
        state, c.trust(),
    )  # fmt: skip
    assert "header ids differ" in reason


def _pcert_refused(c: Certified, code: int, payload: bytes, state: PCertRequestState) -> str:
    return refused(
        code, open_pcert_response, _pcert_response(payload), c.merchant, state, c.trust()
    )


def test_pcert_naming_a_merchant_key_is_refused(ec_certified: Certified) -> None:
    c = ec_certified
    merchant_kex = c.merchant.key_exchange_cert
    assert merchant_kex is not None

    def name_merchant_key(tbs: gateway_admin_pb2.PCertResTBS) -> None:
        tbs.items[0].key_exchange_cert_thumb = c.merchant.key_exchange_thumb or b""

    payload, state = _forged_pcert(
        c, name_merchant_key, (merchant_kex, c.world.brand.merchant_ca.ca.der)
    )
    _pcert_refused(c, ErrorCode.ERROR_CODE_WRONG_CERTIFICATE_ROLE, payload, state)


def test_pcert_naming_keys_of_the_wrong_usage_is_refused(ec_certified: Certified) -> None:
    c = ec_certified

    def swap(tbs: gateway_admin_pb2.PCertResTBS) -> None:
        item = tbs.items[0]
        item.key_exchange_cert_thumb, item.signature_cert_thumb = (
            item.signature_cert_thumb,
            item.key_exchange_cert_thumb,
        )

    payload, state = _forged_pcert(c, swap)
    _pcert_refused(c, ErrorCode.ERROR_CODE_WRONG_CERTIFICATE_ROLE, payload, state)


def test_pcert_naming_an_unknown_certificate_is_refused(ec_certified: Certified) -> None:
    c = ec_certified

    def unknown(tbs: gateway_admin_pb2.PCertResTBS) -> None:
        tbs.items[0].key_exchange_cert_thumb = new_id()

    payload, state = _forged_pcert(c, unknown)
    _pcert_refused(c, ErrorCode.ERROR_CODE_MISSING_CERTIFICATE, payload, state)


def test_pcert_answering_other_brands_is_refused(ec_certified: Certified) -> None:
    c = ec_certified

    def other_bin(tbs: gateway_admin_pb2.PCertResTBS) -> None:
        tbs.items[0].brand_and_bin.bin = "522222"

    payload, state = _forged_pcert(c, other_bin)
    _pcert_refused(c, ErrorCode.ERROR_CODE_DECODING_FAILURE, payload, state)


def test_pcert_success_for_a_brand_of_other_certificates_is_refused(
    ec_certified: Certified,
) -> None:
    c = ec_certified
    request, state = _pcert(c, [("otherbrand", "")])
    payload = build_pcert_response(c.gateway, _open_pcert(c, request), [P_SUCCESS])
    _pcert_refused(c, ErrorCode.ERROR_CODE_INVALID_CERTIFICATE, payload, state)


def test_pcert_signed_by_a_merchant_is_refused(ec_certified: Certified) -> None:
    c = ec_certified
    request, state = _pcert(c)
    payload = build_pcert_response(c.other_merchant, _open_pcert(c, request), [P_SUCCESS])
    _pcert_refused(c, ErrorCode.ERROR_CODE_WRONG_CERTIFICATE_ROLE, payload, state)


def test_pcert_naming_another_merchant_or_request_is_refused(ec_certified: Certified) -> None:
    c = ec_certified
    request, state = _pcert(c)
    verified = _open_pcert(c, request)
    forged = dataclasses.replace(verified, merchant=c.other_merchant_certificate())
    payload = build_pcert_response(c.gateway, forged, [P_SUCCESS])
    _pcert_refused(c, ErrorCode.ERROR_CODE_MERCHANT_MISMATCH, payload, state)
    forged = dataclasses.replace(verified, request_digest=new_id())
    payload = build_pcert_response(c.gateway, forged, [P_SUCCESS])
    _pcert_refused(c, ErrorCode.ERROR_CODE_DIGEST_MISMATCH, payload, state)


def test_pcert_error_is_raised_with_its_code(ec_certified: Certified) -> None:
    c = ec_certified
    _, state = _pcert(c)
    error = build_error(c.gateway, ErrorCode.ERROR_CODE_DECODING_FAILURE, rrpid=state.rrpid)
    with pytest.raises(PeerError) as caught:
        open_pcert_response(
            gateway_admin_pb2.GatewayCertificatesResponse(error=error),
            c.merchant,
            state,
            c.trust(),
        )
    assert caught.value.code == ErrorCode.ERROR_CODE_DECODING_FAILURE


@pytest.mark.parametrize(
    "entries",
    [
        [],
        [("testbrand", "4111")],
        [("testbrand", "411111\n")],
        [("testbrand", "41111\u0661")],
        [("", "411111")],
        [("b" * 65, "")],
        [("testbrand", "")] * (MAX_BRAND_AND_BINS + 1),
    ],
    ids=[
        "none",
        "short-bin",
        "newline-bin",
        "arabic-digit-bin",
        "no-brand",
        "long-brand",
        "too-many",
    ],
)
def test_pcert_request_bounds(ec_certified: Certified, entries: list[tuple[str, str]]) -> None:
    c = ec_certified
    request, _ = _pcert(c, entries)
    refused(ErrorCode.ERROR_CODE_DECODING_FAILURE, _open_pcert, c, request)


def test_pcert_request_checks(ec_certified: Certified) -> None:
    c = ec_certified
    request, _ = _pcert(c)
    later = now_ms() + FRESHNESS_WINDOW_MS + 60_000
    refused(ErrorCode.ERROR_CODE_MESSAGE_TOO_OLD, _open_pcert, c, request, later)
    request.header.rrpid = new_id()
    refused(ErrorCode.ERROR_CODE_WRAPPER_MSG_MISMATCH, _open_pcert, c, request)
    request, _ = build_pcert_request(c.merchant, [(c.brand_id, "")], c.other_merchant_id)
    refused(ErrorCode.ERROR_CODE_MERCHANT_MISMATCH, _open_pcert, c, request)
    request, _ = _pcert(c, merchant=c.gateway)
    refused(ErrorCode.ERROR_CODE_WRONG_CERTIFICATE_ROLE, _open_pcert, c, request)


# --- BatchAdminReq / BatchAdminRes ---------------------------------------------------


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


@pytest.mark.parametrize("field", ["rrpid", "xid", "lid_c", "lid_m"])
def test_batch_admin_response_header_naming_other_ids_is_refused(
    ec_certified: Certified, field: str
) -> None:
    # SET-PROTOCOL.md 3.1: BatchAdminRes signs its RRPID and no transaction; a header
    # naming another RRPID, or any XID or LID, differs from the signed ids.
    c = ec_certified
    request, state = _batch(c, page=TransactionPage(0, 10))
    response = _batch_response(
        build_batch_admin_response(c.gateway, _open_batch(c, request), _decision())
    )
    response.header.CopyFrom(request.header)  # as the gateway answers: the request's ids echoed
    result = open_batch_admin_response(
        response, c.merchant, state, c.trust(), gateway_identity=gateway_of(c)
    )
    assert result.status == BA_SUCCESS
    setattr(response.header, field, new_id() if field in ("rrpid", "xid") else b"forged")
    reason = refused(
        ErrorCode.ERROR_CODE_WRAPPER_MSG_MISMATCH, open_batch_admin_response, response,
        c.merchant, state, c.trust(), gateway_identity=gateway_of(c),
    )  # fmt: skip
    assert "header ids differ" in reason


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
