"""``setpay init`` and ``load_bank_pki``: a bank directory for each profile and backend."""

from __future__ import annotations

import argparse
import errno
import shutil
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding

from cli import init
from gateway import provisioning
from gateway.bank_pki import ALL_LABELS, BankExists, bank_keys_uri, load_bank_pki
from gateway.config import load
from gateway.ledger_keys import read_ledger_keys
from gateway.provisioning import init_bank
from hsm.base import KemAlgorithm, KeyUsage
from hsm.errors import PermanentBackendError
from hsm.uri import PASSPHRASE_ENV, open_backend
from setcore.errors import ConfigurationError
from setcore.pki.roles import PAYMENT_GATEWAY, CertificateUsage
from tests.hsm.testbed import SoftToken, session_softhsm

CERTIFICATES = (
    "brand-root", "cca", "cca-kex", "mca", "mca-kex", "pca", "pca-kex", "gateway-sig",
    "gateway-kex",
)  # fmt: skip
PRIVATE_FILES = ("keys.pass", "ledger.keys", "ca.db", "tls/gateway.key")


def _init(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    parser = argparse.ArgumentParser(prog="setpay")
    init.add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["init", *argv])
    assert args.handler is init.run
    code = init.run(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _openssl_verify(*args: str) -> str:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.fail("openssl is required for these tests (Debian package: openssl)")
    done = subprocess.run(
        [openssl, "verify", *args], capture_output=True, text=True, check=False, timeout=60
    )
    return done.stdout + done.stderr


@pytest.mark.parametrize("profile", ["ec", "rsa"])
def test_init_then_load(
    profile: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(PASSPHRASE_ENV, raising=False)
    directory = tmp_path / "bank"
    code, out, err = _init([str(directory), "--profile", profile, "--brand", "testbrand"], capsys)
    assert code == 0, err
    assert f"bank created in {directory}" in out
    # The brand root's fingerprint, as openssl shows one: hex pairs joined by colons.
    root = x509.load_der_x509_certificate((directory / "certs" / "brand-root.der").read_bytes())
    fingerprint = root.fingerprint(hashes.SHA256()).hex(":").upper()
    assert f"  brand root SHA-256 {fingerprint}\n" in out
    for name in CERTIFICATES:
        assert (directory / "certs" / f"{name}.der").is_file()
    for name in PRIVATE_FILES:
        mode = stat.S_IMODE((directory / name).stat().st_mode)
        assert mode == 0o600, f"{name} has mode {mode:o}"
    config = load(directory / "setpay.toml", env={})
    assert (config.profile, config.brand_id, config.insecure) == (profile, "testbrand", False)
    assert config.keys == "soft:keys;pin-source=file:keys.pass"
    assert config.tls is not None and config.tls.cert.is_file() and config.tls.key.is_file()
    with open_backend(bank_keys_uri(config)) as backend:
        read_ledger_keys(config, backend)

    pki = load_bank_pki(config)
    try:
        assert pki.trust.revocation is not None and pki.trust.revocation.sequence_num == 1
        gateway = pki.gateway
        sig = pki.trust.verify_chain(
            gateway.signature_cert, gateway.chain, PAYMENT_GATEWAY, CertificateUsage.SIGNATURE
        )
        assert sig.subject_id == "gateway-1"
        assert gateway.key_exchange_cert is not None
        kex = pki.trust.verify_chain(
            gateway.key_exchange_cert, gateway.chain, PAYMENT_GATEWAY, "key-exchange"
        )
        expected = (
            KemAlgorithm.P256_HKDF_SHA256 if profile == "ec" else KemAlgorithm.RSA_OAEP_SHA256
        )
        assert kex.kem is expected
        assert pki.token_key.usage is KeyUsage.TOKEN_SEALING
        keys = pki.authority_keys()
        assert keys.brand_id == "testbrand"
        assert [ca.certificate_type for ca in keys.issuers[1:]] == [4, 5, 6]
    finally:
        pki.close()

    # Standard tools accept what init wrote: the gateway chains and the TLS chain.
    tls = directory / "tls"
    certs = directory / "certs"
    pem = tmp_path / "pem"
    pem.mkdir()
    for name in ("brand-root", "pca", "gateway-sig", "gateway-kex"):
        cert = x509.load_der_x509_certificate((certs / f"{name}.der").read_bytes())
        (pem / f"{name}.pem").write_bytes(cert.public_bytes(Encoding.PEM))
    for leaf in ("gateway-sig", "gateway-kex"):
        output = _openssl_verify(
            "-x509_strict", "-CAfile", str(pem / "brand-root.pem"), "-untrusted",
            str(pem / "pca.pem"), str(pem / f"{leaf}.pem"),
        )  # fmt: skip
        assert output.strip().endswith(": OK"), output
    # A plain init writes no merchant credential (``--merchant-tls``: test_init_merchant_tls).
    assert sorted(p.name for p in tls.iterdir()) == [
        "client-ca.pem",
        "gateway.key",
        "gateway.pem",
        "root.pem",
    ]
    for chain in ("gateway.pem",):
        output = _openssl_verify(
            "-CAfile", str(tls / "root.pem"), "-untrusted", str(tls / chain), str(tls / chain)
        )
        assert output.strip().endswith(": OK"), output


def test_init_refuses_an_existing_bank(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    directory = tmp_path / "bank"
    init_bank(directory, env={})
    before = {p: p.read_bytes() for p in directory.rglob("*") if p.is_file()}
    code, _, err = _init([str(directory)], capsys)
    assert code == 1
    assert "exists and is not an empty directory" in err
    after = {p: p.read_bytes() for p in directory.rglob("*") if p.is_file()}
    assert after == before


def test_init_refuses_a_backend_that_holds_a_bank(tmp_path: Path) -> None:
    first = init_bank(tmp_path / "first", env={})
    config = load(first.config_path, env={})
    shared = bank_keys_uri(config)
    with pytest.raises(BankExists):
        init_bank(tmp_path / "second", keys=shared, env={})


def _full_disk(*_: object) -> None:
    """Fails as a full disk does, on the last file ``init`` writes before the config."""
    raise OSError(errno.ENOSPC, "No space left on device")


def test_a_failed_init_leaves_no_directory_and_can_be_run_again(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # It used to leave a half-made bank (keys, certificates, ca.db, TLS keys, keys.pass)
    # that the next ``setpay init`` refused as "not an empty directory".
    monkeypatch.delenv(PASSPHRASE_ENV, raising=False)
    directory = tmp_path / "bank"
    with monkeypatch.context() as patched:
        patched.setattr(provisioning, "write_ledger_keys", _full_disk)
        code, out, err = _init([str(directory)], capsys)
    assert code == 1 and out == ""
    assert err.startswith("setpay init: ") and "No space left on device" in err
    assert not directory.exists()
    code, _, err = _init([str(directory)], capsys)
    assert code == 0, err


def test_a_failed_init_empties_the_directory_it_was_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(PASSPHRASE_ENV, raising=False)
    directory = tmp_path / "bank"
    directory.mkdir(mode=0o750)  # the operator's, made for the bank: kept, as it was
    with monkeypatch.context() as patched:
        patched.setattr(provisioning, "write_ledger_keys", _full_disk)
        with pytest.raises(OSError):
            init_bank(directory, env={})
    assert directory.is_dir() and list(directory.iterdir()) == []
    assert stat.S_IMODE(directory.stat().st_mode) == 0o750
    init_bank(directory, env={})


def test_a_failed_init_takes_its_keys_out_of_the_backend(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A key backend outside the directory (a token, here a keystore elsewhere) kept the
    # keys made before the failure, and refused every later init: "already holds a key".
    monkeypatch.setenv(PASSPHRASE_ENV, "a passphrase from the environment")
    uri = f"soft:{tmp_path / 'keystore'}"
    with monkeypatch.context() as patched:
        patched.setattr(provisioning, "write_ledger_keys", _full_disk)
        with pytest.raises(OSError):
            init_bank(tmp_path / "bank", keys=uri, env={})
    with open_backend(uri) as backend:
        assert backend.list_keys() == []
    result = init_bank(tmp_path / "bank", keys=uri, env={})
    load_bank_pki(load(result.config_path, env={})).close()


def test_a_refused_init_touches_nothing_of_the_bank_it_found(tmp_path: Path) -> None:
    # Refused for keys already in the backend: those keys are the other bank's.
    first = init_bank(tmp_path / "first", env={})
    shared = bank_keys_uri(load(first.config_path, env={}))
    with pytest.raises(BankExists):
        init_bank(tmp_path / "second", keys=shared, env={})
    assert not (tmp_path / "second").exists()
    load_bank_pki(load(first.config_path, env={})).close()


def test_passphrase_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PASSPHRASE_ENV, "a passphrase from the environment")
    result = init_bank(tmp_path / "bank", insecure=True)
    assert not (tmp_path / "bank" / "keys.pass").exists()
    config = load(result.config_path)
    assert config.keys == "soft:keys" and config.insecure
    pki = load_bank_pki(config)
    pki.close()
    monkeypatch.setenv(PASSPHRASE_ENV, "another passphrase")
    with pytest.raises(PermanentBackendError, match="wrong passphrase"):
        load_bank_pki(config)


def test_unknown_profile_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        _init([str(tmp_path / "bank"), "--profile", "dsa"], capsys)
    with pytest.raises(ConfigurationError):
        init_bank(tmp_path / "bank", profile="dsa", env={})
    assert not (tmp_path / "bank").exists()


@pytest.fixture
def token(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SoftToken]:
    made = session_softhsm(tmp_path_factory).init_token()
    yield made
    shutil.rmtree(made.directory, ignore_errors=True)


@pytest.mark.integration
def test_init_on_softhsm_records_the_tokens_kem(tmp_path: Path, token: SoftToken) -> None:
    result = init_bank(tmp_path / "bank", profile="rsa", keys=token.uri(), env={})
    assert not (tmp_path / "bank" / "keys.pass").exists()
    pki = load_bank_pki(load(result.config_path, env={}))
    try:
        kex = pki.gateway.key_exchange_cert
        assert kex is not None
        verified = pki.trust.verify_chain(kex, pki.gateway.chain, PAYMENT_GATEWAY, "key-exchange")
        # SoftHSM 2.6 does OAEP with SHA-1 only: the certificate says so to senders.
        assert verified.kem is KemAlgorithm.RSA_OAEP_SHA1
        assert {k.label for k in pki.backend.list_keys()} >= set(ALL_LABELS)
    finally:
        pki.close()
    backend = open_backend(token.uri())
    try:
        # The certificates sit beside their keys on the token.
        assert backend.certificate(backend.get("gateway-kex")) == kex
    finally:
        backend.close()


@pytest.mark.integration
def test_a_failed_init_on_softhsm_leaves_the_token_as_it_was(
    tmp_path: Path, token: SoftToken, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The keys, and the certificates stored beside them, were left on the token: a
    # retry was refused and the operator had to find and destroy them with pkcs11-tool.
    with monkeypatch.context() as patched:
        patched.setattr(provisioning, "write_ledger_keys", _full_disk)
        with pytest.raises(OSError):
            init_bank(tmp_path / "bank", profile="ec", keys=token.uri(), env={})
    assert not (tmp_path / "bank").exists()
    backend = open_backend(token.uri())
    try:
        assert backend.list_keys() == []
    finally:
        backend.close()
    result = init_bank(tmp_path / "bank", profile="ec", keys=token.uri(), env={})
    load_bank_pki(load(result.config_path, env={})).close()


def test_a_bank_in_a_directory_whose_name_has_uri_characters(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The directory went into the keystore's URI as it was: ';' split it, '%41' became
    # 'A', and init failed ("attribute 1 has no '='") or looked for its keys elsewhere.
    monkeypatch.delenv(PASSPHRASE_ENV, raising=False)
    for name in ("bank;1", "bank%41"):
        result = init_bank(tmp_path / name, env={})
        load_bank_pki(load(result.config_path, env={})).close()
        assert (tmp_path / name / "keys").is_dir()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bank%41", "bank;1"]
