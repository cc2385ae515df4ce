"""Certificate objects anyone reaching a token without its PIN can create under a setpay
key's CKA_ID (certificates are public objects, and setpay's show the ids).

The wallet and the merchant keep their SET certificates beside their keys on the token
and take a version that holds one as certified (``clients.identity.certified_versions``):
a certificate of another key must never pass for the key's, and two of the key's own
public key are refused rather than guessed between. One of its own public key, alone,
the token cannot tell from the CA's: it is returned, and fails every chain check.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from hsm.base import KeyAlgorithm, KeyHandle, KeyUsage, PublicKey
from hsm.errors import PermanentBackendError
from hsm.pkcs11 import Pkcs11Backend
from hsm.token_objects import certificates_of

from .testbed import SOFTHSM_MODULE, SoftToken, pkcs11_tool

# Run in a process of its own that never logs in (login state belongs to the process):
# an X.509 certificate object, a public one as setpay's own, under the given CKA_ID.
_PLANT = """
import sys
import pkcs11
from cryptography import x509
from pkcs11 import Attribute, CertificateType, ObjectClass
module, label, ck_id, der = sys.argv[1], sys.argv[2], bytes.fromhex(sys.argv[3]), sys.argv[4]
der = bytes.fromhex(der)
subject = x509.load_der_x509_certificate(der).subject.public_bytes()
token = pkcs11.lib(module).get_token(token_label=label)
with token.open(rw=True) as session:
    session.create_object({
        Attribute.CLASS: ObjectClass.CERTIFICATE, Attribute.CERTIFICATE_TYPE: CertificateType.X_509,
        Attribute.ID: ck_id, Attribute.LABEL: "planted", Attribute.SUBJECT: subject,
        Attribute.VALUE: der, Attribute.TOKEN: True, Attribute.PRIVATE: False,
    })
"""

#: The CA of these tests: issues the certificates setpay stores.
_CA_KEY = ec.generate_private_key(ec.SECP256R1())


@pytest.fixture
def backend(token: SoftToken) -> Iterator[Pkcs11Backend]:
    """A PKCS#11 backend on a fresh token."""
    opened = Pkcs11Backend(token.config())
    yield opened
    opened.close()


def _certificate(
    public_key: PublicKey, issuer_key: ec.EllipticCurvePrivateKey, *, days_ahead: int = 0
) -> bytes:
    """A DER certificate of ``public_key`` signed by ``issuer_key``, valid from
    ``days_ahead`` days from now."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "cardholder")])
    start = datetime.now(UTC) + timedelta(days=days_ahead)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(public_key).serial_number(x509.random_serial_number())
        .not_valid_before(start).not_valid_after(start + timedelta(days=30))
        .sign(issuer_key, hashes.SHA256())
    )  # fmt: skip
    return cert.public_bytes(serialization.Encoding.DER)


def _self_signed_for_another_key() -> bytes:
    other = ec.generate_private_key(ec.SECP256R1())
    return _certificate(other.public_key(), other)


def _of_an_unknown_key_type() -> bytes:
    """A certificate whose key algorithm cryptography does not know (it fails only when
    its public key is asked for)."""
    der = _self_signed_for_another_key()
    ec_public_key = bytes.fromhex("06072a8648ce3d0201")  # OID 1.2.840.10045.2.1
    assert der.count(ec_public_key) == 1
    return der.replace(ec_public_key, bytes.fromhex("06072a8648ce3d027f"))


def plant_certificate(token: SoftToken, ck_id: bytes, der: bytes) -> None:
    """Create a certificate object under ``ck_id`` as anyone without the PIN can."""
    done = subprocess.run(
        [sys.executable, "-c", _PLANT, SOFTHSM_MODULE, token.label, ck_id.hex(), der.hex()],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr


def _signature_key(backend: Pkcs11Backend) -> KeyHandle:
    return backend.generate("cardholder-signature", KeyUsage.SIGNATURE, KeyAlgorithm.EC_P256)


@pytest.mark.integration
def test_a_certificate_of_another_key_planted_under_a_keys_id_is_not_the_keys(
    backend: Pkcs11Backend, token: SoftToken
) -> None:
    first = _signature_key(backend)
    real = _certificate(first.public_key, _CA_KEY)
    backend.store_certificate(first, real)
    # A renewal's new version, not certified yet; its id is on the token for all to see.
    renewing = _signature_key(backend)
    ck_id = backend.object_id(renewing)
    # The CA's own certificate of the first version, copied: it would pass every check of
    # the trust store, but names another key. Then one of a key of the planter's own.
    plant_certificate(token, ck_id, real)
    plant_certificate(token, ck_id, _self_signed_for_another_key())
    plant_certificate(token, ck_id, _of_an_unknown_key_type())
    # Each used to make the new version certified, by the first certificate found.
    assert backend.certificate(renewing) is None
    reopened = Pkcs11Backend(token.config())
    try:
        assert reopened.certificate(renewing) is None
    finally:
        reopened.close()
    # Once the CA's certificate is stored (replacing every certificate under the id),
    # new strangers hide it no more than they stood in for it.
    issued = _certificate(renewing.public_key, _CA_KEY)
    backend.store_certificate(renewing, issued)
    plant_certificate(token, ck_id, _self_signed_for_another_key())
    assert backend.certificate(renewing) == issued
    assert backend.certificate(first) == real


@pytest.mark.integration
def test_two_certificates_of_the_keys_own_public_key_are_refused_not_guessed_between(
    backend: Pkcs11Backend, token: SoftToken
) -> None:
    key = _signature_key(backend)
    real = _certificate(key.public_key, _CA_KEY)
    backend.store_certificate(key, real)
    ck_id = backend.object_id(key)
    # A copy of the very certificate is the same certificate.
    plant_certificate(token, ck_id, real)
    assert backend.certificate(key) == real
    # Anyone can certify a public key they know, and date the certificate as they like:
    # "the newest" would be theirs. It used to be taken when the token listed it first.
    forged = _certificate(key.public_key, ec.generate_private_key(ec.SECP256R1()), days_ahead=1)
    plant_certificate(token, ck_id, forged)
    with pytest.raises(PermanentBackendError) as refused:
        backend.certificate(key)
    message = str(refused.value)
    assert message.startswith(f"2 different certificates with CKA_ID {ck_id.hex()} on token ")
    assert "key 'cardholder-signature' v1" in message
    # The command the message gives lists them both.
    listing = pkcs11_tool(token, "--list-objects", "--type", "cert", "--id", ck_id.hex()).stdout
    assert listing.count("Certificate Object") == 3  # the copy, the stored one, the forged


def test_only_certificates_of_the_keys_own_public_key_are_its_own() -> None:
    key = KeyHandle(
        "cardholder-signature", 1, KeyUsage.SIGNATURE, KeyAlgorithm.EC_P256,
        ec.generate_private_key(ec.SECP256R1()).public_key(),
    )  # fmt: skip
    own = _certificate(key.public_key, _CA_KEY)
    strangers = [b"not a certificate", _of_an_unknown_key_type(), _self_signed_for_another_key()]
    assert certificates_of(key, [*strangers, own, own]) == [own]
    assert certificates_of(key, strangers) == []
