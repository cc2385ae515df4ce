"""In the Payment Gateway CA's last day, a renewal made on a host whose clock ran ahead.

Its certificates begin after the right time, so the bank refuses to start on them ("renew
the gateway's keys"), and the renewal run again on a host whose clock is right is refused
too, since from there a host behind and a renewing host ahead look the same. The refusal
names both causes and what to do for each, and replaces nothing.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gateway.bank_errors import BankIncomplete
from gateway.bank_pki import ProvisioningError, load_bank_pki
from gateway.gateway_renewal import renew_gateway_keys
from setcore.pki.certificate import load_certificate
from setcore.pki.issuance import CA_LIFETIME

from .renewal_support import renewal_state, stopped_bank

# How long the CA has left in these tests, and how far ahead the renewing host ran.
LEFT = timedelta(hours=12)
AHEAD = timedelta(minutes=30)


def test_a_rerun_after_a_renewal_on_a_host_ahead_names_both_clocks(tmp_path: Path) -> None:
    config = stopped_bank(tmp_path / "bank", datetime.now(UTC) - CA_LIFETIME + LEFT)
    renew_gateway_keys(config, at=datetime.now(UTC) + AHEAD)  # a host 30 min ahead
    with pytest.raises(BankIncomplete, match="renew the gateway's keys"):
        load_bank_pki(config).close()
    before = renewal_state(config)
    begins = load_certificate(
        config.path(config.certs_dir).joinpath("gateway-sig.der").read_bytes()
    ).not_valid_before_utc
    with pytest.raises(ProvisioningError) as refused:
        renew_gateway_keys(config)  # the remedy the start names, on a right clock
    message = str(refused.value)
    assert message.startswith("gateway-sig.der begins at")
    assert "this host's clock is behind" in message
    assert "the renewal that made it ran on a host whose clock was ahead" in message
    assert f"start the bank once it has begun ({begins:%Y-%m-%d %H:%M:%S} UTC)" in message
    assert message.endswith("nothing was renewed")
    assert renewal_state(config) == before


def test_certificates_that_have_begun_are_not_blamed_on_a_clock(tmp_path: Path) -> None:
    """Negative: renewed 4 min ahead (within the 5 min a notBefore is backdated), the
    certificates stand at the right time, and a rerun is refused for gaining nothing,
    with no word of a clock."""
    config = stopped_bank(tmp_path / "bank", datetime.now(UTC) - CA_LIFETIME + LEFT)
    renew_gateway_keys(config, at=datetime.now(UTC) + timedelta(minutes=4))
    load_bank_pki(config).close()  # the bank starts
    before = renewal_state(config)
    with pytest.raises(ProvisioningError, match="which still stand") as still:
        renew_gateway_keys(config)
    assert "clock" not in str(still.value)
    assert renewal_state(config) == before
