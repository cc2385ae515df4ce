"""A key-exchange key is paired with the certificate its party presents only if the key
accepts the key transport the certificate names (``Credentials``): envelopes are opened
by the key's KEM, peers seal by the certificate's, and a key whose metadata says another
would accept what no CA certified."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtensionOID

from hsm.base import KemAlgorithm, KeyAlgorithm, KeyBackend, KeyHandle, KeyUsage
from hsm.software import SoftwareBackend
from setcore import credentials as credentials_module
from setcore.credentials import (
    RESTORE_REMEDY,
    Credentials,
    check_key_exchange_pair,
    older_version_remedy,
)
from setcore.errors import ConfigurationError
from setcore.pki.extensions import KEM_ALGORITHM_OID, kem_extension
from setcore.pki.issuance import key_usage
from tests.hsm.keycheck import certificate_for

RSA_KEY = rsa.generate_private_key(65537, 2048).public_key()
EC_KEY = ec.generate_private_key(ec.SECP256R1()).public_key()
#: What a refusal of the key version in use advises: nothing that loads the keys gets
#: past the check (renewals neither), and a keystore refuses a backup from before its
#: upgrade, so neither "renew the key" nor just "a backup" would do.
RESTORE = (
    "restore this version's files from a backup taken after the keystore's upgrade to "
    "this release (setpay keys upgrade-keystore; a backup from before it is refused), or, "
    "on a token whose OAEP support changed, go back to the token or module that certified "
    "the key"
)
#: A subjectAltName holding an x400Address, a general name cryptography does not model:
#: reading it raises UnsupportedGeneralNameType, which is no ValueError.
X400_NAME = x509.UnrecognizedExtension(
    ExtensionOID.SUBJECT_ALTERNATIVE_NAME, bytes.fromhex("3004a3020500")
)


@pytest.fixture
def backend() -> Iterator[KeyBackend]:
    with SoftwareBackend.ephemeral() as made:
        yield made


def _kex(kem: KemAlgorithm | None, *, rsa_key: bool = True) -> KeyHandle:
    algorithm = KeyAlgorithm.RSA_2048 if rsa_key else KeyAlgorithm.EC_P256
    public_key = RSA_KEY if rsa_key else EC_KEY
    return KeyHandle("gateway-kex", 2, KeyUsage.KEY_EXCHANGE, algorithm, public_key, kem)


def _certificate(names: x509.ExtensionType | None, *, rsa_key: bool = True) -> bytes:
    usage = key_usage(encipher=True) if rsa_key else key_usage(agree=True)
    extensions: list[tuple[x509.ExtensionType, bool]] = [(usage, True)]
    if names is not None:
        extensions.append((names, False))
    return certificate_for(RSA_KEY if rsa_key else EC_KEY, "gw", extensions=extensions)


def _credentials(backend: KeyBackend, kex: KeyHandle, kex_der: bytes) -> Credentials:
    signing = backend.generate("gateway-sig", KeyUsage.SIGNATURE, KeyAlgorithm.EC_P256)
    signs = [(key_usage(signature=True), True)]
    sig_der = certificate_for(signing.public_key, "gw", extensions=signs)
    return Credentials(backend, signing, sig_der, (), kex, kex_der)


@pytest.mark.parametrize(
    ("kem", "rsa_key"),
    [
        (KemAlgorithm.RSA_OAEP_SHA256, True),
        (KemAlgorithm.RSA_OAEP_SHA1, True),  # a token that stops at SHA-1, certified so
        (KemAlgorithm.P256_HKDF_SHA256, False),
    ],
)
def test_a_key_that_accepts_the_kem_its_certificate_names_is_paired(
    backend: KeyBackend, kem: KemAlgorithm, rsa_key: bool
) -> None:
    der = _certificate(kem_extension(kem), rsa_key=rsa_key)
    made = _credentials(backend, _kex(kem, rsa_key=rsa_key), der)
    assert made.require_key_exchange()[0].kem is kem


@pytest.mark.parametrize(
    ("kem", "names", "accepts", "said"),
    [
        # The review's downgrade: SHA-1 OAEP opened where the CA certified SHA-256.
        pytest.param(
            KemAlgorithm.RSA_OAEP_SHA1,
            kem_extension(KemAlgorithm.RSA_OAEP_SHA256),
            "rsa-oaep-sha1",
            "kemAlgorithm rsa-oaep-sha256",
            id="rsa-downgraded",
        ),
        pytest.param(
            KemAlgorithm.RSA_OAEP_SHA256,
            kem_extension(KemAlgorithm.RSA_OAEP_SHA1),
            "rsa-oaep-sha256",
            "kemAlgorithm rsa-oaep-sha1",
            id="token-oaep-changed",
        ),
        pytest.param(
            None,
            kem_extension(KemAlgorithm.RSA_OAEP_SHA256),
            "no key transport",
            "kemAlgorithm rsa-oaep-sha256",
            id="kem-dropped",
        ),
        pytest.param(
            KemAlgorithm.RSA_OAEP_SHA256, None, "rsa-oaep-sha256", "no kemAlgorithm", id="unnamed"
        ),
    ],
)
def test_a_key_whose_kem_its_certificate_does_not_name_is_refused(
    backend: KeyBackend,
    kem: KemAlgorithm | None,
    names: x509.ExtensionType | None,
    accepts: str,
    said: str,
) -> None:
    with pytest.raises(ConfigurationError) as refused:
        _credentials(backend, _kex(kem), _certificate(names))
    assert str(refused.value) == (
        f"key 'gateway-kex' v2 accepts {accepts}, but the key-exchange certificate presented "
        f"with it names {said}: the key's metadata (or its token) changed since it was "
        f"certified. Refused: {RESTORE}"
    )
    assert RESTORE_REMEDY == RESTORE


def test_the_refusal_of_an_older_version_advises_its_caller_s_remedy() -> None:
    der = _certificate(kem_extension(KemAlgorithm.RSA_OAEP_SHA256))
    command = "setpay keys delete --keys URI --label gateway-kex --version 2"
    remedy = older_version_remedy(command, "URI: the key URI")
    with pytest.raises(ConfigurationError) as refused:
        check_key_exchange_pair(_kex(KemAlgorithm.RSA_OAEP_SHA1), der, remedy)
    assert str(refused.value).endswith(
        "Refused: this is an older version, which opens only what was sealed to it before a "
        f"renewal: delete it with `{command}` (URI: the key URI) and start again, or {RESTORE}"
    )


def _duplicated_kem_extension() -> bytes:
    """A certificate whose kemAlgorithm extension is there twice: made with a brandId-like
    extension beside it, whose OID's last arc (.5) is then turned into the KEM's (.4)."""
    kem = kem_extension(KemAlgorithm.RSA_OAEP_SHA256)
    arcs = KEM_ALGORITHM_OID.dotted_string.rsplit(".", 1)[0]
    other = x509.UnrecognizedExtension(x509.ObjectIdentifier(f"{arcs}.5"), kem.value)
    der = certificate_for(
        RSA_KEY, "gw", extensions=[(key_usage(encipher=True), True), (kem, False), (other, False)]
    )
    # The second extension's OID ends in the byte 0x05, just before its value.
    at = der.rfind(b"\x05", 0, der.rfind(kem.value))
    return der[:at] + b"\x04" + der[at + 1 :]


@pytest.mark.parametrize(
    "damage", ["duplicated-extension", "x400-address", "bad-version", "not-der", "bad-kem"]
)
def test_a_certificate_whose_kem_cannot_be_read_is_refused(
    backend: KeyBackend, damage: str
) -> None:
    if damage == "duplicated-extension":
        der = _duplicated_kem_extension()
        with pytest.raises(x509.DuplicateExtension):
            _ = x509.load_der_x509_certificate(der).extensions  # as made: twice
    elif damage == "x400-address":
        # Before, it escaped as a traceback (from ``setpay merchant serve`` too).
        kem = kem_extension(KemAlgorithm.RSA_OAEP_SHA256)  # what the key accepts
        extensions = [(key_usage(encipher=True), True), (kem, False), (X400_NAME, False)]
        der = certificate_for(RSA_KEY, "gw", extensions=extensions)
        with pytest.raises(x509.UnsupportedGeneralNameType):
            _ = x509.load_der_x509_certificate(der).extensions
    elif damage == "bad-version":
        # Version 4, which X.509 never defined: cryptography's InvalidVersion, no ValueError.
        der = _certificate(kem_extension(KemAlgorithm.RSA_OAEP_SHA256))
        at = der.index(bytes.fromhex("a003020102"))
        der = der[: at + 4] + b"\x03" + der[at + 5 :]
        with pytest.raises(x509.InvalidVersion):
            x509.load_der_x509_certificate(der)
    elif damage == "not-der":
        der = b"\x30\x03\x02\x01\x00"
    else:
        der = _certificate(x509.UnrecognizedExtension(KEM_ALGORITHM_OID, b"\x0c\x05rot13"))
    with pytest.raises(ConfigurationError) as refused:
        _credentials(backend, _kex(KemAlgorithm.RSA_OAEP_SHA256), der)
    assert str(refused.value) == (
        "key 'gateway-kex' v2: the key-exchange certificate presented with it is not X.509 "
        "setpay can read (its kemAlgorithm cannot be told)"
    )


def test_the_refusal_holds_no_key_material(backend: KeyBackend) -> None:
    der = _certificate(kem_extension(KemAlgorithm.RSA_OAEP_SHA256))
    with pytest.raises(ConfigurationError) as refused:
        _credentials(backend, _kex(KemAlgorithm.RSA_OAEP_SHA1), der)
    text = str(refused.value)
    modulus = RSA_KEY.public_numbers().n
    assert format(modulus, "x")[:16] not in text.lower()
    assert str(modulus)[:16] not in text
    assert der.hex()[:16] not in text


def test_the_pair_is_checked_once_not_for_every_envelope(
    backend: KeyBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    kem = KemAlgorithm.RSA_OAEP_SHA256
    checked: list[KeyHandle] = []
    real = credentials_module.check_key_exchange_pair

    def counting(key: KeyHandle, der: bytes) -> None:
        checked.append(key)
        real(key, der)

    monkeypatch.setattr(credentials_module, "check_key_exchange_pair", counting)
    made = _credentials(backend, _kex(kem), _certificate(kem_extension(kem)))
    for _ in range(3):  # as the bank does for each request (``Bank.opening_credentials``)
        chosen = made.choosing_key_exchange(lambda thumb: made.require_key_exchange())
        assert chosen.key_exchange_for(b"x")[0] == made.key_exchange_key
    assert len(checked) == 1


def test_credentials_without_a_key_exchange_key_are_not_checked(
    backend: KeyBackend,
) -> None:
    signing = backend.generate("wallet-sig", KeyUsage.SIGNATURE, KeyAlgorithm.EC_P256)
    der = certificate_for(signing.public_key, "c", extensions=[(key_usage(signature=True), True)])
    assert Credentials(backend, signing, der).key_exchange_key is None
