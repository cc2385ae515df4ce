"""What the merchant keeps of a PReq and forwards to the gateway is held to what the
gateway will take (``verify_purchase``): OIData's BIN six digits, and the clear header of
the PI's envelope naming a PITBE with its PANData, sealed with an allowed algorithm to a
certificate's thumbprint for this transaction. The dual signature covers neither: a
wallet writes them as it likes, and each one refused here was taken before (the
merchant kept the text, and sent the PI off to be refused by the gateway)."""

from __future__ import annotations

from typing import Any

import pytest

from setcore import dualsig, purchase
from setcore.dualsig import DualSignedPurchase
from setcore.errors import ErrorCode
from setcore.freshness import new_id
from setpay.v1 import purchase_pb2

from .certified import Certified
from .refusals import refused
from .test_purchase import _preq, _shop, _verify


def _with_bin(monkeypatch: pytest.MonkeyPatch, bin_of: Any) -> None:
    """The wallet dual-signs OIData whose BIN is ``bin_of(PANData)``; all else is honest."""
    real = dualsig.build_dual_signed

    def changed(*args: Any, **kwargs: Any) -> DualSignedPurchase:
        backend, key, thumb, certs, oi_data, pi_head, pan_data, *after = args
        oi = purchase_pb2.OIData.FromString(oi_data)
        oi.bin = bin_of(purchase_pb2.PANData.FromString(pan_data))
        changed_oi = oi.SerializeToString()
        return real(backend, key, thumb, certs, changed_oi, pi_head, pan_data, *after, **kwargs)

    monkeypatch.setattr(purchase, "build_dual_signed", changed)


@pytest.mark.parametrize(
    "bin_of",
    [
        lambda pan: pan.pan,  # the whole card number, for the merchant to keep
        lambda pan: "",
        lambda pan: pan.pan[:5],
        lambda pan: pan.pan[:7],
        lambda pan: "41111\u0661",
        lambda pan: "x" * 4096,
    ],
    ids=["whole-pan", "empty", "five", "seven", "arabic-digit", "long-text"],
)
def test_an_oidata_bin_that_is_not_six_digits_is_refused(
    ec: Certified, monkeypatch: pytest.MonkeyPatch, bin_of: Any
) -> None:
    _with_bin(monkeypatch, bin_of)
    shop = _shop(ec)
    request = purchase_pb2.PurchaseRequest.FromString(_preq(shop))
    request.header.Clear()  # only the signed OIData is under test
    reason = refused(
        ErrorCode.ERROR_CODE_DECODING_FAILURE, _verify, shop, request.SerializeToString()
    )
    assert reason == "OIData's BIN is not six digits"


def test_an_oidata_bin_of_six_digits_is_accepted(ec: Certified) -> None:
    shop = _shop(ec)
    preq = _preq(shop)
    view = purchase.open_purchase_request(purchase_pb2.PurchaseRequest.FromString(preq))
    assert view.oi_data.bin == shop.card.pan.bin
    assert _verify(shop, preq) is not None


def _with_envelope(preq: bytes, field: str, value: object) -> bytes:
    """The PReq with one field of its PI's envelope header rewritten on the way."""
    request = purchase_pb2.PurchaseRequest.FromString(preq)
    dual = purchase_pb2.PReqDualSigned.FromString(request.p_req)
    pi = purchase_pb2.PIDualSigned.FromString(dual.pi_dual_signed)
    setattr(pi.ex_pi, field, value)
    dual.pi_dual_signed = pi.SerializeToString()
    request.p_req = dual.SerializeToString()
    return request.SerializeToString()


@pytest.mark.parametrize(
    ("field", "value", "code", "says"),
    [
        ("content_type", "setpay.v1.PIHead", "DECODING_FAILURE", "not a PITBE"),
        ("extra_content_type", "", "DECODING_FAILURE", "not a PITBE"),
        ("extra_content_type", "setpay.v1.PIHead", "DECODING_FAILURE", "not a PITBE"),
        ("aead_alg", "aes-128-gcm", "ALGORITHM_NOT_ALLOWED", "sealed otherwise"),
        ("kem_alg", "rsa-pkcs1v15", "ALGORITHM_NOT_ALLOWED", "sealed otherwise"),
        ("recipient_cert_thumb", b"", "DECODING_FAILURE", "names no certificate"),
        ("recipient_cert_thumb", b"t" * 16, "DECODING_FAILURE", "names no certificate"),
        ("xid", b"", "WRAPPER_MSG_MISMATCH", "for another transaction"),
        ("xid", "new", "WRAPPER_MSG_MISMATCH", "for another transaction"),
        ("xid", b"x" * 16, "DECODING_FAILURE", "envelope XID must be"),
        ("rrpid", b"r" * 16, "DECODING_FAILURE", "envelope RRPID must be"),
        ("nonce", b"n" * 11, "DECRYPTION_FAILURE", "nonces are not 12 bytes"),
        ("extra_nonce", b"", "DECRYPTION_FAILURE", "nonces are not 12 bytes"),
        ("kem_ciphertext", b"k" * 64, "DECRYPTION_FAILURE", "KEM ciphertext is not a point"),
    ],
)
def test_a_pi_whose_envelope_header_the_gateway_would_refuse_is_refused(
    ec: Certified, field: str, value: object, code: str, says: str
) -> None:
    shop = _shop(ec)
    preq = _preq(shop)
    assert _verify(shop, preq) is not None  # as the wallet sealed it
    forged = _with_envelope(preq, field, new_id() if value == "new" else value)
    reason = refused(ErrorCode.Value(f"ERROR_CODE_{code}"), _verify, shop, forged)
    assert says in reason


def test_a_pi_sealed_to_another_certificate_is_left_to_the_gateway(ec: Certified) -> None:
    # Which of the gateway's key-exchange certificates opens it is the gateway's to say
    # (an older one still opens what was sealed to it): any thumbprint's size is taken.
    shop = _shop(ec)
    forged = _with_envelope(_preq(shop), "recipient_cert_thumb", new_id())
    assert _verify(shop, forged) is not None
