"""The CAs' key-exchange certificates last as long as the CAs' certificates, and a bank
warns at start about one that ends within a month.

``setpay init`` issued them for a year (END_ENTITY_LIFETIME) and nothing renewed them: a
year after a bank was made, no wallet or merchant could register and nothing said why.
Real parts: banks made by ``init_bank`` in a software keystore, loaded as a bank process
loads them.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509

from gateway.bank_pki import load_bank_pki
from gateway.config import load
from gateway.gateway_renewal import renew_gateway_keys
from gateway.provisioning import init_bank
from setcore.pki.issuance import CA_LIFETIME


def _certs(directory: Path, label: str) -> x509.Certificate:
    return x509.load_der_x509_certificate((directory / "certs" / f"{label}.der").read_bytes())


@pytest.mark.parametrize("label", ["cca", "mca", "pca"])
def test_a_new_banks_ca_key_exchange_certificate_lasts_as_long_as_its_ca(
    tmp_path_factory: pytest.TempPathFactory, label: str
) -> None:
    directory = tmp_path_factory.mktemp("bank") / "bank"
    init_bank(directory, env={})
    ca, kex = _certs(directory, label), _certs(directory, f"{label}-kex")
    assert kex.not_valid_after_utc == ca.not_valid_after_utc


def test_a_bank_warns_at_start_of_ca_certificates_ending_within_a_month(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    made = datetime.now(UTC) - CA_LIFETIME + timedelta(days=10)
    result = init_bank(tmp_path / "bank", env={}, at=made)
    config = load(result.config_path, env={})
    # The gateway's certificates made then ended long ago: a bank does not start on them
    # (gateway.bank_presented), and renewing them mends that.
    renew_gateway_keys(config)
    caplog.clear()  # the renewal loads the bank too, and warns as a start does
    with caplog.at_level(logging.WARNING, logger="setpay.bank"):
        load_bank_pki(config).close()
    ending = [r.getMessage() for r in caplog.records if "from then on that CA" in r.getMessage()]
    assert len(ending) == 6  # three CAs, each its certificate and its key-exchange one
    assert any(
        m.startswith("setpay Cardholder CA") and "its key-exchange certificate ends in 9 days" in m
        for m in ending
    ), ending


def test_a_fresh_bank_warns_of_nothing_ending(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    result = init_bank(tmp_path / "bank", env={})
    config = load(result.config_path, env={})
    with caplog.at_level(logging.WARNING, logger="setpay.bank"):
        load_bank_pki(config).close()
    assert not [r for r in caplog.records if "from then on that CA" in r.getMessage()]
