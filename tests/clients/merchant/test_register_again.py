"""A merchant whose signature certificate has ended or been revoked registers again, with
new keys, as ``serve``'s refusal advises; one whose certificate is still live does not.
Against the real bank and its CA.

Before, ``register`` refused while any version of the merchant's keys held a certificate
("already certified ... (renew instead)"), and the Merchant CA refuses a renewal signed
under an ended or revoked certificate: such a merchant had no command that worked, while
``serve`` advised it to register again.
"""

from __future__ import annotations

import shlex
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import cast

import pytest

from cli.main import build_parser
from cli.main import main as setpay
from clients.errors import ConfigError
from clients.merchant import registration_again
from clients.merchant.config import load as load_merchant_config
from clients.merchant.registration import KEY_EXCHANGE_LABEL, PENDING_FILE, SIGNATURE_LABEL
from clients.merchant.runtime import SIGNATURE_REMEDY, Merchant
from hsm.uri import open_backend
from setcore.encoding import thumbprint
from setcore.errors import ErrorCode, ProtocolError
from setcore.freshness import now_ms
from setcore.pki.bci import RevocationUnavailable
from setcore.pki.certificate import load_certificate
from setcore.pki.extensions import read_kem, read_merchant_data
from setcore.pki.issuance import IssuingCA, issue_merchant
from setcore.pki.roles import CertificateUsage
from setcore.pki.truststore import TrustStore
from tests.clients.bank_support import RunningBank, configure_merchant, new_wallet
from tests.clients.cli_support import run_cli
from tests.clients.test_purchase_flow import buy, offer

APPROVED = "AUTH_CODE_APPROVED"
#: (label, version, certified) of every key version, oldest first.
Versions = list[tuple[str, int, bool]]


def _registered(bank: RunningBank, directory: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    configure_merchant(bank, directory, directory.name)
    status, out, err = run_cli(["merchant", "--dir", str(directory), "register"], capsys)
    assert (status, err) == (0, "")
    assert out.startswith(f"registered {directory.name}: ")
    return directory


def _versions(directory: Path) -> Versions:
    backend = open_backend(load_merchant_config(directory).keys_uri())
    try:
        return sorted(
            (key.label, key.version, backend.certificate(key) is not None)
            for key in backend.list_keys()
        )
    finally:
        backend.close()


def _certificate(directory: Path, label: str, version: int = 1) -> bytes:
    backend = open_backend(load_merchant_config(directory).keys_uri())
    try:
        der = backend.certificate(backend.get(label, version))
    finally:
        backend.close()
    assert der is not None
    return der


def _certified_at(
    bank: RunningBank, directory: Path, at: datetime, label: str = SIGNATURE_LABEL
) -> None:
    """The key ``label`` (by default the signature key) certified by the brand's Merchant
    CA from ``at`` for two days, in place of the certificate it was issued."""
    backend = open_backend(load_merchant_config(directory).keys_uri())
    try:
        key = backend.get(label)
        der = backend.certificate(key)
        assert der is not None
        issued = load_certificate(der)
        data = read_merchant_data(issued)
        assert data is not None
        usage = (
            CertificateUsage.SIGNATURE if label == SIGNATURE_LABEL
            else CertificateUsage.KEY_EXCHANGE
        )  # fmt: skip
        mca = bank.pki.mca
        replaced = issue_merchant(
            IssuingCA(bank.pki.backend, mca.signature_key, mca.signature_cert,
                      (bank.pki.root_der,)),
            key.public_key, usage, data, kem=read_kem(issued), at=at,
            lifetime=timedelta(days=2),
        )  # fmt: skip
        backend.store_certificate(key, replaced)
    finally:
        backend.close()


def _ended(bank: RunningBank, directory: Path) -> None:
    """Both certificates ended yesterday, here and in ca.db, as the Merchant CA sees them
    once they have: it registers the ID again only when none of its certificates is live
    (and ``register`` judges the key-exchange one before making anything)."""
    for label in (SIGNATURE_LABEL, KEY_EXCHANGE_LABEL):
        _certified_at(bank, directory, datetime.now(UTC) - timedelta(days=3), label)
    db = sqlite3.connect(bank.config.path(bank.config.ca_db), timeout=30)
    try:
        with db:
            db.execute(
                "UPDATE certificates SET not_after_ms = ? WHERE subject = ?",
                (now_ms() - 86_400_000, directory.name),
            )
    finally:
        db.close()


def _revoked_by_the_operator(bank: RunningBank, directory: Path) -> None:
    """Both certificates revoked with ``setpay ca revoke``, and the CA serving the data."""
    config = str(bank.config.base_dir / "setpay.toml")
    for label in (SIGNATURE_LABEL, KEY_EXCHANGE_LABEL):
        thumb = thumbprint(_certificate(directory, label)).hex()
        assert setpay(["ca", "revoke", "--config", config, "--thumb", thumb]) == 0
    bank.authority.watcher.check(force=True)


def _refused(directory: Path) -> str:
    merchant = Merchant.open(load_merchant_config(directory))
    try:
        with pytest.raises(ConfigError) as refused:
            merchant.serve()
    finally:
        merchant.close()
    return str(refused.value)


def _advised(refusal: str, directory: Path, command: str) -> list[str]:
    """The command a refusal names between backquotes, checked by the real parser."""
    argv = shlex.split(refusal.split("`")[1])
    assert argv[0] == "setpay"
    args = build_parser().parse_args(argv[1:])  # a command that exists, as typed
    assert (args.command, args.merchant_command, args.dir) == ("merchant", command, directory)
    return argv[1:]


def _account_file(bank: RunningBank, directory: Path) -> Path:
    """The settlement account id the bank handed out, in an owner-only file."""
    path = directory.parent / f"{directory.name}.account"
    path.write_text(bank.ledger.merchant_account(directory.name).account_id + "\n")
    path.chmod(0o600)
    return path


def _registers_again_as_advised(
    bank: RunningBank, directory: Path, capsys: pytest.CaptureFixture[str], new_version: int = 2
) -> None:
    refusal = _refused(directory)
    assert refusal.endswith(
        "the Merchant CA refuses a renewal signed under it too: register this merchant "
        f"again, with new keys, with `setpay merchant --dir {shlex.quote(str(directory))} "
        "register --account-file FILE`, FILE holding the settlement account id the bank "
        "handed out for it (the Merchant CA registers the ID again once none of its "
        "certificates is live: ended, or revoked by its operator), then start it again"
    )
    argv = _advised(refusal, directory, "register")
    argv[argv.index("FILE")] = str(_account_file(bank, directory))
    status, out, err = run_cli(argv, capsys)
    assert (status, err) == (0, "")
    assert out.startswith(f"registered {directory.name}: signature certificate ")
    # New versions of both keys, the old ones kept with their certificates.
    assert _versions(directory) == [
        (label, version, True)
        for label in (KEY_EXCHANGE_LABEL, SIGNATURE_LABEL)
        for version in range(1, new_version + 1)
    ]
    assert not (directory / PENDING_FILE).exists()


def _serves_and_authorizes(bank: RunningBank, directory: Path, new_version: int = 2) -> None:
    merchant = Merchant.open(load_merchant_config(directory))
    try:
        port = merchant.serve()
        assert port > 0
        assert merchant.credentials.signature_key.version == new_version
        wallet = new_wallet(
            bank, directory.parent / f"{directory.name}-wallet", f"127.0.0.1:{port}"
        )
        try:
            record = buy(wallet, offer(merchant, 1200))
        finally:
            wallet.close()
        assert (record.completion, record.auth_code) == (
            "COMPLETION_CODE_AUTHORIZATION_PERFORMED", APPROVED,
        )  # fmt: skip
    finally:
        merchant.close()


def test_a_merchant_whose_certificates_ended_registers_again(
    bank: RunningBank, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Its key-exchange certificate ended too: register makes both keys anew."""
    directory = _registered(bank, tmp_path / "m-again-ended", capsys)
    _ended(bank, directory)
    _registers_again_as_advised(bank, directory, capsys)
    _serves_and_authorizes(bank, directory)


def test_a_merchant_whose_certificates_were_revoked_registers_again(
    bank: RunningBank, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = _registered(bank, tmp_path / "m-again-revoked", capsys)
    _revoked_by_the_operator(bank, directory)
    _registers_again_as_advised(bank, directory, capsys)
    _serves_and_authorizes(bank, directory)


def test_a_merchant_whose_signature_certificate_is_live_is_refused_and_makes_nothing(
    bank: RunningBank, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = _registered(bank, tmp_path / "m-again-live", capsys)
    before = _versions(directory)
    until = load_certificate(_certificate(directory, SIGNATURE_LABEL)).not_valid_after_utc
    account = _account_file(bank, directory)
    status, out, err = run_cli(
        ["merchant", "--dir", str(directory), "register", "--account-file", str(account)], capsys
    )
    assert (status, out) == (1, "")
    assert err == (
        f"setpay merchant: {SIGNATURE_LABEL} v1 is already certified, until "
        f"{until:%Y-%m-%d %H:%M} UTC, and not revoked: this merchant is registered, renew "
        f"instead (`setpay merchant --dir {shlex.quote(str(directory))} renew`); register "
        "makes new keys only once that certificate has ended or been revoked\n"
    )
    _advised(err, directory, "renew")
    assert _versions(directory) == before
    assert not (directory / PENDING_FILE).exists()


def test_a_key_exchange_certificate_revoked_alone_is_still_renewed_not_registered(
    bank: RunningBank, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Only the signature certificate's state lets register run: a renewal, signed under
    it, mends the key-exchange one."""
    directory = _registered(bank, tmp_path / "m-again-kex", capsys)
    before = _versions(directory)
    config = str(bank.config.base_dir / "setpay.toml")
    thumb = thumbprint(_certificate(directory, KEY_EXCHANGE_LABEL)).hex()
    assert setpay(["ca", "revoke", "--config", config, "--thumb", thumb]) == 0
    bank.authority.watcher.check(force=True)
    status, _, err = run_cli(["merchant", "--dir", str(directory), "register"], capsys)
    assert status == 1 and "already certified" in err and "renew instead" in err
    assert _versions(directory) == before


def test_a_signature_certificate_not_valid_yet_is_put_back_not_registered_again(
    bank: RunningBank, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Refused by peers as EXPIRED_CERTIFICATE too, but it has not ended: ``serve``
    advises putting back the one issued, and ``register`` refuses, making nothing."""
    directory = _registered(bank, tmp_path / "m-again-early", capsys)
    _certified_at(bank, directory, datetime.now(UTC) + timedelta(days=2))
    refusal = _refused(directory)
    assert "(ERROR_CODE_EXPIRED_CERTIFICATE: " in refusal
    assert refusal.endswith(f"so the merchant does not serve on it: {SIGNATURE_REMEDY}")
    before = _versions(directory)
    status, _, err = run_cli(["merchant", "--dir", str(directory), "register"], capsys)
    assert status == 1 and f"{SIGNATURE_LABEL} v1 is already certified, until " in err
    assert _versions(directory) == before


class _StaleData:
    """A trust store whose revocation data is no longer current but lists the certificate."""

    def verify_chain(self, *judged: object) -> None:
        raise RevocationUnavailable("the BCI is past its window")

    def judge_chain(self, *judged: object) -> None:
        raise ProtocolError(ErrorCode.ERROR_CODE_REVOKED_CERTIFICATE, "serial listed")


def test_register_reads_stale_data_that_lists_the_certificate_as_serve_does() -> None:
    """Else serve would advise register ("revoked") and register renew ("not revoked")."""
    trust = cast(TrustStore, _StaleData())
    assert registration_again._revoked(trust, b"certificate", ())
