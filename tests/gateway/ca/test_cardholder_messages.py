"""The cardholder's messages as the CA reads them: the envelope, its RRPID and content
type, dates by the CA's clock; and how a refusal is answered (signed, counted, or
UNAVAILABLE when the key backend cannot sign it)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from prometheus_client import CollectorRegistry

from gateway import metrics
from hsm.base import KeyUsage
from setcore.errors import ErrorCode, PeerError, ProtocolError
from setcore.freshness import new_id, now_ms
from setcore.pan import PAN
from setcore.purchase import header
from setcore.registration import ca_error
from setcore.registration_cardholder import (
    open_card_cert_response,
)
from setpay.v1 import crypto_pb2, registration_pb2

from .conftest import CARD, EXPIRY, Bank
from .flows import (
    card_request,
    new_key,
    sent_as,
    sent_digest,
    start_cardholder,
)

S = registration_pb2


def _tampered(request: S.CertRequest, change: object) -> S.CertRequest:
    sealed = crypto_pb2.Sealed.FromString(request.cert_req)
    assert callable(change)
    change(sealed)
    return S.CertRequest(header=request.header, cert_req=sealed.SerializeToString())


def test_tampered_sealed_request(ec_bank: Bank) -> None:
    session = start_cardholder(ec_bank, CARD)
    request, state = card_request(session, new_key(ec_bank, KeyUsage.SIGNATURE), CARD, EXPIRY)

    def flip(sealed: crypto_pb2.Sealed) -> None:
        body = bytearray(sealed.ciphertext)
        body[len(body) // 2] ^= 1
        sealed.ciphertext = bytes(body)

    tampered = _tampered(request, flip)
    response = ec_bank.stub.Cert(tampered)
    # Without the back key no CertRes can be addressed to the wallet: a signed SET Error,
    # about the bytes that arrived. The wallet that sent them reads the CA's refusal; the
    # one whose request was changed on the way cannot tell what the CA did with its own.
    sent = sent_as(state, tampered)
    with pytest.raises(PeerError) as caught:
        open_card_cert_response(response, sent, session.trust)
    assert caught.value.code == ErrorCode.ERROR_CODE_DECRYPTION_FAILURE
    with pytest.raises(ProtocolError) as unsure:
        open_card_cert_response(response, state, session.trust)
    assert unsure.value.code == ErrorCode.ERROR_CODE_DIGEST_MISMATCH


def test_changed_envelope_rrpid_does_not_open(ec_bank: Bank) -> None:
    session = start_cardholder(ec_bank, CARD)
    request, _ = card_request(session, new_key(ec_bank, KeyUsage.SIGNATURE), CARD, EXPIRY)
    other = new_id()

    def move(sealed: crypto_pb2.Sealed) -> None:
        sealed.rrpid = other

    changed = _tampered(request, move)
    changed.header.rrpid = other
    error = ca_error(
        ec_bank.stub.Cert(changed).error, session.trust, S.CERTIFICATE_TYPE_CARDHOLDER_CA, other,
        request=sent_digest(changed),
    )  # fmt: skip
    assert isinstance(error, PeerError)
    assert error.code == ErrorCode.ERROR_CODE_DECRYPTION_FAILURE


def test_header_rrpid_must_match_the_envelope(ec_bank: Bank) -> None:
    session = start_cardholder(ec_bank, CARD)
    request, state = card_request(session, new_key(ec_bank, KeyUsage.SIGNATURE), CARD, EXPIRY)
    request.header.rrpid = new_id()
    response = ec_bank.stub.Cert(request)
    # The CA's Error names the header's RRPID, not the wallet's: not an answer to its request.
    with pytest.raises(ProtocolError) as unknown:
        open_card_cert_response(response, state, session.trust)
    assert unknown.value.code == ErrorCode.ERROR_CODE_UNKNOWN_RRPID
    error = ca_error(
        response.error, session.trust, S.CERTIFICATE_TYPE_CARDHOLDER_CA, request.header.rrpid,
        request=sent_digest(request),
    )  # fmt: skip
    assert isinstance(error, PeerError)
    assert error.code == ErrorCode.ERROR_CODE_WRAPPER_MSG_MISMATCH


def test_stale_request_is_refused(ec_bank: Bank) -> None:
    session = start_cardholder(ec_bank, CARD)
    an_hour_ago = now_ms() - 60 * 60 * 1000
    request, state = card_request(
        session, new_key(ec_bank, KeyUsage.SIGNATURE), CARD, EXPIRY, request_date=an_hour_ago
    )
    with pytest.raises(PeerError) as caught:
        open_card_cert_response(ec_bank.stub.Cert(request), state, session.trust)
    assert caught.value.code == ErrorCode.ERROR_CODE_MESSAGE_TOO_OLD


def test_wrong_content_type(ec_bank: Bank) -> None:
    session = start_cardholder(ec_bank, CARD)
    request, state = card_request(session, new_key(ec_bank, KeyUsage.SIGNATURE), CARD, EXPIRY)

    def retype(sealed: crypto_pb2.Sealed) -> None:
        sealed.content_type = "setpay.v1.RegFormReqTBE"

    tampered = _tampered(request, retype)
    with pytest.raises(PeerError) as caught:
        sent = sent_as(state, tampered)
        open_card_cert_response(ec_bank.stub.Cert(tampered), sent, session.trust)
    assert caught.value.code == ErrorCode.ERROR_CODE_DECODING_FAILURE


def test_a_reg_form_request_is_not_a_cert_request(ec_bank: Bank) -> None:
    session = start_cardholder(ec_bank, CARD)
    from setcore.registration_cardholder import build_reg_form_request

    reg_request, _ = build_reg_form_request(session.registration.ca, PAN(CARD), session.lid_ee)
    request = S.CertRequest(header=header(), cert_req=reg_request.reg_form_req)
    response = ec_bank.stub.Cert(request)
    assert response.WhichOneof("result") == "error"
    error = ca_error(
        response.error, session.trust, S.CERTIFICATE_TYPE_CARDHOLDER_CA, request.header.rrpid,
        request=sent_digest(request),
    )  # fmt: skip
    assert isinstance(error, PeerError)
    assert error.code == ErrorCode.ERROR_CODE_DECODING_FAILURE


# The injected clocks run this far from the real one: well outside the five-minute
# freshness window, well inside the hour a session lasts.
CLOCK_OFFSET_MS = 30 * 60 * 1000


@pytest.mark.parametrize(
    ("offset", "real_date_code"),
    [
        (-CLOCK_OFFSET_MS, ErrorCode.ERROR_CODE_MESSAGE_TOO_NEW),
        (CLOCK_OFFSET_MS, ErrorCode.ERROR_CODE_MESSAGE_TOO_OLD),
    ],
)
def test_the_ca_judges_a_request_date_by_its_own_clock(
    ec_bank: Bank, offset: int, real_date_code: int
) -> None:
    """A CA with an injected clock dates CertReqs by that clock, not by the real one."""
    from gateway.bank_pki import open_ca_store
    from gateway.ca import CertificateAuthority
    from setcore.errors import ProtocolError

    store = open_ca_store(ec_bank.config)
    ca = CertificateAuthority(
        ec_bank.pki.authority_keys(), store, ec_bank.pki.trust, ec_bank.issuer,
        clock=lambda: now_ms() + offset,
    )  # fmt: skip
    try:
        session = start_cardholder(ec_bank, CARD)
        key = new_key(ec_bank, KeyUsage.SIGNATURE)
        dated_now, _ = card_request(session, key, CARD, EXPIRY)
        with pytest.raises(ProtocolError) as caught:
            ca.cert(dated_now)
        assert caught.value.code == real_date_code
        on_its_clock, state = card_request(
            session, key, CARD, EXPIRY, request_date=now_ms() + offset
        )
        body = ca.cert(on_its_clock)
    finally:
        store.close()
    # The certificate is valid from the CA's now, the CA's own from when the bank was made:
    # read the answer when both hold.
    at = datetime.fromtimestamp((now_ms() + max(offset, 0)) / 1000, tz=UTC)
    outcome = open_card_cert_response(S.CertResponse(cert_res=body), state, session.trust, at=at)
    assert outcome.complete


def test_a_refusal_is_counted_by_method_and_code(ec_bank: Bank) -> None:
    registry = CollectorRegistry()
    metrics.enable(0, registry)
    try:
        session = start_cardholder(ec_bank, CARD)
        request, _ = card_request(session, new_key(ec_bank, KeyUsage.SIGNATURE), CARD, EXPIRY)
        request.header.rrpid = new_id()  # no longer the envelope's: refused
        response = ec_bank.stub.Cert(request)
        error = ca_error(
            response.error, session.trust, S.CERTIFICATE_TYPE_CARDHOLDER_CA, request.header.rrpid,
            request=sent_digest(request),
        )  # fmt: skip
        assert isinstance(error, PeerError)
        code = ErrorCode.Name(error.code)
        labels = {"method": "Cert", "code": code}
        assert registry.get_sample_value("setpay_rpc_errors_total", labels) == 1
    finally:
        metrics.disable()


def test_a_refusal_the_key_backend_cannot_sign_is_unavailable(
    ec_bank: Bank, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Refused, and the CA's token goes away before the Error is signed: UNAVAILABLE, not
    # gRPC's UNKNOWN with the backend's own words in it.
    import grpc

    from gateway.ca import servicer
    from hsm.errors import TransientBackendError
    from setcore.registration_cardholder import build_card_c_init_request

    def token_gone(*args: object, **kwargs: object) -> None:
        raise TransientBackendError("token removed, slot 7 detail")

    monkeypatch.setattr(servicer, "build_error", token_gone)
    request, _ = build_card_c_init_request("another-brand", b"lid-ee")
    with pytest.raises(grpc.RpcError) as failed:
        ec_bank.stub.CardCInit(request)
    assert failed.value.code() == grpc.StatusCode.UNAVAILABLE  # type: ignore[attr-defined]
    assert failed.value.details() == "certificate authority key backend unavailable"  # type: ignore[attr-defined]
