"""A merchant whose signature certificate has ended or been revoked, but whose
key-exchange certificate is still live, is refused by ``register`` before anything is
made, and told to have the acquirer revoke that certificate first; once revoked, it
registers again. Against the real bank and its CA.

Before, ``register`` judged only the signature certificate: it made new versions of both
keys and sent its CertReq, and the Merchant CA, which registers a merchant ID again only
once none of its certificates is live, refused it with a bare REJECTED_BY_AGENT, leaving
the new keys uncertified (more of them at each try); ``serve`` advised ``register``.
"""

from __future__ import annotations

import shlex
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from cli.main import build_parser
from cli.main import main as setpay
from clients.merchant.registration import KEY_EXCHANGE_LABEL, PENDING_FILE, SIGNATURE_LABEL
from setcore.encoding import thumbprint
from setcore.freshness import now_ms
from setcore.pki.certificate import load_certificate
from tests.clients.bank_support import RunningBank
from tests.clients.cli_support import run_cli
from tests.clients.merchant.test_register_again import (
    _account_file,
    _certificate,
    _certified_at,
    _refused,
    _registered,
    _registers_again_as_advised,
    _serves_and_authorizes,
    _versions,
)

#: The ca.db tables a Me-AqCInit or a CertReq adds rows to: a session, a stored answer,
#: a request record.
CA_TABLES = ("sessions", "responses", "requests")


def _ca_rows(bank: RunningBank) -> tuple[int, ...]:
    db = sqlite3.connect(bank.config.path(bank.config.ca_db), timeout=30)
    try:
        return tuple(
            db.execute(f"SELECT count(*) FROM {table}").fetchone()[0] for table in CA_TABLES
        )
    finally:
        db.close()


def _bank_config(bank: RunningBank) -> str:
    return str(bank.config.base_dir / "setpay.toml")


def _revoke(bank: RunningBank, der: bytes) -> None:
    assert (
        setpay(["ca", "revoke", "--config", _bank_config(bank), "--thumb", thumbprint(der).hex()])
        == 0
    )
    bank.authority.watcher.check(force=True)


def _live_named(directory: Path, *live: tuple[str, int]) -> str:
    """How a refusal names the certificates ``live`` (label, version) still live."""
    named = []
    for label, version in live:
        der = _certificate(directory, label, version)
        until = load_certificate(der).not_valid_after_utc
        thumb = ":".join(f"{b:02X}" for b in thumbprint(der))
        named.append(
            f"{label} v{version} (certificate {thumbprint(der).hex()[:8]}, until "
            f"{until:%Y-%m-%d %H:%M} UTC: `setpay ca revoke --config BANK_CONFIG --thumb "
            f"{thumb}`)"
        )
    return (
        "the Merchant CA registers this merchant ID again only once none of its "
        f"certificates is live, and these have neither ended nor been revoked: "
        f"{'; '.join(named)}; ask the acquirer to revoke each, BANK_CONFIG being the "
        "bank's setpay.toml"
    )


def _kex_named(directory: Path) -> tuple[str, bytes]:
    """How a refusal names the live key-exchange certificate v1, and that certificate."""
    return _live_named(directory, (KEY_EXCHANGE_LABEL, 1)), _certificate(
        directory, KEY_EXCHANGE_LABEL
    )


def _revocation_advised(bank: RunningBank, refusal: str, der: bytes) -> list[str]:
    """The revocation a refusal names between its first backquotes, checked by the real
    parser: it names ``der`` and nothing else; with the bank's configuration put in."""
    argv = shlex.split(refusal.split("`")[1])
    assert argv[0] == "setpay"
    args = build_parser().parse_args(argv[1:])
    assert (args.command, args.ca_command, args.thumb, args.serial) == (
        "ca", "revoke", thumbprint(der), None,
    )  # fmt: skip
    argv[argv.index("BANK_CONFIG")] = _bank_config(bank)
    return argv[1:]


def _refused_before_anything_is_made(
    bank: RunningBank, directory: Path, capsys: pytest.CaptureFixture[str], why: str
) -> str:
    """``register`` refused, naming the live key-exchange certificate; no key version
    made, nothing sent to the CA, nothing pending. The refusal."""
    versions, rows = _versions(directory), _ca_rows(bank)
    named, _ = _kex_named(directory)
    account = _account_file(bank, directory)
    status, out, err = run_cli(
        ["merchant", "--dir", str(directory), "register", "--account-file", str(account)], capsys
    )
    # In one comparison, so that a failure shows the error, the keys and the CA's rows.
    assert (status, out, err, _versions(directory), _ca_rows(bank)) == (
        1, "",
        f"setpay merchant: {SIGNATURE_LABEL} v1 has {why}, but {named}; then run this "
        "register command again (no keys were made)\n",
        [(KEY_EXCHANGE_LABEL, 1, True), (SIGNATURE_LABEL, 1, True)],
        rows,
    )  # fmt: skip
    assert versions == _versions(directory)
    assert not (directory / PENDING_FILE).exists()
    return err


def _serve_advises_revoking_first(directory: Path) -> str:
    """``serve``'s refusal names the revocation before the registration."""
    refusal = _refused(directory)
    named, _ = _kex_named(directory)
    register = f"`setpay merchant --dir {shlex.quote(str(directory))} register --account-file FILE`"
    assert refusal.endswith(
        f"the Merchant CA refuses a renewal signed under it too; {named}; then register this "
        f"merchant again, with new keys, with {register}, FILE holding the settlement account "
        "id the bank handed out for it, then start it again"
    )
    return refusal


def test_a_signature_certificate_revoked_alone_is_refused_until_the_kex_one_is(
    bank: RunningBank, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """(a) refused, making and sending nothing; (b) the advised revocation done, it
    registers again and the Merchant CA takes it."""
    directory = _registered(bank, tmp_path / "m-kex-live", capsys)
    _revoke(bank, _certificate(directory, SIGNATURE_LABEL))
    refusal = _refused_before_anything_is_made(bank, directory, capsys, "been revoked")
    advice = _serve_advises_revoking_first(directory)
    _, kex = _kex_named(directory)
    argv = _revocation_advised(bank, refusal, kex)
    assert argv == _revocation_advised(bank, advice.split("too; ", 1)[1], kex)
    assert setpay(argv) == 0
    bank.authority.watcher.check(force=True)
    _registers_again_as_advised(bank, directory, capsys)
    _serves_and_authorizes(bank, directory)


def test_a_signature_certificate_ended_while_the_kex_one_is_live_is_refused(
    bank: RunningBank, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """(c) ended is judged as revoked is: the key-exchange certificate still blocks."""
    directory = _registered(bank, tmp_path / "m-kex-ended", capsys)
    _certified_at(bank, directory, datetime.now(UTC) - timedelta(days=3))
    _refused_before_anything_is_made(bank, directory, capsys, "ended")
    _serve_advises_revoking_first(directory)


def test_a_kex_certificate_ended_is_not_live_and_register_goes_ahead(
    bank: RunningBank, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The signature certificate revoked, the key-exchange one ended (here, and in ca.db
    as the Merchant CA sees it once it has): nothing is live, serve advises register
    alone, and register goes ahead."""
    directory = _registered(bank, tmp_path / "m-kex-ended-too", capsys)
    _revoke(bank, _certificate(directory, SIGNATURE_LABEL))
    issued = thumbprint(_certificate(directory, KEY_EXCHANGE_LABEL))
    _certified_at(bank, directory, datetime.now(UTC) - timedelta(days=3), KEY_EXCHANGE_LABEL)
    db = sqlite3.connect(bank.config.path(bank.config.ca_db), timeout=30)
    try:
        with db:
            db.execute(
                "UPDATE certificates SET not_after_ms = ? WHERE thumb = ?",
                (now_ms() - 86_400_000, issued),
            )
    finally:
        db.close()
    _registers_again_as_advised(bank, directory, capsys)
    _serves_and_authorizes(bank, directory)


def test_after_a_renewal_every_version_still_live_is_named_and_revoking_them_frees_the_id(
    bank: RunningBank, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A renewal revokes nothing: with the newest signature certificate revoked, the
    first versions are live too, and the CA counts them. ``register`` names all three,
    each with its revocation, making nothing; once they are revoked as advised, the
    Merchant CA takes the registration (before, the one revocation named was followed,
    and the CA refused the request made with new keys)."""
    directory = _registered(bank, tmp_path / "m-kex-renewed", capsys)
    status, out, err = run_cli(["merchant", "--dir", str(directory), "renew"], capsys)
    assert (status, err) == (0, ""), (out, err)
    _revoke(bank, _certificate(directory, SIGNATURE_LABEL, 2))
    versions, rows = _versions(directory), _ca_rows(bank)
    account = _account_file(bank, directory)
    register = ["merchant", "--dir", str(directory), "register", "--account-file", str(account)]
    status, out, err = run_cli(register, capsys)
    live = ((SIGNATURE_LABEL, 1), (KEY_EXCHANGE_LABEL, 2), (KEY_EXCHANGE_LABEL, 1))
    assert (status, err, _versions(directory), _ca_rows(bank)) == (
        1,
        f"setpay merchant: {SIGNATURE_LABEL} v2 has been revoked, but "
        f"{_live_named(directory, *live)}; then run this register command again (no keys "
        "were made)\n",
        versions,
        rows,
    )
    assert _refused(directory).endswith(
        f"{_live_named(directory, *live)}; then register this merchant again, with new keys, "
        f"with `setpay merchant --dir {shlex.quote(str(directory))} register --account-file "
        "FILE`, FILE holding the settlement account id the bank handed out for it, then start "
        "it again"
    )
    for advised, (label, version) in zip(err.split("`")[1::2], live, strict=True):
        der = _certificate(directory, label, version)
        assert setpay(_revocation_advised(bank, f"`{advised}`", der)) == 0
    bank.authority.watcher.check(force=True)
    _registers_again_as_advised(bank, directory, capsys, new_version=3)
    _serves_and_authorizes(bank, directory, new_version=3)
