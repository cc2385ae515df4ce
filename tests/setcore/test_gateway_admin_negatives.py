"""BatchAdminReq checks the gateway makes, each refused for its own reason: a merchant id
other than the certificate's, a date from the future, a tampered envelope, and a response
key of another merchant (the answer would be sealed to a merchant that did not ask)."""

from __future__ import annotations

import pytest

from setcore.credentials import Credentials
from setcore.errors import ErrorCode
from setcore.freshness import FRESHNESS_WINDOW_MS, now_ms
from setcore.gateway_admin import (
    VerifiedBatchAdminRequest,
    build_batch_admin_request,
    open_batch_admin_request,
)
from setpay.v1 import crypto_pb2, gateway_admin_pb2

from .certified import Certified, refused

CLOSE = gateway_admin_pb2.BATCH_OPERATION_CLOSE


def _open(
    c: Certified, request: gateway_admin_pb2.BatchAdminRequest, now: int | None = None
) -> VerifiedBatchAdminRequest:
    return open_batch_admin_request(request, c.gateway, c.trust(), now=now)


def _request(
    c: Certified, merchant_id: str | None = None, merchant: Credentials | None = None
) -> gateway_admin_pb2.BatchAdminRequest:
    request, _ = build_batch_admin_request(
        merchant or c.merchant, c.gateway_kex, merchant_id or c.merchant_id, CLOSE, batch_id="b"
    )
    return request


def test_a_merchant_id_other_than_the_certificates_is_refused(ec_certified: Certified) -> None:
    c = ec_certified
    request = _request(c, merchant_id=c.other_merchant_id)
    reason = refused(ErrorCode.ERROR_CODE_MERCHANT_MISMATCH, _open, c, request)
    assert "certificate" in reason


def test_a_request_dated_in_the_future_is_refused(ec_certified: Certified) -> None:
    """Seen from a gateway clock behind the merchant's by more than the window."""
    c = ec_certified
    request = _request(c)
    earlier = now_ms() - FRESHNESS_WINDOW_MS - 60_000
    refused(ErrorCode.ERROR_CODE_MESSAGE_TOO_NEW, _open, c, request, earlier)


@pytest.mark.parametrize("part", ["ciphertext", "kem_ciphertext", "nonce"])
def test_a_tampered_envelope_is_refused(ec_certified: Certified, part: str) -> None:
    c = ec_certified
    request = _request(c)
    sealed = crypto_pb2.Sealed.FromString(request.batch_admin_req)
    flipped = bytearray(getattr(sealed, part))
    flipped[-1] ^= 1
    setattr(sealed, part, bytes(flipped))
    request.batch_admin_req = sealed.SerializeToString()
    refused(ErrorCode.ERROR_CODE_DECRYPTION_FAILURE, _open, c, request)


def test_a_response_key_of_another_merchant_is_refused(ec_certified: Certified) -> None:
    """Signed by this merchant, but naming the other merchant's key-exchange certificate
    (carried in the bundle, so it resolves) for the answer."""
    c = ec_certified
    other_kex = c.other_merchant.key_exchange_cert
    assert other_kex is not None
    mixed = Credentials(
        backend=c.merchant.backend,
        signature_key=c.merchant.signature_key,
        signature_cert=c.merchant.signature_cert,
        chain=c.merchant.chain,
        key_exchange_key=c.other_merchant.key_exchange_key,
        key_exchange_cert=other_kex,
    )
    request = _request(c, merchant=mixed)
    reason = refused(ErrorCode.ERROR_CODE_MERCHANT_MISMATCH, _open, c, request)
    assert reason == "response key of another merchant"
