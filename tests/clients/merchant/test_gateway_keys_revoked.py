"""The gateway certificates a merchant hands out, judged by its trust store at each use.

The bank renews the gateway's keys for a compromised key, then revokes the older
key-exchange certificate: once the merchant's revocation feed installs that CRL, its
``GatewayKeys`` asks for the gateway's certificates again at the next ``current``, not
when the hour's TTL ends. Wallets would refuse a PInitRes naming the revoked one, and the
gateway every AuthReq sealed to it (WRONG_RECIPIENT, final).
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from cli import ca
from clients.errors import TransportError
from clients.merchant.gateway_client import FETCH_HOLD_OFF_SECONDS, GatewayKeys
from gateway.bank_pki import open_ca_store
from gateway.ca.publishing import current_revocation
from setcore.authorization import open_auth_response
from setcore.errors import ProtocolError
from setcore.gateway_admin import GatewayCertificate, build_pcert_request, open_pcert_response
from setcore.pki.truststore import TrustStore
from setpay.v1 import authorization_pb2
from tests.clients.merchant.test_gateway_keys import Clock
from tests.gateway.actors import (
    TEST_BIN,
    Merchant,
    auth_request,
    purchase,
    register_cardholder,
    register_merchant,
)
from tests.gateway.test_gateway_renewal import Served


@dataclass
class Counted:
    """The merchant's PCertReq, as the merchant's runtime wires it, counting each call;
    ``down`` makes the next calls fail as an unreachable gateway does."""

    served: Served
    merchant: Merchant
    calls: int = 0
    down: bool = False

    def __call__(self) -> GatewayCertificate:
        self.calls += 1
        if self.down:
            raise TransportError("gateway GatewayCertificates", "UNAVAILABLE")
        request, state = build_pcert_request(
            self.merchant.credentials, [("setpay", TEST_BIN)], self.merchant.merchant_id
        )
        answer = open_pcert_response(
            self.served.world.gateway.GatewayCertificates(request),
            self.merchant.credentials, state, self.merchant.trust,
        )  # fmt: skip
        return answer.items[0]


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    bank = Served(tmp_path / "bank")
    try:
        yield bank
    finally:
        bank.stop()


def _revoke(served: Served, thumb: bytes, *trust_stores: TrustStore) -> None:
    """``setpay ca revoke`` of the certificate ``thumb`` names, then the parties' feeds
    installing the CRL it published (as each does within a minute)."""
    parser = argparse.ArgumentParser(prog="setpay")
    ca.add_parser(parser.add_subparsers(dest="command", required=True))
    config = str(served.directory / "setpay.toml")
    assert (
        ca.run(parser.parse_args(["ca", "revoke", "--config", config, "--thumb", thumb.hex()])) == 0
    )
    store = open_ca_store(served.config())
    try:
        published = current_revocation(store)
    finally:
        store.close()
    assert published is not None
    _, data = published
    for trust in trust_stores:
        assert trust.update_revocation(data.bci, data.crls)


def test_a_revoked_key_exchange_certificate_is_fetched_again_at_once(served: Served) -> None:
    merchant = register_merchant(served.world, "M-kex-1")
    cardholder = register_cardholder(served.world)
    fetch = Counted(served, merchant)
    keys = GatewayKeys(fetch, trust=merchant.trust)
    old = keys.current()
    _, renewal = served.renew()
    # Renewed but not revoked, the older certificate stands: no PCertReq before the TTL.
    assert keys.current() is old and fetch.calls == 1
    _revoke(served, old.key_exchange.thumbprint, merchant.trust, cardholder.trust)

    fresh = keys.current()
    assert fetch.calls == 2
    assert fresh.key_exchange.thumbprint == renewal.key_exchange.thumb
    assert fresh.signature.thumbprint == renewal.signature.thumb
    assert keys.recipient().cert_thumb == renewal.key_exchange.thumb
    assert keys.current() is fresh and fetch.calls == 2
    # A PInitRes naming it passes the wallet (which has the CRL too), and the AuthReq
    # sealed to it is authorized.
    sealing = replace(merchant, gateway_kex=fresh.key_exchange, gateway_chain=fresh.chain)
    request, state = auth_request(sealing, purchase(sealing, cardholder, 600))
    result = open_auth_response(
        served.world.gateway.Authorize(request), merchant.credentials, state, merchant.trust,
        gateway_identity=merchant.gateway_identity,
    )  # fmt: skip
    assert result.auth_code == authorization_pb2.AUTH_CODE_APPROVED


def test_revocation_data_that_leaves_them_standing_fetches_nothing(served: Served) -> None:
    merchant = register_merchant(served.world, "M-kex-2")
    other = register_cardholder(served.world)
    fetch = Counted(served, merchant)
    keys = GatewayKeys(fetch, trust=merchant.trust)
    held = keys.current()
    for _ in range(50):
        assert keys.current() is held
    # A CRL revoking another certificate: the store judges the chains afresh, and they stand.
    other_thumb = other.credentials.signature_thumb
    _revoke(served, other_thumb, merchant.trust)
    for _ in range(50):
        assert keys.current() is held
    assert fetch.calls == 1


def test_a_refused_certificate_is_not_handed_out_when_fetching_again_fails(
    served: Served, caplog: pytest.LogCaptureFixture
) -> None:
    merchant = register_merchant(served.world, "M-kex-3")
    fetch, clock = Counted(served, merchant), Clock()
    keys = GatewayKeys(fetch, clock=clock, trust=merchant.trust)
    old = keys.current()
    # Revoked with no renewal: the gateway still serves it, and its PCertRes is refused.
    _revoke(served, old.key_exchange.thumbprint, merchant.trust)
    caplog.set_level(logging.WARNING, logger="setpay.merchant.gateway")
    with pytest.raises(ProtocolError, match="REVOKED_CERTIFICATE"):
        keys.current()
    with pytest.raises(ProtocolError, match="REVOKED_CERTIFICATE"):
        keys.recipient()  # the same failure, not fetched again within its hold-off
    assert fetch.calls == 2
    short = old.key_exchange.thumbprint.hex()[:8]
    assert any(
        f"refuses the gateway's key-exchange certificate {short}" in message
        and "REVOKED_CERTIFICATE" in message
        for message in caplog.messages
    ), caplog.messages
    # The gateway unreachable: its error, as it came, and a warning that nothing is handed out.
    fetch.down = True
    clock.now += FETCH_HOLD_OFF_SECONDS
    with pytest.raises(TransportError, match="UNAVAILABLE"):
        keys.current()
    assert "none is handed out until they are" in caplog.messages[-1]
    # Once renewed and reachable, the next call has the new certificates: an unreachable
    # gateway holds nothing off.
    fetch.down = False
    _, renewal = served.renew()
    assert keys.current().key_exchange.thumbprint == renewal.key_exchange.thumb
    assert fetch.calls == 4


def test_without_a_trust_store_they_are_judged_by_age_alone(served: Served) -> None:
    merchant = register_merchant(served.world, "M-kex-4")
    fetch = Counted(served, merchant)
    keys = GatewayKeys(fetch)
    old = keys.current()
    _revoke(served, old.key_exchange.thumbprint, merchant.trust)
    assert keys.current() is old and fetch.calls == 1
