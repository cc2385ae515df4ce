"""The merchant of a purchase is its merchant ID in its brand, not the certificate that
signed the PInitRes: after ``setpay merchant renew`` its PRes, InqRes and Errors are
signed with a new certificate, and the wallet must still take them for its word
(SET-PROTOCOL.md 5.6, 5.7, 7.6). A certificate of that ID that is revoked, or of
another ID, is not; a purchase recorded without the merchant's ID (a development
snapshot's) keeps to the certificate it recorded."""

from __future__ import annotations

import dataclasses

import pytest
from cryptography import x509

from setcore.credentials import Credentials
from setcore.errors import ErrorCode, PeerError, ProtocolError
from setcore.purchase import InquiryState, PurchaseState

from .certified import Certified, _merchant, refused
from .pki.conftest import MERCHANT
from .test_purchase import _shop
from .test_purchase_wallet_checks import ANSWERS, _answer, _error_answer, _payload

_renewed_of: dict[int, Credentials] = {}


def _renewed(c: Certified) -> Credentials:
    """The purchase's merchant renewed: new keys, a new certificate, the same merchant ID
    (made once per brand: key generation is slow)."""
    if id(c.world) not in _renewed_of:
        _renewed_of[id(c.world)] = _merchant(c.world, MERCHANT)
    return _renewed_of[id(c.world)]


def _without_merchant_id(state: object) -> PurchaseState | InquiryState:
    """The state as a record of a development snapshot gives it: no merchant identity."""
    if isinstance(state, InquiryState):
        return dataclasses.replace(
            state, purchase=dataclasses.replace(state.purchase, merchant=None)
        )
    assert isinstance(state, PurchaseState)
    return dataclasses.replace(state, merchant=None)


@ANSWERS
def test_an_answer_signed_by_the_merchants_renewed_certificate_is_its_word(
    ec: Certified, kind: str
) -> None:
    renewed = _renewed(ec)
    assert renewed.signature_thumb != ec.merchant.signature_thumb
    response, state, opener = _answer(_shop(ec), kind, payloads=(_payload(),), merchant=renewed)
    assert len(opener(response, state, ec.trust()).payloads) == 1


@ANSWERS
def test_an_error_signed_by_the_merchants_renewed_certificate_is_its_word(
    ec: Certified, kind: str
) -> None:
    response, state, opener = _error_answer(_shop(ec), kind, _renewed(ec))
    with pytest.raises(PeerError) as caught:
        opener(response, state, ec.trust())
    assert caught.value.code == ErrorCode.ERROR_CODE_UNKNOWN_XID


@ANSWERS
def test_a_revoked_certificate_of_the_merchant_is_not_its_word(ec: Certified, kind: str) -> None:
    # The merchant's ID pins who it is; the certificate must still be one its CA stands by.
    renewed = _renewed(ec)
    serial = x509.load_der_x509_certificate(renewed.signature_cert).serial_number
    trust = ec.trust()
    bci, crls = ec.world.publish(2, {ec.world.brand.merchant_ca.ca.thumbprint: [serial]})
    trust.update_revocation(bci, crls)
    response, state, opener = _answer(_shop(ec), kind, payloads=(_payload(),), merchant=renewed)
    refused(ErrorCode.ERROR_CODE_REVOKED_CERTIFICATE, opener, response, state, trust)
    response, state, opener = _error_answer(_shop(ec), kind, renewed)
    with pytest.raises(ProtocolError) as caught:
        opener(response, state, trust)
    assert not isinstance(caught.value, PeerError)
    assert caught.value.code == ErrorCode.ERROR_CODE_REVOKED_CERTIFICATE


@ANSWERS
def test_a_purchase_recorded_without_its_merchants_id_keeps_to_its_certificate(
    ec: Certified, kind: str
) -> None:
    shop = _shop(ec)
    response, state, opener = _answer(shop, kind, payloads=(_payload(),))
    assert len(opener(response, _without_merchant_id(state), ec.trust()).payloads) == 1
    response, state, opener = _answer(shop, kind, payloads=(_payload(),), merchant=_renewed(ec))
    reason = refused(
        ErrorCode.ERROR_CODE_INVALID_CERTIFICATE, opener, response, _without_merchant_id(state),
        ec.trust(),
    )  # fmt: skip
    assert "unexpected party" in reason
    response, state, opener = _error_answer(shop, kind, _renewed(ec))
    with pytest.raises(ProtocolError) as caught:
        opener(response, _without_merchant_id(state), ec.trust())
    assert not isinstance(caught.value, PeerError)
    assert caught.value.code == ErrorCode.ERROR_CODE_INVALID_CERTIFICATE
