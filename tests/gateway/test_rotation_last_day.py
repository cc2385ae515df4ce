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
is told the clock is behind.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gateway.bank_errors import BankIncomplete
from gateway.bank_pki import ProvisioningError, load_bank_pki, open_ca_store
from gateway.ca.publishing import revoke
from gateway.config import BankConfig
from gateway.gateway_renewal import renew_gateway_keys
from setcore.encoding import thumbprint
from setcore.pki.certificate import load_certificate
from setcore.pki.issuance import CA_LIFETIME, END_ENTITY_LIFETIME

from .test_gateway_renewal_ended_ca import A_DAY, _bank, _pca_end, _state

# How long the CA has left in these tests.
LEFT = timedelta(hours=12)


def _revoke_gateway_kex(config: BankConfig) -> None:
    """The gateway's key-exchange key compromised: its certificate revoked."""
    pki = load_bank_pki(config, judge_presented=False)
    try:
        kex = pki.gateway.key_exchange_cert
        assert kex is not None
        store = open_ca_store(config)
        try:
            revoke(store, pki.authority_keys(), thumb=thumbprint(kex))
        finally:
            store.close()
    finally:
        pki.close()


def _revoked(config: BankConfig) -> None:
    """Renewed two days before the CA's end (its certificates end with it), then the
    key-exchange certificate revoked."""
    renew_gateway_keys(config, at=_pca_end(config) - 2 * A_DAY)
    _revoke_gateway_kex(config)


def _ended(config: BankConfig) -> None:
    """Never renewed since ``setpay init``: its certificates ended years ago."""


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
    config = _bank(tmp_path / "bank", datetime.now(UTC) - CA_LIFETIME + LEFT)
    spoil(config)
    with pytest.raises(BankIncomplete, match="renew the gateway's keys with"):
        load_bank_pki(config).close()
    renewal = renew_gateway_keys(config)
    assert renewal.key_exchange.version == renewal.signature.version
    ends = _pca_end(config)
    assert _gateway_ends(config) == [ends, ends]  # the hours the CA has left
    load_bank_pki(config).close()  # starts: peers accept what it presents
    assert "renewing the gateway's keys although the Payment Gateway CA's" in caplog.text
    assert "is refused by peers" in caplog.text


def test_in_the_last_day_certificates_ending_before_the_ca_are_renewed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """They stand, but end 6 h before the CA: the renewed ones serve those 6 h."""
    config = _bank(tmp_path / "bank", datetime.now(UTC) - CA_LIFETIME + LEFT)
    ends = _pca_end(config)
    renew_gateway_keys(config, at=ends - END_ENTITY_LIFETIME - timedelta(hours=6))
    assert max(_gateway_ends(config)) == ends - timedelta(hours=6)
    load_bank_pki(config).close()  # they stand
    renew_gateway_keys(config)
    assert _gateway_ends(config) == [ends, ends]
    assert "the current certificates end at" in caplog.text


def test_in_the_last_day_a_revoked_gateway_ca_is_still_refused(tmp_path: Path) -> None:
    """The gateway's certificates fall with their CA, but renewing does not mend that:
    refused as under a revoked CA, nothing made, no warning that it renews."""
    config = _bank(tmp_path / "bank", datetime.now(UTC) - CA_LIFETIME + LEFT)
    pki = load_bank_pki(config, judge_presented=False)
    try:
        store = open_ca_store(config)
        try:
            revoke(store, pki.authority_keys(), thumb=thumbprint(pki.pca.signature_cert))
        finally:
            store.close()
    finally:
        pki.close()
    before = _state(config)
    with pytest.raises(ProvisioningError, match="certificate no longer stands"):
        renew_gateway_keys(config)
    assert _state(config) == before


def test_a_renewal_before_the_ca_begins_says_the_clock_is_behind(tmp_path: Path) -> None:
    """Just after ``setpay init`` on a host whose clock is 6 min behind (a notBefore is
    backdated 5 min): the remedy is the clock, not a CA that "cannot be renewed"."""
    config = _bank(tmp_path / "bank", datetime.now(UTC))
    before = _state(config)
    with pytest.raises(ProvisioningError) as refused:
        renew_gateway_keys(config, at=datetime.now(UTC) - timedelta(minutes=6))
    message = str(refused.value)
    assert message.startswith("the Payment Gateway CA's certificate begins at")
    assert "this host's clock is behind" in message
    assert "cannot be renewed" not in message
    assert message.endswith("nothing was renewed")
    assert _state(config) == before


def test_a_renewal_within_the_backdating_still_runs(tmp_path: Path) -> None:
    """The check's edge: 4 min behind, after the CA's backdated beginning."""
    config = _bank(tmp_path / "bank", datetime.now(UTC))
    renewal = renew_gateway_keys(config, at=datetime.now(UTC) - timedelta(minutes=4))
    assert (renewal.signature.version, renewal.key_exchange.version) == (2, 2)
