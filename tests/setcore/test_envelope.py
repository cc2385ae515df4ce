"""Sealed, KeySealed: round trips and every single-byte mutation rejected for the right reason."""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hsm.base import KemAlgorithm, KeyHandle
from setcore.envelope import Recipient, open_sealed, open_with_key, seal, seal_with_key
from setcore.errors import ProtocolError
from setpay.v1 import crypto_pb2

from .conftest import Party
from .refusals import code_name

CT = "setpay.v1.PITBE"
EXTRA_CT = "setpay.v1.PANData"
XID = b"x" * 32
RRPID = b"r" * 32
MUTATION = settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def _seal(p: Party, extra: bool = True) -> crypto_pb2.Sealed:
    return seal(
        CT,
        b"inner plaintext",
        p.recipient,
        xid=XID,
        rrpid=RRPID,
        extra=(EXTRA_CT, b"card data") if extra else None,
    )


def _open(p: Party, sealed: crypto_pb2.Sealed, extra: bool = True) -> bytes | None:
    opened = open_sealed(
        sealed, p.backend, p.kex, p.kex_thumb, CT, extra_type=EXTRA_CT if extra else None
    )
    assert opened.plaintext == b"inner plaintext"
    return opened.extra


def test_round_trip_with_and_without_extra(gateway: Party) -> None:
    assert _open(gateway, _seal(gateway)) == b"card data"
    assert _open(gateway, _seal(gateway, extra=False), extra=False) is None


def test_kem_follows_the_key(gateway: Party) -> None:
    sealed = _seal(gateway)
    assert sealed.kem_alg == gateway.kex.kem.value  # type: ignore[union-attr]
    assert sealed.aead_alg == "aes-256-gcm"


def test_two_seals_differ(gateway: Party) -> None:
    a, b = _seal(gateway), _seal(gateway)
    assert a.kem_ciphertext != b.kem_ciphertext
    assert a.ciphertext != b.ciphertext


@pytest.mark.parametrize(
    "field",
    ["kem_ciphertext", "nonce", "ciphertext", "extra_nonce", "extra_ciphertext", "xid", "rrpid"],
)
@given(data=st.data())
@MUTATION
def test_single_byte_mutation_is_rejected(gateway: Party, field: str, data: st.DataObject) -> None:
    sealed = _seal(gateway)
    original = bytearray(getattr(sealed, field))
    index = data.draw(st.integers(0, 1 << 16), label="index") % len(original)
    flip = data.draw(st.integers(1, 255), label="xor")
    original[index] ^= flip
    setattr(sealed, field, bytes(original))
    with pytest.raises(ProtocolError) as exc:
        _open(gateway, sealed)
    assert code_name(exc) == "ERROR_CODE_DECRYPTION_FAILURE"


def test_sealed_to_another_recipient_is_refused(gateway: Party, merchant: Party) -> None:
    with pytest.raises(ProtocolError) as exc:
        _open(merchant, _seal(gateway))
    assert code_name(exc) == "ERROR_CODE_WRONG_RECIPIENT"


def test_recipient_thumb_swapped_fails_the_tag(gateway: Party, merchant: Party) -> None:
    # Addressed (in clear) to the merchant's thumb but encrypted to the gateway's key: the
    # merchant cannot decapsulate, and the thumb is bound into the associated data.
    sealed = seal(
        CT,
        b"x",
        Recipient(gateway.kex.public_key, merchant.kex_thumb, gateway.kex.kem),  # type: ignore[arg-type]
    )
    with pytest.raises(ProtocolError) as exc:
        open_sealed(sealed, merchant.backend, merchant.kex, merchant.kex_thumb, CT)
    assert code_name(exc) in {"ERROR_CODE_DECRYPTION_FAILURE", "ERROR_CODE_ALGORITHM_NOT_ALLOWED"}


def test_wrong_content_type_is_refused(gateway: Party) -> None:
    sealed = _seal(gateway)
    with pytest.raises(ProtocolError) as exc:
        open_sealed(sealed, gateway.backend, gateway.kex, gateway.kex_thumb, "setpay.v1.OIData")
    assert code_name(exc) == "ERROR_CODE_DECODING_FAILURE"


def test_relabelled_content_type_fails_the_tag(gateway: Party) -> None:
    sealed = _seal(gateway, extra=False)
    sealed.content_type = "setpay.v1.OIData"
    with pytest.raises(ProtocolError) as exc:
        open_sealed(sealed, gateway.backend, gateway.kex, gateway.kex_thumb, "setpay.v1.OIData")
    assert code_name(exc) == "ERROR_CODE_DECRYPTION_FAILURE"


def test_kem_downgrade_is_refused(gateway: Party) -> None:
    sealed = _seal(gateway)
    sealed.kem_alg = "rsa-oaep-sha1"
    with pytest.raises(ProtocolError) as exc:
        _open(gateway, sealed)
    assert code_name(exc) == "ERROR_CODE_ALGORITHM_NOT_ALLOWED"


@pytest.mark.parametrize(
    ("key_of", "kem", "reason"),
    [
        ("rsa", KemAlgorithm.P256_HKDF_SHA256, "ECDH KEM needs an EC key"),
        ("ec", KemAlgorithm.RSA_OAEP_SHA256, "RSA KEM needs an RSA key"),
    ],
)
def test_a_recipient_whose_kem_does_not_fit_its_key_is_refused_before_sealing(
    parties: dict[str, dict[str, Party]], key_of: str, kem: KemAlgorithm, reason: str
) -> None:
    # No certificate pairs them (the trust store checks a certificate's KEM against its
    # key), but a Recipient is also built by hand (token keys, tests): seal refuses it.
    key = parties[key_of]["p"].kex.public_key
    with pytest.raises(ProtocolError) as exc:
        seal(CT, b"inner plaintext", Recipient(key, os.urandom(32), kem))
    assert code_name(exc) == "ERROR_CODE_ALGORITHM_NOT_ALLOWED"
    assert exc.value.reason == reason


def test_aead_downgrade_is_refused(gateway: Party) -> None:
    sealed = _seal(gateway)
    sealed.aead_alg = "aes-128-gcm"
    with pytest.raises(ProtocolError) as exc:
        _open(gateway, sealed)
    assert code_name(exc) == "ERROR_CODE_ALGORITHM_NOT_ALLOWED"


def test_missing_or_unexpected_extra_is_refused(gateway: Party) -> None:
    with pytest.raises(ProtocolError) as exc:
        _open(gateway, _seal(gateway, extra=False), extra=True)
    assert code_name(exc) == "ERROR_CODE_DECODING_FAILURE"
    with pytest.raises(ProtocolError) as exc:
        _open(gateway, _seal(gateway, extra=True), extra=False)
    assert code_name(exc) == "ERROR_CODE_DECODING_FAILURE"


def test_extra_type_relabel_fails_the_tag(gateway: Party) -> None:
    sealed = _seal(gateway)
    sealed.extra_content_type = "setpay.v1.PANOnly"
    with pytest.raises(ProtocolError) as exc:
        open_sealed(
            sealed, gateway.backend, gateway.kex, gateway.kex_thumb, CT,
            extra_type="setpay.v1.PANOnly",
        )  # fmt: skip
    assert code_name(exc) == "ERROR_CODE_DECRYPTION_FAILURE"


def test_expected_ids_are_enforced(gateway: Party) -> None:
    with pytest.raises(ProtocolError) as exc:
        open_sealed(
            _seal(gateway, extra=False), gateway.backend, gateway.kex, gateway.kex_thumb, CT,
            xid=b"y" * 32,
        )  # fmt: skip
    assert code_name(exc) == "ERROR_CODE_WRAPPER_MSG_MISMATCH"


def test_rsa_oaep_sha1_kem_for_tokens() -> None:
    # A token that only does OAEP/SHA-1 (SoftHSM 2.6) publishes rsa-oaep-sha1 in its
    # key-exchange certificate; the sender must then use SHA-1 OAEP for the KEM.
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding, rsa

    key = rsa.generate_private_key(65537, 2048)
    sealed = seal(CT, b"p", Recipient(key.public_key(), os.urandom(32), KemAlgorithm.RSA_OAEP_SHA1))
    assert sealed.kem_alg == "rsa-oaep-sha1"
    sha1 = padding.OAEP(mgf=padding.MGF1(hashes.SHA1()), algorithm=hashes.SHA1(), label=None)
    assert len(key.decrypt(sealed.kem_ciphertext, sha1)) == 32


def test_key_sealed_round_trip_and_mutations() -> None:
    key = os.urandom(32)
    sealed = seal_with_key("setpay.v1.Signed", b"cert res", key, rrpid=RRPID)
    assert open_with_key(sealed, key, "setpay.v1.Signed", rrpid=RRPID) == b"cert res"
    with pytest.raises(ProtocolError) as exc:
        open_with_key(sealed, os.urandom(32), "setpay.v1.Signed", rrpid=RRPID)
    assert code_name(exc) == "ERROR_CODE_DECRYPTION_FAILURE"
    with pytest.raises(ProtocolError) as exc:
        open_with_key(sealed, key, "setpay.v1.Signed", rrpid=b"other")
    assert code_name(exc) == "ERROR_CODE_UNKNOWN_RRPID"
    tampered = crypto_pb2.KeySealed()
    tampered.CopyFrom(sealed)
    tampered.ciphertext = bytes([sealed.ciphertext[0] ^ 1]) + sealed.ciphertext[1:]
    with pytest.raises(ProtocolError) as exc:
        open_with_key(tampered, key, "setpay.v1.Signed", rrpid=RRPID)
    assert code_name(exc) == "ERROR_CODE_DECRYPTION_FAILURE"


# --- ids in clear: checked before any key is used ------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [("xid", b"x" * 70000), ("rrpid", b"r" * 70000), ("xid", b"x" * 31), ("rrpid", b"r" * 33)],
    ids=["xid-70000", "rrpid-70000", "xid-31", "rrpid-33"],
)
def test_an_id_of_another_length_is_refused_before_decapsulation(
    gateway: Party, monkeypatch: pytest.MonkeyPatch, field: str, value: bytes
) -> None:
    calls: list[bytes] = []
    decapsulate = gateway.backend.decapsulate

    def counting(key: KeyHandle, kem: KemAlgorithm, ciphertext: bytes) -> bytes:
        calls.append(ciphertext)
        return decapsulate(key, kem, ciphertext)

    monkeypatch.setattr(gateway.backend, "decapsulate", counting)
    _open(gateway, _seal(gateway))
    assert len(calls) == 1  # the double counts what the real backend does
    sealed = _seal(gateway)
    setattr(sealed, field, value)  # anyone can: the ids travel outside the AEAD
    with pytest.raises(ProtocolError) as exc:
        _open(gateway, sealed)
    assert code_name(exc) == "ERROR_CODE_DECODING_FAILURE"
    assert len(calls) == 1


def test_an_envelope_bound_to_no_ids_still_opens(gateway: Party) -> None:
    sealed = seal(CT, b"inner plaintext", gateway.recipient)
    assert open_sealed(sealed, gateway.backend, gateway.kex, gateway.kex_thumb, CT).plaintext


def test_an_opened_envelope_does_not_show_its_plaintexts(gateway: Party) -> None:
    # The extra part of a PI is the PANData: a repr in a log line or a traceback's locals
    # must not carry the card number.
    from setcore.pan import random_pan
    from setpay.v1 import purchase_pb2

    digits = random_pan("411111").reveal()
    pan_data = purchase_pb2.PANData(
        content_type=EXTRA_CT, pan=digits, card_expiry="203012"
    ).SerializeToString()
    sealed = seal(CT, b"inner plaintext", gateway.recipient, extra=(EXTRA_CT, pan_data))
    opened = open_sealed(
        sealed, gateway.backend, gateway.kex, gateway.kex_thumb, CT, extra_type=EXTRA_CT
    )
    assert opened.extra == pan_data
    for text in (repr(opened), str(opened), f"{opened}", str([opened])):
        assert digits not in text
        assert "inner plaintext" not in text


# --- malformed envelopes: refused before or at decapsulation, never opened -----------


@pytest.mark.parametrize("field", ["nonce", "extra_nonce"])
@pytest.mark.parametrize("length", [0, 11, 13, 16])
def test_a_nonce_of_another_length_is_refused(gateway: Party, field: str, length: int) -> None:
    sealed = _seal(gateway)
    setattr(sealed, field, os.urandom(length))
    with pytest.raises(ProtocolError) as exc:
        _open(gateway, sealed)
    assert code_name(exc) == "ERROR_CODE_DECRYPTION_FAILURE"


def test_an_ephemeral_point_not_in_uncompressed_form_is_refused() -> None:
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    from hsm.base import KeyUsage
    from hsm.software import SoftwareBackend

    backend = SoftwareBackend.ephemeral()
    key = backend.import_key("kex", KeyUsage.KEY_EXCHANGE, ec.generate_private_key(ec.SECP256R1()))
    assert key.kem is KemAlgorithm.P256_HKDF_SHA256
    thumb = os.urandom(32)
    recipient = Recipient(key.public_key, thumb, key.kem)
    good = seal(CT, b"p", recipient)
    point = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), good.kem_ciphertext)
    compressed = point.public_bytes(Encoding.X962, PublicFormat.CompressedPoint)
    off_curve = good.kem_ciphertext[:-1] + bytes([good.kem_ciphertext[-1] ^ 1])
    for kem_ciphertext in (compressed, off_curve, b"\x04" + bytes(64), b""):
        sealed = crypto_pb2.Sealed()
        sealed.CopyFrom(good)
        sealed.kem_ciphertext = kem_ciphertext
        with pytest.raises(ProtocolError) as exc:
            open_sealed(sealed, backend, key, thumb, CT)
        assert code_name(exc) == "ERROR_CODE_DECRYPTION_FAILURE"


@pytest.mark.parametrize("seed_bytes", [0, 16, 31, 33, 64])
def test_an_rsa_seed_of_another_length_is_refused(seed_bytes: int) -> None:
    # The seed is the whole input keying material of an RSA envelope: a short one is a
    # weak key, whoever chose it.
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding, rsa

    from hsm.base import KeyUsage
    from hsm.software import SoftwareBackend

    backend = SoftwareBackend.ephemeral()
    private = rsa.generate_private_key(65537, 2048)
    key = backend.import_key("kex", KeyUsage.KEY_EXCHANGE, private)
    assert key.kem is KemAlgorithm.RSA_OAEP_SHA256
    thumb = os.urandom(32)
    sealed = seal(CT, b"p", Recipient(private.public_key(), thumb, key.kem))
    oaep = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)
    sealed.kem_ciphertext = private.public_key().encrypt(os.urandom(seed_bytes), oaep)
    with pytest.raises(ProtocolError) as exc:
        open_sealed(sealed, backend, key, thumb, CT)
    assert code_name(exc) == "ERROR_CODE_DECRYPTION_FAILURE"
