"""A bank provisioned on a SoftHSM token, as the image provisions it, for both profiles.

Every private key of the bank is on the token and nowhere else; outside tools (pkcs11-tool,
openssl) check what is on the token and what the token keys signed; the bank loads from
the token. One bank per profile for the whole module: RSA key generation on SoftHSM is
the slow part (~5 s for a bank).
"""

from __future__ import annotations

import hashlib
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from gateway.bank_pki import ALL_LABELS, load_bank_pki
from gateway.config import load
from hsm.base import KemAlgorithm, KeyUsage
from hsm.pkcs11 import Pkcs11Backend
from setcore.pki.roles import PAYMENT_GATEWAY, CertificateUsage
from tests.ca_db import published_revocation
from tests.hsm.testbed import SOFTHSM_MODULE, SoftHsm

from .commands import (
    ProvisionedBank,
    command_env,
    openssl,
    provision_bank,
    read_pin,
    run,
    token_objects,
)

# The bank's keys, by the labels DESIGN.md and docs/OPERATIONS.md name.
CA_KEYS = ("brand-root", "cca", "mca", "pca")
SIGNATURE_KEYS = ("gateway-sig",)
KEY_EXCHANGE_KEYS = ("cca-kex", "mca-kex", "pca-kex", "gateway-kex")
TOKEN_SEALING_KEYS = ("gateway-token",)
SET_LABELS = CA_KEYS + SIGNATURE_KEYS + KEY_EXCHANGE_KEYS + TOKEN_SEALING_KEYS
# The transport (TLS) root: it signs the gateway's TLS certificates (and the demo's).
TLS_ROOT = "tls-ca"
BANK_LABELS = (*SET_LABELS, TLS_ROOT)
# Certificate -> the certificate of its issuer (the two roots are self-signed).
ISSUER = {
    "brand-root": "brand-root", "cca": "brand-root", "mca": "brand-root", "pca": "brand-root",
    "cca-kex": "cca", "mca-kex": "mca", "pca-kex": "pca", "gateway-sig": "pca",
    "gateway-kex": "pca", TLS_ROOT: TLS_ROOT,
}  # fmt: skip
# What a key of each profile may do on the token (pkcs11-tool's "Usage" line).
KEY_EXCHANGE_USAGE = {"ec": "derive", "rsa": "decrypt"}
# The KEM a key-exchange certificate names: SoftHSM 2.6 decrypts OAEP with SHA-1 only.
EXPECTED_KEM = {"ec": KemAlgorithm.P256_HKDF_SHA256, "rsa": KemAlgorithm.RSA_OAEP_SHA1}
NON_EXTRACTABLE = "sensitive, always sensitive, never extractable, local"


@pytest.fixture(scope="module", params=["ec", "rsa"])
def bank(
    request: pytest.FixtureRequest, softhsm: SoftHsm, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ProvisionedBank]:
    """One bank per profile, made by deploy/provision-token.sh on a new token."""
    profile: str = request.param
    made = provision_bank(softhsm, tmp_path_factory.mktemp(f"{profile}-bank"), profile)
    yield made
    shutil.rmtree(made.token.directory, ignore_errors=True)


def _certificate(bank: ProvisionedBank, label: str) -> x509.Certificate:
    return x509.load_der_x509_certificate((bank.directory / "certs" / f"{label}.der").read_bytes())


def _spki(public_key: object) -> bytes:
    assert isinstance(public_key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey)
    return public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _token_public_key(bank: ProvisionedBank, label: str, out: Path) -> bytes:
    """The public key of ``label`` as pkcs11-tool reads it off the token (DER SPKI)."""
    env = command_env({"SETPAY_TEST_PIN": read_pin(bank.token.pin_file)})
    run(
        ["pkcs11-tool", "--module", SOFTHSM_MODULE, "--token-label", bank.token.label,
         "--login", "--pin", "env:SETPAY_TEST_PIN", "--read-object", "--type", "pubkey",
         "--label", label, "--output-file", str(out)],
        env=env,
    )  # fmt: skip
    return out.read_bytes()


@pytest.mark.integration
def test_every_bank_key_is_a_non_extractable_private_key_on_the_token(
    bank: ProvisionedBank,
) -> None:
    objects = token_objects(bank.token)
    private = {o["label"]: o for o in objects if o["type"].startswith("Private Key Object")}
    assert sorted(private) == sorted(BANK_LABELS)
    assert set(BANK_LABELS) == set(ALL_LABELS)
    kind = "EC" if bank.profile == "ec" else "RSA"
    for label, listed in private.items():
        assert listed["Access"] == NON_EXTRACTABLE, label
        if label in SET_LABELS:
            assert listed["type"].split(";")[1].strip() == kind, label
    for label in (*CA_KEYS, *SIGNATURE_KEYS, TLS_ROOT):
        assert private[label]["Usage"] == "sign", label
    for label in KEY_EXCHANGE_KEYS + TOKEN_SEALING_KEYS:
        assert private[label]["Usage"] == KEY_EXCHANGE_USAGE[bank.profile], label
    # Every certificate sits on the token beside its key, as an X.509 certificate object.
    certificates = sorted(o["label"] for o in objects if o["type"].startswith("Certificate"))
    assert certificates == sorted(ISSUER)


@pytest.mark.integration
def test_setpay_keys_list_shows_the_bank_and_the_tokens_kem(bank: ProvisionedBank) -> None:
    listing = run(["setpay", "keys", "list", "--keys", bank.token.uri()]).stdout
    rows = {line.split()[0]: line.split() for line in listing.splitlines()[1:]}
    assert sorted(rows) == sorted(BANK_LABELS)
    kem = EXPECTED_KEM[bank.profile].value
    for label in KEY_EXCHANGE_KEYS + TOKEN_SEALING_KEYS:
        assert rows[label][4] == kem, label
    # The PIN is read from its file and shown nowhere.
    assert read_pin(bank.token.pin_file) not in listing


@pytest.mark.integration
def test_nothing_key_like_is_written_under_the_bank_directory(
    bank: ProvisionedBank, tmp_path: Path
) -> None:
    token_keys = {
        _token_public_key(bank, label, tmp_path / f"{label}.der") for label in BANK_LABELS
    }
    assert not (bank.directory / "keys").exists()
    assert not (bank.directory / "keys.pass").exists()
    files = [p for p in bank.directory.rglob("*") if p.is_file()]
    tls_keys = sorted(p.relative_to(bank.directory).as_posix() for p in files if p.suffix == ".key")
    # A production init writes no merchant credential (setpay init --merchant-tls does).
    assert tls_keys == ["tls/gateway.key"]
    for path in files:
        name = path.relative_to(bank.directory).as_posix()
        data = path.read_bytes()
        if name in tls_keys:
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, name
            key = serialization.load_pem_private_key(data, None)
            # A transport key of its own, never one of the bank's keys.
            assert _spki(key.public_key()) not in token_keys, name
            leaf = x509.load_pem_x509_certificate(path.with_suffix(".pem").read_bytes())
            assert _spki(leaf.public_key()) == _spki(key.public_key()), name
            continue
        assert b"PRIVATE KEY" not in data, name
        with pytest.raises(ValueError):
            serialization.load_der_private_key(data, None)


@pytest.mark.integration
def test_certificates_certify_the_token_keys_and_verify_with_openssl(
    bank: ProvisionedBank, tmp_path: Path
) -> None:
    pem: dict[str, Path] = {}
    for label in ISSUER:
        certificate = _certificate(bank, label)
        on_token = _token_public_key(bank, label, tmp_path / f"{label}.pub.der")
        assert _spki(certificate.public_key()) == on_token, label
        pem[label] = tmp_path / f"{label}.pem"
        pem[label].write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    for label, issuer in ISSUER.items():
        root = ISSUER[issuer]
        chain = ["-untrusted", str(pem[issuer])] if issuer != root else []
        output = openssl(
            "verify", "-x509_strict", "-CAfile", str(pem[root]), *chain, str(pem[label])
        )
        assert output.strip() == f"{pem[label]}: OK", output
    # The TLS certificates chain to the transport root whose key is on the token.
    tls = bank.directory / "tls"
    tls_root = x509.load_pem_x509_certificate((tls / "root.pem").read_bytes())
    assert tls_root == _certificate(bank, TLS_ROOT)
    for chain_file in ("gateway.pem",):
        chain_pem = str(tls / chain_file)
        output = openssl(
            "verify", "-CAfile", str(tls / "root.pem"), "-untrusted", chain_pem, chain_pem
        )
        assert output.strip() == f"{chain_pem}: OK", output
    # Negative: a certificate checked against the wrong CA does not verify.
    output = openssl(
        "verify", "-CAfile", str(pem["brand-root"]), "-untrusted", str(pem["mca"]),
        str(pem["gateway-sig"]),
    )  # fmt: skip
    assert "unable to get local issuer certificate" in output, output


@pytest.mark.integration
def test_crls_signed_on_the_token_verify_with_openssl(
    bank: ProvisionedBank, tmp_path: Path
) -> None:
    _, revocation = published_revocation(bank.directory)
    by_subject = {_certificate(bank, label).subject: label for label in CA_KEYS}
    issuers_seen = set()
    everything = tmp_path / "crls.pem"
    for index, der in enumerate(revocation.crls):
        crl = x509.load_der_x509_crl(der)
        issuer = by_subject[crl.issuer]
        issuers_seen.add(issuer)
        crl_pem = tmp_path / f"crl-{index}.pem"
        crl_pem.write_bytes(crl.public_bytes(serialization.Encoding.PEM))
        with everything.open("ab") as handle:
            handle.write(crl_pem.read_bytes())
        issuer_pem = tmp_path / f"{issuer}.pem"
        issuer_pem.write_bytes(_certificate(bank, issuer).public_bytes(serialization.Encoding.PEM))
        output = openssl(
            "crl", "-in", str(crl_pem), "-CAfile", str(issuer_pem), "-noout", "-verify"
        )
        assert output.strip() == "verify OK", output
        # Negative: one byte changed at the end of the signature, and openssl refuses it.
        tampered = tmp_path / f"crl-{index}.tampered.der"
        tampered.write_bytes(der[:-1] + bytes([der[-1] ^ 1]))
        output = openssl(
            "crl", "-inform", "DER", "-in", str(tampered), "-CAfile", str(issuer_pem), "-noout",
            "-verify",
        )  # fmt: skip
        assert "verify failure" in output, output
    assert issuers_seen == set(CA_KEYS)
    # openssl's own chain check with revocation at every level accepts the gateway.
    root, pca, leaf = (tmp_path / f"{n}.chain.pem" for n in ("brand-root", "pca", "gateway-kex"))
    for path, label in ((root, "brand-root"), (pca, "pca"), (leaf, "gateway-kex")):
        path.write_bytes(_certificate(bank, label).public_bytes(serialization.Encoding.PEM))
    output = openssl(
        "verify", "-x509_strict", "-crl_check_all", "-CAfile", str(root), "-untrusted", str(pca),
        "-CRLfile", str(everything), str(leaf),
    )  # fmt: skip
    assert output.strip() == f"{leaf}: OK", output


@pytest.mark.integration
def test_bank_loads_from_the_token_with_the_tokens_kem(bank: ProvisionedBank) -> None:
    config = load(bank.directory / "setpay.toml", env={})
    assert config.keys == bank.token.uri()
    assert config.profile == bank.profile
    pki = load_bank_pki(config)
    try:
        assert isinstance(pki.backend, Pkcs11Backend)
        assert pki.trust.revocation is not None and pki.trust.revocation.sequence_num == 1
        gateway = pki.gateway
        assert gateway.key_exchange_cert is not None
        verified = pki.trust.verify_chain(
            gateway.key_exchange_cert, gateway.chain, PAYMENT_GATEWAY, CertificateUsage.KEY_EXCHANGE
        )
        # SoftHSM 2.6 decrypts OAEP with SHA-1 only: the certificate tells senders so.
        assert verified.kem is EXPECTED_KEM[bank.profile]
        assert pki.token_key.usage is KeyUsage.TOKEN_SEALING
        # A signature made on the token now verifies with the gateway certificate.
        message = b"deployment check: signed on the token"
        signature = pki.backend.sign(gateway.signature_key, message)
        public = x509.load_der_x509_certificate(gateway.signature_cert).public_key()
        if isinstance(public, ec.EllipticCurvePublicKey):
            public.verify(signature, message, ec.ECDSA(hashes.SHA256()))
        else:
            assert isinstance(public, rsa.RSAPublicKey)
            pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
            public.verify(signature, message, pss, hashes.SHA256())
        assert hashlib.sha256(message).digest() != signature
    finally:
        pki.close()
