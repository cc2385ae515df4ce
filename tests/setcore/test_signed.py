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
from setcore.signed import (
    low_s,
    open_signed,
    sign,
    sign_detached,
    verify_detached,
    verify_signature,
)
from setpay.v1 import crypto_pb2

from .conftest import Party
from .refusals import code_name

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
    assert code_name(exc) == "ERROR_CODE_SIGNATURE_FAILURE"


def test_signature_under_another_content_type_fails(merchant: Party) -> None:
    signed = sign(merchant.backend, merchant.sig, merchant.sig_thumb, CT, b"tbs")
    signed.content_type = "setpay.v1.PResData"
    with pytest.raises(ProtocolError) as exc:
        open_signed(signed, "setpay.v1.PResData", _resolver(merchant))
    assert code_name(exc) == "ERROR_CODE_SIGNATURE_FAILURE"
    with pytest.raises(ProtocolError) as exc:
        open_signed(signed, CT, _resolver(merchant))
    assert code_name(exc) == "ERROR_CODE_DECODING_FAILURE"


def test_algorithm_is_tied_to_the_key(merchant: Party) -> None:
    signed = sign(merchant.backend, merchant.sig, merchant.sig_thumb, CT, b"tbs")
    signed.signatures[0].alg = "ed25519"
    with pytest.raises(ProtocolError) as exc:
        open_signed(signed, CT, _resolver(merchant))
    assert code_name(exc) == "ERROR_CODE_ALGORITHM_NOT_ALLOWED"


def test_other_signer_key_fails(merchant: Party, cardholder: Party) -> None:
    signed = sign(cardholder.backend, cardholder.sig, merchant.sig_thumb, CT, b"tbs")
    with pytest.raises(ProtocolError) as exc:
        open_signed(signed, CT, _resolver(merchant))
    assert code_name(exc) == "ERROR_CODE_SIGNATURE_FAILURE"


def test_zero_or_two_signatures_refused(merchant: Party) -> None:
    signed = sign(merchant.backend, merchant.sig, merchant.sig_thumb, CT, b"tbs")
    signed.signatures.append(signed.signatures[0])
    with pytest.raises(ProtocolError) as exc:
        open_signed(signed, CT, _resolver(merchant))
    assert code_name(exc) == "ERROR_CODE_SIGNATURE_FAILURE"
    assert "exactly one signature" in exc.value.reason
    del signed.signatures[:]
    with pytest.raises(ProtocolError) as exc:
        open_signed(signed, CT, _resolver(merchant))
    assert code_name(exc) == "ERROR_CODE_SIGNATURE_FAILURE"


def test_unknown_signer_propagates_resolver_error(merchant: Party, cardholder: Party) -> None:
    signed = sign(merchant.backend, merchant.sig, b"\x00" * 32, CT, b"tbs")
    with pytest.raises(ProtocolError) as exc:
        open_signed(signed, CT, _resolver(merchant))
    assert code_name(exc) == "ERROR_CODE_MISSING_CERTIFICATE"


def test_detached_signature(cardholder: Party) -> None:
    det = sign_detached(cardholder.backend, cardholder.sig, cardholder.sig_thumb, CT, b"pi-tbs")
    verify_detached(cardholder.sig.public_key, det, CT, b"pi-tbs")
    with pytest.raises(ProtocolError) as exc:
        verify_detached(cardholder.sig.public_key, det, CT, b"pi-tbz")
    assert code_name(exc) == "ERROR_CODE_SIGNATURE_FAILURE"
    with pytest.raises(ProtocolError) as exc:
        verify_detached(cardholder.sig.public_key, det, "setpay.v1.OIData", b"pi-tbs")
    assert code_name(exc) == "ERROR_CODE_DECODING_FAILURE"
    # The same bytes under another content type: another signature input, no signature.
    with pytest.raises(ProtocolError) as exc:
        verify_signature(cardholder.sig.public_key, det.signature, "setpay.v1.OIData", b"pi-tbs")
    assert code_name(exc) == "ERROR_CODE_SIGNATURE_FAILURE"


def test_link_checks_digest_and_types() -> None:
    link = make_link("setpay.v1.AuthReqData", b"t1", "setpay.v1.PIDualSigned", b"pi")
    assert check_link(link, "setpay.v1.AuthReqData", "setpay.v1.PIDualSigned", b"pi") == b"t1"
    with pytest.raises(ProtocolError) as exc:
        check_link(link, "setpay.v1.AuthReqData", "setpay.v1.PIDualSigned", b"pj")
    assert code_name(exc) == "ERROR_CODE_DIGEST_MISMATCH"
    with pytest.raises(ProtocolError) as exc:
        check_link(link, "setpay.v1.CapReqData", "setpay.v1.PIDualSigned", b"pi")
    assert code_name(exc) == "ERROR_CODE_DECODING_FAILURE"


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
    assert code_name(exc) == "ERROR_CODE_DIGEST_MISMATCH"


def test_encb_baggage_swapped_between_requests(merchant: Party, gateway: Party) -> None:
    a, b = _encb(merchant, gateway), _encb(merchant, gateway)
    b.baggage = b"another PI"
    a.baggage = b.baggage
    with pytest.raises(ProtocolError) as exc:
        _open_encb(gateway, merchant, a)
    assert code_name(exc) == "ERROR_CODE_DIGEST_MISMATCH"


# --- encodings and keys off the allow-list -------------------------------------------


def _ecdsa_variants(der: bytes) -> dict[str, bytes]:
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

    r, s = decode_dss_signature(der)
    body = der[2:]
    return {
        "raw r||s": r.to_bytes(32, "big") + s.to_bytes(32, "big"),
        "trailing byte": der + b"\x00",
        "long-form length": bytes([0x30, 0x81, len(body)]) + body,
        "indefinite length": bytes([0x30, 0x80]) + body + b"\x00\x00",
        "truncated": der[:-1],
        "empty": b"",
    }


def test_an_ecdsa_signature_in_any_encoding_but_der_is_refused() -> None:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    from setcore.encoding import signature_input

    key = ec.generate_private_key(ec.SECP256R1())
    data = signature_input(CT, "ecdsa-p256-sha256", b"tbs")
    der = low_s(key.sign(data, ec.ECDSA(hashes.SHA256())))
    good = crypto_pb2.Signature(alg="ecdsa-p256-sha256", value=der)
    verify_signature(key.public_key(), good, CT, b"tbs")
    for name, value in _ecdsa_variants(der).items():
        bad = crypto_pb2.Signature(alg="ecdsa-p256-sha256", value=value)
        with pytest.raises(ProtocolError) as exc:
            verify_signature(key.public_key(), bad, CT, b"tbs")
        assert code_name(exc) == "ERROR_CODE_SIGNATURE_FAILURE", name


def test_keys_off_the_allow_list_are_refused_before_any_verification() -> None:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

    from setcore.encoding import signature_input

    ecdsa, rsa_pss = "ecdsa-p256-sha256", "rsa-pss-sha256"
    p384 = ec.generate_private_key(ec.SECP384R1())
    small = rsa.generate_private_key(65537, 1024)
    pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
    ec_value = p384.sign(signature_input(CT, ecdsa, b"tbs"), ec.ECDSA(hashes.SHA256()))
    rsa_value = small.sign(signature_input(CT, rsa_pss, b"tbs"), pss, hashes.SHA256())
    cases: list[tuple[PublicKey, str, bytes]] = [
        (p384.public_key(), ecdsa, ec_value),
        (small.public_key(), rsa_pss, rsa_value),
    ]
    for public_key, alg, value in cases:
        with pytest.raises(ProtocolError) as exc:
            verify_signature(public_key, crypto_pb2.Signature(alg=alg, value=value), CT, b"tbs")
        assert code_name(exc) == "ERROR_CODE_ALGORITHM_NOT_ALLOWED"


def test_a_key_of_a_type_off_the_allow_list_is_refused_for_its_type() -> None:
    # Every way in filters key types first, with reasons of its own (a certificate's
    # public_key_of, a requested key's load_public_key): this is the allow-list's own
    # answer to a key of any other type handed straight to it.
    from cryptography.hazmat.primitives.asymmetric import dsa, x25519

    dsa_key = dsa.generate_private_key(1024).public_key()
    for public_key in (dsa_key, x25519.X25519PrivateKey.generate().public_key()):
        signature = crypto_pb2.Signature(alg="ecdsa-p256-sha256", value=b"\x30\x00")
        with pytest.raises(ProtocolError) as exc:
            verify_signature(public_key, signature, CT, b"tbs")  # type: ignore[arg-type]
        assert code_name(exc) == "ERROR_CODE_ALGORITHM_NOT_ALLOWED"
        assert exc.value.reason == "unsupported public key type"


def test_rsa_signatures_are_pss_sha256_with_a_32_byte_salt_only() -> None:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding, rsa

    from setcore.encoding import signature_input

    key = rsa.generate_private_key(65537, 2048)
    data = signature_input(CT, "rsa-pss-sha256", b"tbs")

    def pss(salt: int, mgf: hashes.HashAlgorithm | None = None) -> padding.PSS:
        return padding.PSS(mgf=padding.MGF1(mgf or hashes.SHA256()), salt_length=salt)

    good = key.sign(data, pss(32), hashes.SHA256())
    verify_signature(
        key.public_key(), crypto_pb2.Signature(alg="rsa-pss-sha256", value=good), CT, b"tbs"
    )
    others = {
        "salt 0": key.sign(data, pss(0), hashes.SHA256()),
        "salt 20": key.sign(data, pss(20), hashes.SHA256()),
        "salt max": key.sign(
            data,
            padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.MAX_LENGTH),
            hashes.SHA256(),
        ),
        "mgf1 sha1": key.sign(data, pss(32, hashes.SHA1()), hashes.SHA256()),
        "pkcs1 v1.5": key.sign(data, padding.PKCS1v15(), hashes.SHA256()),
        "pss sha1": key.sign(data, pss(20, hashes.SHA1()), hashes.SHA1()),
    }
    for name, value in others.items():
        bad = crypto_pb2.Signature(alg="rsa-pss-sha256", value=value)
        with pytest.raises(ProtocolError) as exc:
            verify_signature(key.public_key(), bad, CT, b"tbs")
        assert code_name(exc) == "ERROR_CODE_SIGNATURE_FAILURE", name


def test_the_algorithm_identifier_is_inside_the_signed_bytes() -> None:
    # DESIGN.md section 3: a signature made over another algorithm's identifier (or over
    # none) does not verify, even by the same key.
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    from setcore.encoding import SIG_LABEL, signature_input

    key = ec.generate_private_key(ec.SECP256R1())
    ecdsa = ec.ECDSA(hashes.SHA256())
    # Low-S, as setpay signs: the refusals below are then for the signed bytes alone.
    right = low_s(key.sign(signature_input(CT, "ecdsa-p256-sha256", b"tbs"), ecdsa))
    verify_signature(
        key.public_key(), crypto_pb2.Signature(alg="ecdsa-p256-sha256", value=right), CT, b"tbs"
    )
    for data in (
        signature_input(CT, "ed25519", b"tbs"),
        SIG_LABEL + CT.encode() + b"\x00" + b"tbs",
    ):
        value = low_s(key.sign(data, ecdsa))
        with pytest.raises(ProtocolError) as exc:
            verify_signature(
                key.public_key(), crypto_pb2.Signature(alg="ecdsa-p256-sha256", value=value),
                CT, b"tbs",
            )  # fmt: skip
        assert code_name(exc) == "ERROR_CODE_SIGNATURE_FAILURE"
