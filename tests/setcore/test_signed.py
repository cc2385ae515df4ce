"""Signed, DetachedSignature, Link and SealedWithBaggage: round trips and rejections."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hsm.base import PublicKey
from setcore.errors import ErrorCode, ProtocolError
from setcore.link import (
    check_link,
    make_link,
    open_sealed_signed,
    open_with_baggage,
    seal_signed,
    seal_with_baggage,
)
from setcore.signed import open_signed, sign, sign_detached, verify_detached, verify_signature
from setpay.v1 import crypto_pb2

from .conftest import Party

CT = "setpay.v1.PInitResData"
MUTATION = settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def _resolver(p: Party):  # type: ignore[no-untyped-def]
    def resolve(sig: crypto_pb2.Signature, bundle: crypto_pb2.CertBundle) -> tuple[PublicKey, str]:
        if sig.signer_cert_thumb != p.sig_thumb:
            raise ProtocolError(ErrorCode.ERROR_CODE_MISSING_CERTIFICATE, "unknown signer")
        return p.sig.public_key, "signer-ok"

    return resolve


def _code(exc: pytest.ExceptionInfo[ProtocolError]) -> str:
    return ErrorCode.Name(exc.value.code)


def test_signed_round_trip(merchant: Party) -> None:
    signed = sign(merchant.backend, merchant.sig, merchant.sig_thumb, CT, b"tbs bytes")
    verified = open_signed(signed, CT, _resolver(merchant))
    assert verified.tbs == b"tbs bytes"
    assert verified.signer == "signer-ok"
    assert signed.signatures[0].alg == merchant.sig.signature_algorithm.value


@pytest.mark.parametrize("field", ["tbs", "value"])
@given(data=st.data())
@MUTATION
def test_signed_single_byte_mutation(merchant: Party, field: str, data: st.DataObject) -> None:
    signed = sign(merchant.backend, merchant.sig, merchant.sig_thumb, CT, b"tbs bytes to sign")
    target = signed if field == "tbs" else signed.signatures[0]
    original = bytearray(getattr(target, field))
    original[data.draw(st.integers(0, 1 << 16)) % len(original)] ^= data.draw(st.integers(1, 255))
    setattr(target, field, bytes(original))
    with pytest.raises(ProtocolError) as exc:
        open_signed(signed, CT, _resolver(merchant))
    assert _code(exc) == "ERROR_CODE_SIGNATURE_FAILURE"


def test_signature_under_another_content_type_fails(merchant: Party) -> None:
    signed = sign(merchant.backend, merchant.sig, merchant.sig_thumb, CT, b"tbs")
    signed.content_type = "setpay.v1.PResData"
    with pytest.raises(ProtocolError) as exc:
        open_signed(signed, "setpay.v1.PResData", _resolver(merchant))
    assert _code(exc) == "ERROR_CODE_SIGNATURE_FAILURE"
    with pytest.raises(ProtocolError) as exc:
        open_signed(signed, CT, _resolver(merchant))
    assert _code(exc) == "ERROR_CODE_DECODING_FAILURE"


def test_algorithm_is_tied_to_the_key(merchant: Party) -> None:
    signed = sign(merchant.backend, merchant.sig, merchant.sig_thumb, CT, b"tbs")
    signed.signatures[0].alg = "ed25519"
    with pytest.raises(ProtocolError) as exc:
        open_signed(signed, CT, _resolver(merchant))
    assert _code(exc) == "ERROR_CODE_ALGORITHM_NOT_ALLOWED"


def test_other_signer_key_fails(merchant: Party, cardholder: Party) -> None:
    signed = sign(cardholder.backend, cardholder.sig, merchant.sig_thumb, CT, b"tbs")
    with pytest.raises(ProtocolError) as exc:
        open_signed(signed, CT, _resolver(merchant))
    assert _code(exc) == "ERROR_CODE_SIGNATURE_FAILURE"


def test_zero_or_two_signatures_refused(merchant: Party) -> None:
    signed = sign(merchant.backend, merchant.sig, merchant.sig_thumb, CT, b"tbs")
    signed.signatures.append(signed.signatures[0])
    with pytest.raises(ProtocolError) as exc:
        open_signed(signed, CT, _resolver(merchant))
    assert _code(exc) == "ERROR_CODE_SIGNATURE_FAILURE"
    assert "exactly one signature" in exc.value.reason
    del signed.signatures[:]
    with pytest.raises(ProtocolError) as exc:
        open_signed(signed, CT, _resolver(merchant))
    assert _code(exc) == "ERROR_CODE_SIGNATURE_FAILURE"


def test_unknown_signer_propagates_resolver_error(merchant: Party, cardholder: Party) -> None:
    signed = sign(merchant.backend, merchant.sig, b"\x00" * 32, CT, b"tbs")
    with pytest.raises(ProtocolError) as exc:
        open_signed(signed, CT, _resolver(merchant))
    assert _code(exc) == "ERROR_CODE_MISSING_CERTIFICATE"


def test_detached_signature(cardholder: Party) -> None:
    det = sign_detached(cardholder.backend, cardholder.sig, cardholder.sig_thumb, CT, b"pi-tbs")
    verify_detached(cardholder.sig.public_key, det, CT, b"pi-tbs")
    with pytest.raises(ProtocolError) as exc:
        verify_detached(cardholder.sig.public_key, det, CT, b"pi-tbz")
    assert _code(exc) == "ERROR_CODE_SIGNATURE_FAILURE"
    with pytest.raises(ProtocolError) as exc:
        verify_detached(cardholder.sig.public_key, det, "setpay.v1.OIData", b"pi-tbs")
    assert _code(exc) == "ERROR_CODE_DECODING_FAILURE"
    # The same bytes under another content type: another signature input, no signature.
    with pytest.raises(ProtocolError) as exc:
        verify_signature(cardholder.sig.public_key, det.signature, "setpay.v1.OIData", b"pi-tbs")
    assert _code(exc) == "ERROR_CODE_SIGNATURE_FAILURE"


def test_link_checks_digest_and_types() -> None:
    link = make_link("setpay.v1.AuthReqData", b"t1", "setpay.v1.PIDualSigned", b"pi")
    assert check_link(link, "setpay.v1.AuthReqData", "setpay.v1.PIDualSigned", b"pi") == b"t1"
    with pytest.raises(ProtocolError) as exc:
        check_link(link, "setpay.v1.AuthReqData", "setpay.v1.PIDualSigned", b"pj")
    assert _code(exc) == "ERROR_CODE_DIGEST_MISMATCH"
    with pytest.raises(ProtocolError) as exc:
        check_link(link, "setpay.v1.CapReqData", "setpay.v1.PIDualSigned", b"pi")
    assert _code(exc) == "ERROR_CODE_DECODING_FAILURE"


def test_enc_round_trip(merchant: Party, gateway: Party) -> None:
    sealed = seal_signed(
        merchant.backend, merchant.sig, merchant.sig_thumb, CT, b"tbs", gateway.recipient,
        xid=b"x" * 32, rrpid=b"r" * 32,
    )  # fmt: skip
    verified, extra = open_sealed_signed(
        sealed, gateway.backend, gateway.kex, gateway.kex_thumb, CT, _resolver(merchant)
    )
    assert verified.tbs == b"tbs" and extra is None


def _encb(merchant: Party, gateway: Party) -> crypto_pb2.SealedWithBaggage:
    return seal_with_baggage(
        merchant.backend, merchant.sig, merchant.sig_thumb,
        "setpay.v1.AuthReqData", b"auth req data",
        "setpay.v1.PIDualSigned", b"the cardholder's sealed PI",
        gateway.recipient, xid=b"x" * 32, rrpid=b"r" * 32,
    )  # fmt: skip


def _open_encb(gateway: Party, merchant: Party, env: crypto_pb2.SealedWithBaggage) -> bytes:
    t, _ = open_with_baggage(
        env, gateway.backend, gateway.kex, gateway.kex_thumb,
        "setpay.v1.AuthReqData", "setpay.v1.PIDualSigned", _resolver(merchant),
    )  # fmt: skip
    return t


def test_encb_round_trip(merchant: Party, gateway: Party) -> None:
    assert _open_encb(gateway, merchant, _encb(merchant, gateway)) == b"auth req data"


@given(data=st.data())
@MUTATION
def test_encb_baggage_mutation_is_rejected(
    merchant: Party, gateway: Party, data: st.DataObject
) -> None:
    env = _encb(merchant, gateway)
    baggage = bytearray(env.baggage)
    baggage[data.draw(st.integers(0, 1 << 16)) % len(baggage)] ^= data.draw(st.integers(1, 255))
    env.baggage = bytes(baggage)
    with pytest.raises(ProtocolError) as exc:
        _open_encb(gateway, merchant, env)
    assert _code(exc) == "ERROR_CODE_DIGEST_MISMATCH"


def test_encb_baggage_swapped_between_requests(merchant: Party, gateway: Party) -> None:
    a, b = _encb(merchant, gateway), _encb(merchant, gateway)
    b.baggage = b"another PI"
    a.baggage = b.baggage
    with pytest.raises(ProtocolError) as exc:
        _open_encb(gateway, merchant, a)
    assert _code(exc) == "ERROR_CODE_DIGEST_MISMATCH"
