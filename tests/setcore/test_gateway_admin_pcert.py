"""PCertReq/PCertRes on a real PKI: the round trip that feeds PInitRes, and every
merchant and gateway check of the gateway certificates a merchant is told to use."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pytest

from setcore.credentials import Credentials
from setcore.error_message import build_error
from setcore.errors import ErrorCode, PeerError
from setcore.freshness import FRESHNESS_WINDOW_MS, new_id, now_ms
from setcore.gateway_admin import (
    MAX_BRAND_AND_BINS,
    PCERT_RES_CT,
    PCertRequestState,
    VerifiedPCertRequest,
    build_pcert_request,
    build_pcert_response,
    open_pcert_request,
    open_pcert_response,
)
from setcore.pan import PAN
from setcore.pki.roles import MERCHANT, PAYMENT_GATEWAY, CertificateUsage
from setcore.purchase import build_pinit_request, build_pinit_response, open_pinit_response
from setcore.signed import parse_signed, sign
from setpay.v1 import common_pb2, gateway_admin_pb2

from .certified import Certified, refused
from .pki.conftest import TEST_PAN

P_SUCCESS = gateway_admin_pb2.P_CERT_CODE_SUCCESS
NOT_SUPPORTED = gateway_admin_pb2.P_CERT_CODE_BRAND_NOT_SUPPORTED


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
    ids = common_pb2.TransIDs(
        lid_c=b"wallet-order", xid=new_id(), preq_date_unix_ms=now_ms(), language="en"
    )
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


def test_pcert_leaving_out_a_gateway_ca_certificate_no_longer_held_is_refused(
    ec_certified: Certified,
) -> None:
    # The merchant sends the gateway's CA certificate with its key in PInitRes, so it must
    # have it: from the bundle, which the signature does not cover, or from its store. Here
    # the gateway's chains are cached from an earlier PCertRes, and the CA certificate they
    # went through was dropped from the store's bounded certificate cache since.
    c = ec_certified
    gateway_ca = c.world.brand.gateway_ca.ca
    trust = c.world.store(max_cached_certificates=1)
    request, state = _pcert(c)
    payload = build_pcert_response(c.gateway, _open_pcert(c, request), [P_SUCCESS])
    earlier = open_pcert_response(_pcert_response(payload), c.merchant, state, trust)
    assert earlier.items[0].chain == (gateway_ca.der,)
    trust.resolve(
        c.merchant.signature_thumb, c.merchant.bundle(), MERCHANT, CertificateUsage.SIGNATURE
    )  # its path's certificates push the gateway CA's out
    assert trust.certificate(gateway_ca.thumbprint) is None

    request, state = _pcert(c)
    signed = parse_signed(build_pcert_response(c.gateway, _open_pcert(c, request), [P_SUCCESS]))
    carried = [der for der in signed.bundle.certificates if der != gateway_ca.der]
    del signed.bundle.certificates[:]
    signed.bundle.certificates.extend(carried)
    reason = refused(
        ErrorCode.ERROR_CODE_MISSING_CERTIFICATE,
        open_pcert_response,
        _pcert_response(signed.SerializeToString()),
        c.merchant,
        state,
        trust,
    )
    assert reason == "gateway CA certificate missing"


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
    error = build_error(
        c.gateway, ErrorCode.ERROR_CODE_DECODING_FAILURE, rrpid=state.rrpid,
        request=state.request_digest,
    )  # fmt: skip
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
