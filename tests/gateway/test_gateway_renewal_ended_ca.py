"""Renewing the gateway's keys once its Payment Gateway CA has ended.

A certificate never outlives its issuer, and a CA cannot be renewed: past the Payment
Gateway CA's notAfter nothing can certify a new gateway key. The renewal made two key
versions and then failed in issuing ("validity window is empty (issuer or card already
expired?)"), taking them back; at the CA's very end (within the five minutes a notBefore
is backdated by) it installed, as renewed, certificates that had already ended. It is
refused first, naming the CA's end, and makes nothing.

Within a day of that end it is refused too while the gateway's certificates stand until
that end: a minute before it, the renewal installed, as renewed, certificates lasting a
minute (they end with their issuer), renewing nothing. It still runs there when they no
longer stand (revoked, ended: the bank's start refuses to serve and says to renew) or end
before the CA: it mends the bank for the hours the CA has left. A renewal under a Payment
Gateway CA whose certificate was revoked is refused; one on a host whose clock is behind
the CA's beginning says so.
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from cli import ca
from gateway.bank_pki import ProvisioningError
from gateway.config import BankConfig
from gateway.gateway_renewal import renew_gateway_keys
from setcore.pki.certificate import load_certificate
from setcore.pki.issuance import CA_LIFETIME

from .renewal_support import (
    A_DAY,
    pca_end,
    renewal_state,
    revoke_certificate,
    stopped_bank,
)


def test_a_renewal_past_the_gateway_ca_end_is_refused_and_makes_nothing(
    tmp_path: Path,
) -> None:
    made = datetime.now(UTC) - CA_LIFETIME - timedelta(days=1)  # its CAs ended yesterday
    config = stopped_bank(tmp_path / "bank", made)
    before = renewal_state(config)
    with pytest.raises(ProvisioningError) as refused:
        renew_gateway_keys(config)
    message = str(refused.value)
    assert "Payment Gateway CA's certificate ended at" in message
    assert "nothing was renewed" in message
    assert renewal_state(config) == before


def _renewed_before_the_end(config: BankConfig, before_end: timedelta = 2 * A_DAY) -> datetime:
    """Renew the bank's gateway keys ``before_end`` before its Payment Gateway CA ends (as
    a yearly renewal may): the gateway's certificates then end with the CA (or a year
    after, if sooner). Returns the CA's end."""
    ends = pca_end(config)
    renew_gateway_keys(config, at=ends - before_end)
    return ends


REFUSED_WITHIN = {
    timedelta(0): "Payment Gateway CA's certificate ended at",
    timedelta(minutes=1): "Payment Gateway CA's certificate ends at .* in 0 h 1 min",
    A_DAY - timedelta(seconds=1): "in 23 h 59 min",
}


@pytest.mark.parametrize("before_end", sorted(REFUSED_WITHIN))
def test_a_renewal_within_a_day_of_the_gateway_ca_end_is_refused_and_makes_nothing(
    tmp_path: Path, before_end: timedelta
) -> None:
    """At the CA's notAfter, and less than a day before it while the gateway's
    certificates stand until then: a minute before, the renewal installed certificates
    lasting a minute, as renewed, replacing ones that lasted as long."""
    config = stopped_bank(tmp_path / "bank", datetime.now(UTC))
    ends = _renewed_before_the_end(config)
    before = renewal_state(config)
    with pytest.raises(ProvisioningError, match=REFUSED_WITHIN[before_end]) as refused:
        renew_gateway_keys(config, at=ends - before_end)
    assert "a CA cannot be renewed" in str(refused.value)
    if before_end:  # the current ones stand until the CA's end: the message says so
        assert "as the current ones (which still stand) do" in str(refused.value)
    assert str(refused.value).endswith("nothing was renewed")
    assert renewal_state(config) == before


@pytest.mark.parametrize("before_end", [A_DAY, timedelta(days=2)])
def test_a_day_before_the_gateway_ca_end_a_renewal_still_runs(
    tmp_path: Path, before_end: timedelta
) -> None:
    """The refusal's edge: with a day of the CA left, it still certifies (the new
    certificates end with it)."""
    config = stopped_bank(tmp_path / "bank", datetime.now(UTC))
    ends = pca_end(config)
    renewal = renew_gateway_keys(config, at=ends - before_end)
    assert (renewal.signature.version, renewal.key_exchange.version) == (2, 2)
    certs = config.path(config.certs_dir)
    for name in ("gateway-sig.der", "gateway-kex.der"):
        issued = load_certificate((certs / name).read_bytes())
        assert issued.not_valid_after_utc == ends  # clipped to its issuer's end


def test_the_command_says_why_and_exits_1(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``setpay ca renew-gateway`` on a bank whose Payment Gateway CA ends in an hour."""
    made = datetime.now(UTC) - CA_LIFETIME + timedelta(hours=1)
    config = stopped_bank(tmp_path / "bank", made)
    _renewed_before_the_end(config)  # its gateway certificates stand until the CA's end
    # The command reads the bank's ports from the environment, as an operator's would.
    monkeypatch.setenv("SETPAY_LISTEN", config.listen)
    monkeypatch.setenv("SETPAY_CA_LISTEN", config.ca_listen)
    before = renewal_state(config)
    parser = argparse.ArgumentParser(prog="setpay")
    ca.add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(
        ["ca", "renew-gateway", "--config", str(tmp_path / "bank/setpay.toml")]
    )
    capsys.readouterr()
    code = ca.run(args)
    captured = capsys.readouterr()
    assert (code, captured.out) == (1, "")
    assert captured.err.startswith(
        "setpay ca renew-gateway: the Payment Gateway CA's certificate ends at"
    )
    assert "in 0 h 59 min" in captured.err or "in 1 h 0 min" in captured.err
    assert captured.err.endswith("nothing was renewed\n")
    assert renewal_state(config) == before


def test_a_renewal_under_a_revoked_gateway_ca_is_refused_and_makes_nothing(
    tmp_path: Path,
) -> None:
    """Its certificates would be refused by every peer, as the bank's start says: it made
    two key versions, recorded two certificates and installed them, as renewed."""
    config = stopped_bank(tmp_path / "bank", datetime.now(UTC))
    revoke_certificate(config, lambda pki: pki.pca.signature_cert)
    before = renewal_state(config)
    with pytest.raises(ProvisioningError) as refused:
        renew_gateway_keys(config)
    message = str(refused.value)
    assert message.startswith("the Payment Gateway CA's certificate no longer stands (")
    assert "REVOKED_CERTIFICATE" in message
    assert message.endswith("a CA cannot be renewed; nothing was renewed")
    assert renewal_state(config) == before
