"""``register`` counts a certificate ended as the Merchant CA does, whose clock may be up to
``CLOCK_SKEW`` behind the merchant's: one whose notAfter passed less than that ago is
still live unless revoked, and ``register`` refuses, before anything is made, naming the
moment (notAfter plus ``CLOCK_SKEW``, UTC) after which it may register; ``still_live``
judges the other versions so, and ``serve`` advises the same. Against the real bank and
its CA.

Before, a certificate was ended once its notAfter was past by the merchant's clock: a
merchant a little ahead of the CA, registering just after notAfter by its own clock, made
new key versions and sent a request the CA refused (REJECTED_BY_AGENT), leaving
uncertified keys behind.
"""

from __future__ import annotations

import shlex
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import cast

import pytest

from clients.identity import read_certificates
from clients.merchant.config import load as load_merchant_config
from clients.merchant.registration import KEY_EXCHANGE_LABEL, PENDING_FILE, SIGNATURE_LABEL
from clients.merchant.registration_again import check_may_register, still_live
from clients.merchant.runtime import Merchant
from hsm.uri import open_backend
from setcore.encoding import thumbprint
from setcore.errors import ErrorCode, ProtocolError
from setcore.pki.certificate import load_certificate
from setcore.pki.issuance import CLOCK_SKEW
from setcore.pki.truststore import TrustStore
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
from tests.clients.merchant.test_register_again_kex import _ca_rows, _live_named, _revoke

#: The lifetime ``_certified_at`` gives a certificate.
LIFETIME = timedelta(days=2)


def _ended_ago(
    bank: RunningBank, directory: Path, ago: timedelta, *labels: str, ca_too: bool = False
) -> None:
    """The keys ``labels`` certified until ``ago`` before now. The Merchant CA's records
    keep the certificates it issued, live for a year, as a CA whose clock is behind sees
    them, unless ``ca_too``: then they ended ``ago`` before its clock too."""
    for label in labels:
        _certified_at(bank, directory, datetime.now(UTC) - LIFETIME - ago, label)
    if ca_too:
        ended_ms = int((datetime.now(UTC) - ago).timestamp() * 1000)
        db = sqlite3.connect(bank.config.path(bank.config.ca_db), timeout=30)
        try:
            with db:
                db.execute(
                    "UPDATE certificates SET not_after_ms = ? WHERE subject = ?",
                    (ended_ms, directory.name),
                )
        finally:
            db.close()


def _waited_for(directory: Path, *ending: tuple[str, int]) -> tuple[datetime, str]:
    """When the certificates ``ending`` (label, version) have ended by the Merchant CA's
    clock too, and how a refusal says why it waits for that."""
    named, after = [], datetime.min.replace(tzinfo=UTC)
    for label, version in ending:
        der = _certificate(directory, label, version)
        not_after = load_certificate(der).not_valid_after_utc
        after = max(after, not_after + CLOCK_SKEW)
        named.append(
            f"{label} v{version} (certificate {thumbprint(der).hex()[:8]}, ended "
            f"{not_after:%Y-%m-%d %H:%M:%S} UTC)"
        )
    return after, (
        "the Merchant CA judges whether a certificate has ended by its own clock, which may "
        f"be up to 5 minutes behind this one: it may count {' and '.join(named)} live until "
        f"{after:%Y-%m-%d %H:%M:%S} UTC, and refuse the registration"
    )


def _register(
    bank: RunningBank, directory: Path, capsys: pytest.CaptureFixture[str]
) -> tuple[int, str, str]:
    account = _account_file(bank, directory)
    return run_cli(
        ["merchant", "--dir", str(directory), "register", "--account-file", str(account)], capsys
    )


def _refused_making_nothing(
    bank: RunningBank, directory: Path, capsys: pytest.CaptureFixture[str], refusal: str
) -> None:
    """``register`` refused with ``refusal``: no key version made, nothing sent to the
    Merchant CA, nothing pending."""
    versions, rows = _versions(directory), _ca_rows(bank)
    status, out, err = _register(bank, directory, capsys)
    # In one comparison, so that a failure shows the error, the keys and the CA's rows.
    assert (status, out, err, _versions(directory), _ca_rows(bank)) == (
        1, "", f"setpay merchant: {refusal}\n", versions, rows,
    )  # fmt: skip
    assert versions == [(KEY_EXCHANGE_LABEL, 1, True), (SIGNATURE_LABEL, 1, True)]
    assert not (directory / PENDING_FILE).exists()


def test_certificates_ended_two_minutes_ago_are_refused_until_the_ca_clock_has_passed_too(
    bank: RunningBank, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Both ended 2 minutes ago here, live to the CA: refused, naming notAfter plus the
    tolerance, nothing made; ``serve`` advises registering after that moment too."""
    directory = _registered(bank, tmp_path / "m-skew-2min", capsys)
    _ended_ago(bank, directory, timedelta(minutes=2), SIGNATURE_LABEL, KEY_EXCHANGE_LABEL)
    after, wait = _waited_for(directory, (SIGNATURE_LABEL, 1), (KEY_EXCHANGE_LABEL, 1))
    _refused_making_nothing(
        bank, directory, capsys,
        f"{SIGNATURE_LABEL} v1 has ended, but {wait}; run this register command again after "
        f"{after:%Y-%m-%d %H:%M:%S} UTC (no keys were made)",
    )  # fmt: skip
    assert _refused(directory).endswith(
        "the Merchant CA refuses a renewal signed under it too: register this merchant "
        f"again, with new keys, with `setpay merchant --dir {shlex.quote(str(directory))} "
        "register --account-file FILE`, FILE holding the settlement account id the bank "
        f"handed out for it, after {after:%Y-%m-%d %H:%M:%S} UTC ({wait}), then start it again"
    )


def test_certificates_ended_six_minutes_ago_let_register_go_on(
    bank: RunningBank, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Past the tolerance, here and at the CA: ``serve`` advises registering, no moment
    named, and ``register`` goes on, as before."""
    directory = _registered(bank, tmp_path / "m-skew-6min", capsys)
    _ended_ago(
        bank, directory, timedelta(minutes=6), SIGNATURE_LABEL, KEY_EXCHANGE_LABEL, ca_too=True
    )
    _registers_again_as_advised(bank, directory, capsys)
    _serves_and_authorizes(bank, directory)


def test_a_kex_certificate_ended_two_minutes_ago_blocks_a_revoked_signature_one(
    bank: RunningBank, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``still_live`` judges the other versions with the same tolerance: the signature
    certificate revoked, the key-exchange one ended 2 minutes ago is waited for."""
    directory = _registered(bank, tmp_path / "m-skew-kex", capsys)
    _revoke(bank, _certificate(directory, SIGNATURE_LABEL))
    _ended_ago(bank, directory, timedelta(minutes=2), KEY_EXCHANGE_LABEL)
    after, wait = _waited_for(directory, (KEY_EXCHANGE_LABEL, 1))
    _refused_making_nothing(
        bank, directory, capsys,
        f"{SIGNATURE_LABEL} v1 has been revoked, but {wait}; run this register command again "
        f"after {after:%Y-%m-%d %H:%M:%S} UTC (no keys were made)",
    )  # fmt: skip


def test_a_signature_certificate_ended_two_minutes_ago_with_a_live_kex_one_names_both(
    bank: RunningBank, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The key-exchange certificate live: its revocation first, and the moment after which
    the signature one has ended at the CA too."""
    directory = _registered(bank, tmp_path / "m-skew-sig", capsys)
    _ended_ago(bank, directory, timedelta(minutes=2), SIGNATURE_LABEL)
    after, wait = _waited_for(directory, (SIGNATURE_LABEL, 1))
    _refused_making_nothing(
        bank, directory, capsys,
        f"{SIGNATURE_LABEL} v1 has ended, but {_live_named(directory, (KEY_EXCHANGE_LABEL, 1))}; "
        f"then run this register command again, after {after:%Y-%m-%d %H:%M:%S} UTC ({wait}) "
        "(no keys were made)",
    )  # fmt: skip


def test_still_live_counts_a_certificate_until_its_not_after_plus_the_tolerance(
    bank: RunningBank, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Live up to notAfter plus ``CLOCK_SKEW``, judged at notAfter; not a second later;
    and a revoked one not even within the tolerance."""
    directory = _registered(bank, tmp_path / "m-skew-edge", capsys)
    config = load_merchant_config(directory)
    chain = read_certificates(config.chain)
    merchant = Merchant.open(config)
    try:
        merchant.revocation.refresh()

        def live(at: datetime) -> list[bytes]:
            return [der for _, der in still_live(merchant.trust, merchant.backend, chain, at)]

        for label in (SIGNATURE_LABEL, KEY_EXCHANGE_LABEL):
            der = _certificate(directory, label)
            last = load_certificate(der).not_valid_after_utc + CLOCK_SKEW
            assert der in live(last), label
            assert der not in live(last + timedelta(seconds=1)), label
        kex = _certificate(directory, KEY_EXCHANGE_LABEL)
        _revoke(bank, kex)
        merchant.revocation.refresh()
        last = load_certificate(kex).not_valid_after_utc + CLOCK_SKEW
        assert live(last) == [_certificate(directory, SIGNATURE_LABEL)]
    finally:
        merchant.close()


class _RevokingAll:
    """A trust store whose revocation data lists every certificate; the moments judged."""

    def __init__(self) -> None:
        self.judged: list[datetime | None] = []

    def judge_chain(self, *judged: object) -> None:
        at = judged[-1]
        assert at is None or isinstance(at, datetime)
        self.judged.append(at)
        raise ProtocolError(ErrorCode.ERROR_CODE_REVOKED_CERTIFICATE, "serial listed")


def test_a_signature_certificate_ended_two_minutes_ago_but_revoked_lets_register_go_on(
    bank: RunningBank, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Revoked, it is not live at any CA's clock: judged at its notAfter, nothing waited
    for (the key-exchange certificate ended past the tolerance, not judged)."""
    directory = _registered(bank, tmp_path / "m-skew-revoked", capsys)
    _ended_ago(bank, directory, timedelta(minutes=2), SIGNATURE_LABEL)
    _ended_ago(bank, directory, timedelta(minutes=6), KEY_EXCHANGE_LABEL)
    config = load_merchant_config(directory)
    trust, fetched = _RevokingAll(), []
    backend = open_backend(config.keys_uri())
    try:
        check_may_register(config, backend, cast(TrustStore, trust), lambda: fetched.append(1))
    finally:
        backend.close()
    not_after = load_certificate(_certificate(directory, SIGNATURE_LABEL)).not_valid_after_utc
    assert (trust.judged, fetched) == ([not_after], [1])


def test_serve_advises_revoking_the_live_certificate_then_waiting_for_the_ending_one(
    bank: RunningBank, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The signature certificate ended 2 minutes ago, the key-exchange one is live: ``serve``
    advises the revocation first, then registering after the ending one's moment."""
    directory = _registered(bank, tmp_path / "m-skew-serve-both", capsys)
    _ended_ago(bank, directory, timedelta(minutes=2), SIGNATURE_LABEL)
    after, wait = _waited_for(directory, (SIGNATURE_LABEL, 1))
    assert _refused(directory).endswith(
        "the Merchant CA refuses a renewal signed under it too; "
        f"{_live_named(directory, (KEY_EXCHANGE_LABEL, 1))}; then register this merchant "
        f"again, with new keys, with `setpay merchant --dir {shlex.quote(str(directory))} "
        "register --account-file FILE`, FILE holding the settlement account id the bank "
        f"handed out for it, after {after:%Y-%m-%d %H:%M:%S} UTC ({wait}), then start it again"
    )
