"""Renewing the gateway's keys in the Payment Gateway CA's last day, and on a host whose
clock is behind the CA's beginning.

Within a day of the CA's end a renewal is refused while the gateway's certificates stand
until that end (renewed ones would end then too: ``test_gateway_renewal_ended_ca``). It
was refused too when they no longer stand, revoked or ended, on a bank whose start
refuses to serve and says to renew the gateway's keys: the bank could not serve for the
hours the CA had left. It now runs there, and when the current certificates end before
the CA, warning that the renewed ones end with the CA.

A renewal at a time before the CA's certificate begins (the host's clock behind, just
after ``setpay init``) was told the CA "no longer stands ... a CA cannot be renewed": it
is told the clock is behind. So is one on a host whose clock is behind the gateway's
certificates (renewed on another host): it replaced, as refused by peers, certificates
that stood for every peer with a right clock.

A last-day renewal that stopped between its two renames left the new key-exchange
certificate and the old signature one, both standing until the CA's end, and the new
signature certificate live in ca.db, held by no file: run again, as its message says,
the renewal was refused, and that certificate stayed live. It now counts as a gain: the
renewal revokes it and renews. The warning says how much a last-day renewal gains.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gateway.bank_errors import BankIncomplete
from gateway.bank_pki import (
    BankPki,
    ProvisioningError,
    load_bank_pki,
    open_ca_store,
    unused_gateway_certificates,
)
from gateway.ca.publishing import revoke
from gateway.config import BankConfig
from gateway.gateway_renewal import RenewalHalfInstalled, renew_gateway_keys
from setcore.pki.certificate import load_certificate
from setcore.pki.issuance import CA_LIFETIME, END_ENTITY_LIFETIME

from .renewal_support import (
    A_DAY,
    pca_end,
    renewal_state,
    revoke_certificate,
    stopped_bank,
)

# How long the CA has left in these tests.
LEFT = timedelta(hours=12)


def _revoke_gateway_kex(config: BankConfig) -> None:
    """The gateway's key-exchange key compromised: its certificate revoked."""
    revoke_certificate(config, _gateway_kex, judge_presented=False)


def _gateway_kex(pki: BankPki) -> bytes:
    kex = pki.gateway.key_exchange_cert
    assert kex is not None
    return kex


def _revoked(config: BankConfig) -> None:
    """Renewed two days before the CA's end (its certificates end with it), then the
    key-exchange certificate revoked."""
    renew_gateway_keys(config, at=pca_end(config) - 2 * A_DAY)
    _revoke_gateway_kex(config)


def _ended(config: BankConfig) -> None:
    """Never renewed since ``setpay init``: its certificates ended years ago."""


def _unheld(config: BankConfig) -> list[bytes]:
    """The live certificates ca.db records for the gateway's keys that no file holds."""
    pki = load_bank_pki(config, judge_presented=False)
    try:
        store = open_ca_store(config)
        try:
            return [cert.thumb for cert in unused_gateway_certificates(store, pki)]
        finally:
            store.close()
    finally:
        pki.close()


def _half_installed(config: BankConfig, monkeypatch: pytest.MonkeyPatch) -> None:
    """A renewal whose signature certificate's rename fails (the disk full), and putting
    the key-exchange one back too: it stops with the new key-exchange certificate and the
    old signature certificate in place (``RenewalHalfInstalled``)."""
    certs = config.path(config.certs_dir)
    real_replace, real_open = os.replace, os.open

    def sig_rename_fails(source: str | Path, target: str | Path) -> None:
        if Path(target) == certs / "gateway-sig.der":
            raise OSError(errno.ENOSPC, "No space left on device")
        real_replace(source, target)

    def putting_back_fails(path: str | Path, flags: int, mode: int = 0o777) -> int:
        if str(path).endswith(".old"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_open(path, flags, mode)

    with monkeypatch.context() as patched:
        patched.setattr(os, "replace", sig_rename_fails)
        patched.setattr(os, "open", putting_back_fails)
        with pytest.raises(RenewalHalfInstalled, match=r"kex\.der renewed, gateway-sig\.der as"):
            renew_gateway_keys(config)


def _gateway_ends(config: BankConfig) -> list[datetime]:
    certs = config.path(config.certs_dir)
    return [
        load_certificate((certs / name).read_bytes()).not_valid_after_utc
        for name in ("gateway-sig.der", "gateway-kex.der")
    ]


@pytest.mark.parametrize("spoil", [_revoked, _ended], ids=["revoked", "ended"])
def test_in_the_last_day_a_bank_told_to_renew_is_renewed_and_starts(
    tmp_path: Path, spoil: Callable[[BankConfig], None], caplog: pytest.LogCaptureFixture
) -> None:
    config = stopped_bank(tmp_path / "bank", datetime.now(UTC) - CA_LIFETIME + LEFT)
    spoil(config)
    with pytest.raises(BankIncomplete, match="renew the gateway's keys with"):
        load_bank_pki(config).close()
    current = min(_gateway_ends(config))
    renewal = renew_gateway_keys(config)
    assert renewal.key_exchange.version == renewal.signature.version
    ends = pca_end(config)
    assert _gateway_ends(config) == [ends, ends]  # the hours the CA has left
    load_bank_pki(config).close()  # starts: peers accept what it presents
    assert "renewing the gateway's keys although the Payment Gateway CA's" in caplog.text
    assert "is refused by peers" in caplog.text
    # What it gains: revoked ones ended with the CA already, ended ones years ago.
    gained = (
        f"still end at {ends:%Y-%m-%d %H:%M:%S} UTC, the CA's end"
        if current == ends
        else f"end moves from {current:%Y-%m-%d %H:%M:%S} UTC to {ends:%Y-%m-%d %H:%M:%S}"
        " UTC, the CA's end"
    )
    assert (current == ends) is (spoil is _revoked)
    assert gained in caplog.text


def test_in_the_last_day_certificates_ending_before_the_ca_are_renewed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """They stand, but end 6 h before the CA: the renewed ones serve those 6 h."""
    config = stopped_bank(tmp_path / "bank", datetime.now(UTC) - CA_LIFETIME + LEFT)
    ends = pca_end(config)
    renew_gateway_keys(config, at=ends - END_ENTITY_LIFETIME - timedelta(hours=6))
    assert max(_gateway_ends(config)) == ends - timedelta(hours=6)
    load_bank_pki(config).close()  # they stand
    renew_gateway_keys(config)
    assert _gateway_ends(config) == [ends, ends]
    six_before = ends - timedelta(hours=6)
    assert f"the current certificates end at {six_before:%Y-%m-%d %H:%M:%S} UTC" in caplog.text
    moves = f"end moves from {six_before:%Y-%m-%d %H:%M:%S} UTC to {ends:%Y-%m-%d %H:%M:%S} UTC"
    assert moves in caplog.text


def test_in_the_last_day_a_revoked_gateway_ca_is_still_refused(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The gateway's certificates fall with their CA, but renewing does not mend that:
    refused as under a revoked CA, nothing made, no warning that it renews."""
    config = stopped_bank(tmp_path / "bank", datetime.now(UTC) - CA_LIFETIME + LEFT)
    revoke_certificate(config, lambda pki: pki.pca.signature_cert, judge_presented=False)
    before = renewal_state(config)
    with pytest.raises(ProvisioningError, match="certificate no longer stands"):
        renew_gateway_keys(config)
    assert renewal_state(config) == before
    # Refused for the CA before the last day's check is asked whether renewing gains.
    assert "renewing the gateway's keys" not in caplog.text


def test_a_renewal_before_the_ca_begins_says_the_clock_is_behind(tmp_path: Path) -> None:
    """Just after ``setpay init`` on a host whose clock is 6 min behind (a notBefore is
    backdated 5 min): the remedy is the clock, not a CA that "cannot be renewed"."""
    config = stopped_bank(tmp_path / "bank", datetime.now(UTC))
    before = renewal_state(config)
    with pytest.raises(ProvisioningError) as refused:
        renew_gateway_keys(config, at=datetime.now(UTC) - timedelta(minutes=6))
    message = str(refused.value)
    assert message.startswith("the Payment Gateway CA's certificate begins at")
    assert "this host's clock is behind" in message
    assert "cannot be renewed" not in message
    assert message.endswith("nothing was renewed")
    assert renewal_state(config) == before


def test_a_renewal_within_the_backdating_still_runs(tmp_path: Path) -> None:
    """The check's edge: 4 min behind, after the CA's backdated beginning."""
    config = stopped_bank(tmp_path / "bank", datetime.now(UTC))
    renewal = renew_gateway_keys(config, at=datetime.now(UTC) - timedelta(minutes=4))
    assert (renewal.signature.version, renewal.key_exchange.version) == (2, 2)


def test_in_the_last_day_a_half_installed_renewal_is_finished(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Renewed with its key-exchange certificate revoked, the renewal stops between its
    renames: both files in place stand until the CA's end, and the new signature
    certificate is live in ca.db, held by no file. Run again, as its message says, it
    revokes that certificate and renews both keys."""
    config = stopped_bank(tmp_path / "bank", datetime.now(UTC) - CA_LIFETIME + LEFT)
    _revoked(config)
    _half_installed(config, monkeypatch)
    ends = pca_end(config)
    assert _gateway_ends(config) == [ends, ends]  # both stand until the CA's end
    load_bank_pki(config).close()  # the bank starts on it
    stray = _unheld(config)
    assert len(stray) == 1
    caplog.clear()
    renewal = renew_gateway_keys(config)
    assert (renewal.signature.version, renewal.key_exchange.version) == (4, 4)
    assert _unheld(config) == []
    store = open_ca_store(config)
    try:
        with store.read() as tx:
            assert tx.is_revoked(stray[0])
    finally:
        store.close()
    assert _gateway_ends(config) == [ends, ends]
    load_bank_pki(config).close()
    assert "ca.db records 1 live certificate(s) of the gateway's keys that no file" in (caplog.text)
    assert f"still end at {ends:%Y-%m-%d %H:%M:%S} UTC, the CA's end" in caplog.text
    assert f"revoked the gateway's signature certificate {stray[0].hex()}" in caplog.text


def test_in_the_last_day_certificates_ending_apart_are_renewed_by_the_first_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A renewal that stopped between its renames in the last day, its stray signature
    certificate revoked by hand: the key-exchange certificate ends with the CA, the
    signature one 6 h before. Renewing gains those 6 h: judged by the first end."""
    config = stopped_bank(tmp_path / "bank", datetime.now(UTC) - CA_LIFETIME + LEFT)
    ends = pca_end(config)
    renew_gateway_keys(config, at=ends - END_ENTITY_LIFETIME - timedelta(hours=6))
    _half_installed(config, monkeypatch)
    six_before = ends - timedelta(hours=6)
    assert _gateway_ends(config) == [six_before, ends]
    pki = load_bank_pki(config, judge_presented=False)
    try:
        store = open_ca_store(config)
        try:
            for thumb in _unheld(config):
                revoke(store, pki.authority_keys(), thumb=thumb)  # `setpay ca revoke`
        finally:
            store.close()
    finally:
        pki.close()
    assert _unheld(config) == []
    caplog.clear()
    renew_gateway_keys(config)
    assert _gateway_ends(config) == [ends, ends]
    assert f"the current certificates end at {six_before:%Y-%m-%d %H:%M:%S} UTC" in caplog.text


def test_in_the_last_day_a_host_whose_clock_is_behind_the_gateway_is_refused(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Renewed on a host whose clock is right: its certificates stand until the CA's end.
    A host 10 min behind (past the 5 min a notBefore is backdated) sees them not yet
    valid: told its clock is behind, it replaces nothing."""
    config = stopped_bank(tmp_path / "bank", datetime.now(UTC) - CA_LIFETIME + LEFT)
    renew_gateway_keys(config)
    before = renewal_state(config)
    caplog.clear()
    behind = datetime.now(UTC) - timedelta(minutes=10)
    with pytest.raises(ProvisioningError) as refused:
        renew_gateway_keys(config, at=behind)
    message = str(refused.value)
    assert message.startswith("gateway-sig.der begins at")
    assert f"after the renewal's time, {behind:%Y-%m-%d %H:%M:%S} UTC" in message
    assert "this host's clock is behind" in message
    assert message.endswith("nothing was renewed")
    assert renewal_state(config) == before
    assert "renewing the gateway's keys" not in caplog.text
    # 4 min behind, within the backdating: they stand at its clock, and renewing gains
    # nothing, which it is told, not that its clock is behind.
    with pytest.raises(ProvisioningError, match="which still stand") as still:
        renew_gateway_keys(config, at=datetime.now(UTC) - timedelta(minutes=4))
    assert "clock" not in str(still.value)
    assert renewal_state(config) == before
