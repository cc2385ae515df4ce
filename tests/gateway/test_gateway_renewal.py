"""Renewing the gateway's keys on a real bank (software keystore), served before and after.

Merchants and wallets registered before the renewal keep working without registering
again: requests sealed to the older key-exchange certificate are opened with its key, the
AuthRes is signed with the new signature key, and PCertRes hands out the new certificate.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from cli import ca
from clients.merchant.gateway_client import GatewayClient
from clients.transport import Caller, RetryPolicy
from gateway import authorize as gateway_authorize
from gateway import gateway_renewal
from gateway.bank_pki import GATEWAY_KEX_LABEL, GATEWAY_SIG_LABEL, bank_keys_uri, older_kex_name
from gateway.config import BankConfig, load
from gateway.gateway_renewal import BankRunning, Renewal, renew_gateway_keys
from gateway.process import start_bank
from gateway.provisioning import init_bank
from hsm.software import SoftwareBackend
from hsm.uri import open_backend
from setcore.authorization import AuthRequestState, open_auth_response
from setcore.capture import CaptureItem, build_capture_request, open_capture_response
from setcore.encoding import thumbprint
from setcore.errors import ErrorCode, PeerError, ProtocolError
from setcore.gateway_admin import build_pcert_request, open_pcert_response
from setcore.pki.certificate import load_certificate
from setpay.v1 import authorization_pb2 as a
from setpay.v1 import purchase_pb2, services_pb2_grpc
from tests.ports import free_port

from .actors import (
    TEST_BIN,
    Merchant,
    World,
    as_sent,
    auth_request,
    authorize,
    channels_for,
    eur,
    purchase,
    register_cardholder,
    register_merchant,
)

APPROVED = a.AUTH_CODE_APPROVED
# The bank's revocation watcher reads ca.db at most once a second; allow a slow machine.
REVOCATION_SECONDS = 30.0


def pi_recipient(pi: bytes) -> bytes:
    """The thumbprint of the gateway certificate a wallet sealed ``pi`` to."""
    return purchase_pb2.PIDualSigned.FromString(pi).ex_pi.recipient_cert_thumb


def certificate(directory: Path, name: str) -> bytes:
    """A certificate the bank loads, from ``certs/``."""
    return (directory / "certs" / name).read_bytes()


class Served:
    """A bank served on fixed ports, stopped, renewed and served again, as an operator
    does it; ``world`` is the one serving now. Fixed ports, so that the renewal's check
    for a running bank sees them and a merchant's channel reaches the bank restarted."""

    def __init__(
        self,
        directory: Path,
        keys: str | None = None,
        profile: str = "ec",
        made_at: datetime | None = None,
    ) -> None:
        init_bank(directory, profile=profile, keys=keys, merchant_tls=True, env={}, at=made_at)
        self.directory = directory
        self.profile = profile
        # Picked once, released, and bound again at each start: free_port picks below
        # the kernel's ephemeral range, where no outgoing connection and no port-0 bind
        # (every other served test's) lands; only another free_port caller's random
        # pick, one in thousands, could take it between a stop and the next start.
        self.ports = {"SETPAY_LISTEN": f"127.0.0.1:{free_port()}",
                      "SETPAY_CA_LISTEN": f"127.0.0.1:{free_port()}"}  # fmt: skip
        self.current: World | None = None
        self.start()

    def config(self) -> BankConfig:
        """The bank's configuration, as ``setpay`` loads it."""
        return load(self.directory / "setpay.toml", env=self.ports)

    @property
    def world(self) -> World:
        assert self.current is not None, "the bank is stopped"
        return self.current

    def stop(self) -> None:
        if self.current is not None:
            self.current.close()
            self.current = None

    def start(self) -> World:
        self.stop()
        config = self.config()
        running = start_bank(config)
        gateway, ca_channel = channels_for(self.directory, running.port, running.ca_port)
        self.current = World(
            self.directory, config, running,
            services_pb2_grpc.PaymentGatewayServiceStub(gateway),  # type: ignore[no-untyped-call]
            services_pb2_grpc.CertificateAuthorityServiceStub(ca_channel),  # type: ignore[no-untyped-call]
            [gateway, ca_channel], SoftwareBackend.ephemeral(), self.profile,
        )  # fmt: skip
        return self.current

    def renew(self) -> tuple[World, Renewal]:
        """Stop the bank, renew its gateway keys, serve it again."""
        self.stop()
        renewal = renew_gateway_keys(self.config())
        return self.start(), renewal


def refreshed(world: World, merchant: Merchant) -> Merchant:
    """The merchant after asking again for the gateway's certificates (PCertReq)."""
    request, state = build_pcert_request(
        merchant.credentials, [("setpay", TEST_BIN)], merchant.merchant_id
    )
    answer = open_pcert_response(
        world.gateway.GatewayCertificates(request), merchant.credentials, state, merchant.trust
    )
    item = answer.items[0]
    assert item.key_exchange is not None
    return replace(merchant, gateway_kex=item.key_exchange, gateway_chain=item.chain)


def refused(
    world: World, merchant: Merchant, request: a.AuthorizeRequest, state: AuthRequestState
) -> str:
    """Send an AuthReq that must be refused; the gateway's signed Error code name."""
    response = world.gateway.Authorize(request)
    with pytest.raises(PeerError) as exc:
        open_auth_response(
            response, merchant.credentials, as_sent(state, request), merchant.trust,
            gateway_identity=merchant.gateway_identity,
        )  # fmt: skip
    return exc.value.code_name


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    bank = Served(tmp_path / "bank")
    yield bank
    bank.stop()


def test_registered_parties_keep_working_after_a_renewal(served: Served) -> None:
    world = served.world
    merchant = register_merchant(world, "M-renew-1")
    cardholder = register_cardholder(world)
    old_sig = thumbprint(certificate(world.directory, "gateway-sig.der"))
    old_kex = merchant.gateway_kex.thumbprint
    first = purchase(merchant, cardholder, 1200)
    request, state = auth_request(merchant, first)  # sealed to the older certificate
    pi_before = purchase(merchant, cardholder, 1300)  # the wallet sealed its PI before
    before = authorize(world, merchant, purchase(merchant, cardholder, 1100))
    assert before.auth_code == APPROVED and before.gateway.thumbprint == old_sig

    world, renewal = served.renew()
    assert renewal.key_exchange.version == renewal.signature.version == 2
    assert renewal.kept.name == older_kex_name(1)
    assert certificate(world.directory, older_kex_name(1)) == merchant.gateway_kex.der

    # An AuthReq built before the renewal, PI and all, sent after the restart.
    result = open_auth_response(
        world.gateway.Authorize(request), merchant.credentials, state, merchant.trust,
        gateway_identity=merchant.gateway_identity,
    )  # fmt: skip
    assert result.auth_code == APPROVED
    # Signed with the new key, and the merchant accepts it.
    assert result.gateway.thumbprint == renewal.signature.thumb != old_sig

    # The merchant's cached certificates still work for a new order...
    cached = authorize(world, merchant, purchase(merchant, cardholder, 1400))
    assert cached.auth_code == APPROVED

    # ...and PCertReq hands out the new one.
    fresh = refreshed(world, merchant)
    assert fresh.gateway_kex.thumbprint == renewal.key_exchange.thumb != old_kex
    # An AuthReq sealed to the new certificate around a PI sealed to the old one.
    assert pi_recipient(pi_before.view.pi_bytes) == old_kex
    mixed = authorize(world, fresh, pi_before)
    assert mixed.auth_code == APPROVED
    # A new purchase uses the new certificate end to end.
    bought = purchase(fresh, cardholder, 1500)
    assert pi_recipient(bought.view.pi_bytes) == renewal.key_exchange.thumb
    assert authorize(world, fresh, bought).auth_code == APPROVED

    # Settlement sealed to the older certificate: a capture of the first order.
    item = CaptureItem(first.order.trans_ids, state.rrpid, result.baggage.cap_token, eur(1200))
    cap, cap_state = build_capture_request(
        merchant.credentials, merchant.gateway_kex.recipient(), [item], merchant.merchant_id
    )
    captured = open_capture_response(
        world.gateway.Capture(cap), merchant.credentials, cap_state, merchant.trust,
        gateway_identity=merchant.gateway_identity,
    )  # fmt: skip
    payload = captured.data.cap_res_items[0].cap_res_payload
    assert payload.cap_code == a.CAP_CODE_SUCCESS
    assert captured.gateway.thumbprint == renewal.signature.thumb


def test_an_unknown_or_ended_certificate_gets_the_refusal_it_always_got(served: Served) -> None:
    world = served.world
    merchant = register_merchant(world, "M-renew-2")
    cardholder = register_cardholder(world)
    old = merchant.gateway_kex
    later = purchase(merchant, cardholder, 900)
    request, _ = auth_request(merchant, later)
    world, _renewal = served.renew()
    bank = world.running.bank
    # After the older certificate ends: opened with the newest key, so refused as
    # sealed to another certificate.
    ended = load_certificate(old.der).not_valid_after_utc + timedelta(seconds=1)
    with pytest.raises(ProtocolError) as exc:
        gateway_authorize.authorize(bank.as_of(int(ended.timestamp() * 1000)), request)
    assert exc.value.code == ErrorCode.ERROR_CODE_WRONG_RECIPIENT

    # A thumbprint the bank never held.
    stranger = replace(merchant, gateway_kex=replace(old, thumbprint=bytes(32)))
    request, state = auth_request(stranger, purchase(merchant, cardholder, 800))
    assert refused(world, merchant, request, state) == "ERROR_CODE_WRONG_RECIPIENT"


def test_a_revoked_older_certificate_no_longer_opens_envelopes(served: Served) -> None:
    world = served.world
    merchant = register_merchant(world, "M-renew-3")
    cardholder = register_cardholder(world)
    old = merchant.gateway_kex.thumbprint
    world, renewal = served.renew()
    assert authorize(world, merchant, purchase(merchant, cardholder, 700)).auth_code == APPROVED
    parser = argparse.ArgumentParser(prog="setpay")
    ca.add_parser(parser.add_subparsers(dest="command", required=True))
    config = str(world.directory / "setpay.toml")
    args = parser.parse_args(["ca", "revoke", "--config", config, "--thumb", old.hex()])
    assert ca.run(args) == 0
    deadline = time.monotonic() + REVOCATION_SECONDS
    while True:  # until the bank's watcher has read the new CRL
        request, state = auth_request(merchant, purchase(merchant, cardholder, 600))
        response = world.gateway.Authorize(request)
        if response.WhichOneof("result") == "error":
            break
        assert time.monotonic() < deadline, "the revocation never reached the bank"
        time.sleep(0.2)
    with pytest.raises(PeerError) as exc:
        open_auth_response(
            response, merchant.credentials, state, merchant.trust,
            gateway_identity=merchant.gateway_identity,
        )  # fmt: skip
    assert exc.value.code_name == "ERROR_CODE_WRONG_RECIPIENT"
    # The new certificate opens as before.
    fresh = refreshed(world, merchant)
    assert fresh.gateway_kex.thumbprint == renewal.key_exchange.thumb
    assert authorize(world, fresh, purchase(fresh, cardholder, 500)).auth_code == APPROVED


def test_a_second_renewal_keeps_both_older_certificates(served: Served) -> None:
    world = served.world
    merchant = register_merchant(world, "M-renew-4")
    cardholder = register_cardholder(world)
    sealed_to_v1 = auth_request(merchant, purchase(merchant, cardholder, 400))
    world, first = served.renew()
    middle = refreshed(world, merchant)
    sealed_to_v2 = auth_request(middle, purchase(middle, cardholder, 300))
    world, second = served.renew()
    assert (second.signature.version, second.key_exchange.version) == (3, 3)
    assert second.kept.name == older_kex_name(2)
    for (request, state), party in ((sealed_to_v1, merchant), (sealed_to_v2, middle)):
        result = open_auth_response(
            world.gateway.Authorize(request), party.credentials, state, party.trust,
            gateway_identity=party.gateway_identity,
        )  # fmt: skip
        assert result.auth_code == APPROVED
        assert result.gateway.thumbprint == second.signature.thumb
    assert refreshed(world, merchant).gateway_kex.thumbprint == second.key_exchange.thumb
    assert first.key_exchange.thumb != second.key_exchange.thumb


def test_a_renewal_that_fails_half_way_leaves_the_bank_on_its_old_keys(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    world = served.world
    merchant = register_merchant(world, "M-renew-5")
    cardholder = register_cardholder(world)
    served.stop()
    directory = served.directory
    before = {p.name: p.read_bytes() for p in (directory / "certs").iterdir()}
    ca_db = (directory / "ca.db").read_bytes()

    def broken(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    # Keys made, certified, stored on the keys and staged; ca.db cannot be written.
    monkeypatch.setattr(gateway_renewal, "_record", broken)
    with pytest.raises(OSError, match="disk full"):
        renew_gateway_keys(served.config())
    monkeypatch.undo()

    assert {p.name: p.read_bytes() for p in (directory / "certs").iterdir()} == before
    assert (directory / "ca.db").read_bytes() == ca_db
    backend = open_backend(bank_keys_uri(served.config()))
    versions = {(k.label, k.version) for k in backend.list_keys()}
    backend.close()
    assert (GATEWAY_SIG_LABEL, 2) not in versions and (GATEWAY_KEX_LABEL, 2) not in versions

    world = served.start()
    result = authorize(world, merchant, purchase(merchant, cardholder, 200))
    assert result.auth_code == APPROVED
    assert result.gateway.thumbprint == thumbprint(before["gateway-sig.der"])
    # And the renewal runs once the failure is gone.
    served.stop()
    assert renew_gateway_keys(served.config()).signature.version == 2


def test_keys_made_but_never_certified_do_not_stop_the_bank(served: Served) -> None:
    # A renewal killed after making its keys (or `setpay keys generate` on a gateway
    # label): the bank starts on the versions its certificates certify.
    world = served.world
    merchant = register_merchant(world, "M-renew-6")
    cardholder = register_cardholder(world)
    served.stop()
    directory = served.directory
    backend = open_backend(bank_keys_uri(served.config()))
    for label in (GATEWAY_SIG_LABEL, GATEWAY_KEX_LABEL):
        current = backend.get(label)
        backend.generate(label, current.usage, current.algorithm)
    backend.close()
    world = served.start()
    result = authorize(world, merchant, purchase(merchant, cardholder, 100))
    assert result.auth_code == APPROVED
    assert result.gateway.thumbprint == thumbprint(certificate(directory, "gateway-sig.der"))
    world, renewal = served.renew()
    assert (renewal.signature.version, renewal.key_exchange.version) == (3, 3)
    assert authorize(world, merchant, purchase(merchant, cardholder, 150)).auth_code == APPROVED
    assert refreshed(world, merchant).gateway_kex.thumbprint == renewal.key_exchange.thumb


@contextmanager
def merchant_client(served: Served, merchant: Merchant) -> Iterator[GatewayClient]:
    """clients.merchant's own gateway client for ``merchant``, on a channel of its own that
    outlives a restart (the bank comes back on the same port)."""
    world = served.world
    channel, other = channels_for(served.directory, world.running.port, world.running.ca_port)
    other.close()
    caller = Caller(channel, "gateway", RetryPolicy(attempts=1))
    try:
        yield GatewayClient(caller, merchant.credentials, merchant.trust, merchant.merchant_id)
    finally:
        channel.close()


def test_the_merchant_client_takes_the_new_signature_after_a_renewal(served: Served) -> None:
    """A running merchant whose PCertRes came before the renewal. Before: every answer
    refused until its next PCertReq (up to an hour), each authorization "outcome unknown"."""
    world = served.world
    merchant = register_merchant(world, "M-renew-7")
    cardholder = register_cardholder(world)
    request, state = auth_request(merchant, purchase(merchant, cardholder, 250))
    with merchant_client(served, merchant) as client:
        before = client.gateway_certificates("setpay")
        _, renewal = served.renew()
        result = client.authorize(request.SerializeToString(), state)
        after = client.gateway_certificates("setpay")  # the same gateway: no refusal
    assert result.auth_code == APPROVED
    assert before.signature is not None and before.signature.thumbprint != result.gateway.thumbprint
    assert result.gateway.thumbprint == renewal.signature.thumb
    assert after.key_exchange is not None
    assert after.key_exchange.thumbprint == renewal.key_exchange.thumb


def test_an_answer_stored_before_a_renewal_reaches_a_restarted_merchant(served: Served) -> None:
    """The gateway answered before its renewal and the merchant never saw the answer; the
    merchant, restarted since, knows only the new certificate. The retry gets the stored
    answer, signed with the old one. Before: refused, and retried without end."""
    world = served.world
    merchant = register_merchant(world, "M-renew-8")
    cardholder = register_cardholder(world)
    request, state = auth_request(merchant, purchase(merchant, cardholder, 350))
    first = world.gateway.Authorize(request)  # answered, and the answer lost on its way
    assert first.WhichOneof("result") == "auth_res"
    old_sig = thumbprint(certificate(world.directory, "gateway-sig.der"))
    _, renewal = served.renew()
    with merchant_client(served, merchant) as client:
        fresh = client.gateway_certificates("setpay")
        assert fresh.signature is not None and fresh.signature.thumbprint == renewal.signature.thumb
        result = client.authorize(request.SerializeToString(), state)
    assert result.auth_code == APPROVED
    assert result.gateway.thumbprint == old_sig != renewal.signature.thumb


def test_a_running_bank_is_not_renewed(served: Served) -> None:
    backend_keys = {(k.label, k.version) for k in served.world.running.pki.backend.list_keys()}
    certs = {p.name: p.read_bytes() for p in (served.directory / "certs").iterdir()}
    with pytest.raises(BankRunning, match="stop the bank before renewing its keys"):
        renew_gateway_keys(served.config())
    assert {p.name: p.read_bytes() for p in (served.directory / "certs").iterdir()} == certs
    assert {(k.label, k.version) for k in served.world.running.pki.backend.list_keys()} == (
        backend_keys
    )
