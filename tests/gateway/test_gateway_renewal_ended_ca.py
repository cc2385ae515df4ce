"""Renewing the gateway's keys once its Payment Gateway CA has ended.

A certificate never outlives its issuer, and a CA cannot be renewed: past the Payment
Gateway CA's notAfter nothing can certify a new gateway key. The renewal made two key
versions and then failed in issuing ("validity window is empty (issuer or card already
expired?)"), taking them back; at the CA's very end (within the five minutes a notBefore
is backdated by) it installed, as renewed, certificates that had already ended. It is
refused first, naming the CA's end, and makes nothing.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gateway.bank_pki import ProvisioningError, load_bank_pki, open_ca_store
from gateway.config import BankConfig, load
from gateway.gateway_renewal import renew_gateway_keys
from gateway.provisioning import init_bank
from setcore.pki.certificate import load_certificate
from setcore.pki.issuance import CA_LIFETIME
from tests.ports import free_port

from .renewal_support import key_versions


def _bank(directory: Path, made_at: datetime) -> BankConfig:
    """A stopped bank made at ``made_at``, on ports nobody holds."""
    init_bank(directory, profile="ec", env={}, at=made_at)
    ports = {
        "SETPAY_LISTEN": f"127.0.0.1:{free_port()}",
        "SETPAY_CA_LISTEN": f"127.0.0.1:{free_port()}",
    }
    return load(directory / "setpay.toml", env=ports)


def _state(config: BankConfig) -> tuple[set[tuple[str, int]], dict[str, bytes], int]:
    """What a renewal could change: key versions, certificate files, ca.db's records."""
    files = {p.name: p.read_bytes() for p in config.path(config.certs_dir).iterdir()}
    store = open_ca_store(config)
    try:
        with store.read() as tx:
            recorded = len(list(tx.listed_certificates()))
    finally:
        store.close()
    return key_versions(config), files, recorded


def test_a_renewal_past_the_gateway_ca_end_is_refused_and_makes_nothing(
    tmp_path: Path,
) -> None:
    made = datetime.now(UTC) - CA_LIFETIME - timedelta(days=1)  # its CAs ended yesterday
    config = _bank(tmp_path / "bank", made)
    before = _state(config)
    with pytest.raises(ProvisioningError) as refused:
        renew_gateway_keys(config)
    message = str(refused.value)
    assert "Payment Gateway CA's certificate ended at" in message
    assert "nothing was renewed" in message
    assert _state(config) == before


@pytest.mark.parametrize(
    ("before_end", "renewed"), [(timedelta(0), False), (timedelta(days=2), True)]
)
def test_the_refusal_comes_at_the_gateway_ca_notafter(
    tmp_path: Path, before_end: timedelta, renewed: bool
) -> None:
    """The refusal's edge: at the CA's notAfter it is refused; before it the CA still
    certifies (the new certificates end with it)."""
    config = _bank(tmp_path / "bank", datetime.now(UTC))
    pki = load_bank_pki(config)
    try:
        ends = load_certificate(pki.pca.signature_cert).not_valid_after_utc
    finally:
        pki.close()
    before = _state(config)
    at = ends - before_end
    if not renewed:
        with pytest.raises(ProvisioningError, match="Payment Gateway CA's certificate ended"):
            renew_gateway_keys(config, at=at)
        assert _state(config) == before
        return
    renewal = renew_gateway_keys(config, at=at)
    assert (renewal.signature.version, renewal.key_exchange.version) == (2, 2)
    certs = config.path(config.certs_dir)
    issued = load_certificate((certs / "gateway-sig.der").read_bytes())
    assert issued.not_valid_after_utc == ends  # clipped to its issuer's end
