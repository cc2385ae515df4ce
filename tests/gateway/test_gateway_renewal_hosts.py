"""A process still on the gateway's replaced keys while the renewed ones are handed out.

Another gateway host sharing the bank's state (or a worker of this one not yet
restarted) runs on the old keys after a renewal; a host restarted on the new ones hands
out the new key-exchange certificate. An envelope sealed to it that reaches the old
process is answered UNAVAILABLE, so that the merchant sends it again, never refused:
before, it was refused WRONG_RECIPIENT, which the merchant takes as final.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import grpc
import pytest

from cli import ca
from gateway import authorize as gateway_authorize
from gateway import gateway_renewal, opening_keys
from gateway.gateway_renewal import Renewal, renew_gateway_keys
from gateway.process import start_bank
from setcore.authorization import open_auth_response
from setcore.errors import ErrorCode, PeerError, ProtocolError
from setcore.pki.certificate import load_certificate
from setpay.v1 import authorization_pb2 as a
from setpay.v1 import services_pb2_grpc

from .actors import (
    Merchant,
    World,
    auth_request,
    channels_for,
    purchase,
    register_cardholder,
    register_merchant,
)
from .test_gateway_renewal import APPROVED, Served, refreshed


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    bank = Served(tmp_path / "bank")
    yield bank
    bank.stop()


def renew_beside(served: Served, monkeypatch: pytest.MonkeyPatch) -> Renewal:
    """Renew the bank's keys while it serves, as an operator on another host sharing its
    state does: that host's check for a running bank cannot see this one."""
    with monkeypatch.context() as patched:
        patched.setattr(gateway_renewal, "check_stopped", lambda config: None)
        return renew_gateway_keys(served.config())


@contextmanager
def other_host(served: Served) -> Iterator[World]:
    """A second bank process on the renewed state, as a host restarted after the renewal
    (on ports of its own; the first still holds the configured ones)."""
    config = served.config()
    running = start_bank(config, listen="127.0.0.1:0", ca_listen="127.0.0.1:0")
    gateway, ca_channel = channels_for(served.directory, running.port, running.ca_port)
    world = World(
        served.directory, config, running,
        services_pb2_grpc.PaymentGatewayServiceStub(gateway),  # type: ignore[no-untyped-call]
        services_pb2_grpc.CertificateAuthorityServiceStub(ca_channel),  # type: ignore[no-untyped-call]
        [gateway, ca_channel], served.world.keys, served.profile,
    )  # fmt: skip
    try:
        yield world
    finally:
        world.close()


def answered(world: World, party: Merchant, request: a.AuthorizeRequest, state: object) -> str:
    """How ``world``'s gateway answers an AuthReq: the AuthCode's name, the signed SET
    Error's code name, or the gRPC status's name."""
    try:
        response = world.gateway.Authorize(request)
    except grpc.RpcError as exc:
        return str(exc.code().name)
    try:
        result = open_auth_response(
            response, party.credentials, state, party.trust,  # type: ignore[arg-type]
            gateway_identity=party.gateway_identity,
        )  # fmt: skip
    except PeerError as exc:
        return exc.code_name
    return a.AuthCode.Name(result.auth_code)


def test_the_old_process_answers_unavailable_until_it_restarts(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    old_host = served.world
    merchant = register_merchant(old_host, "M-hosts-1")
    cardholder = register_cardholder(old_host)
    renewal = renew_beside(served, monkeypatch)
    with other_host(served) as new_host:
        fresh = refreshed(new_host, merchant)  # PCertRes from the restarted host
        assert fresh.gateway_kex.thumbprint == renewal.key_exchange.thumb
        sealed_to_new = auth_request(fresh, purchase(fresh, cardholder, 600))
        # The wallet sealed its PI to the new certificate; the merchant's AuthReq still
        # goes to the old one (its certificate cache is an hour).
        pi_to_new = auth_request(merchant, purchase(fresh, cardholder, 650))
        assert answered(new_host, merchant, *pi_to_new) == "AUTH_CODE_APPROVED"

        assert answered(old_host, fresh, *sealed_to_new) == "UNAVAILABLE"
        assert answered(old_host, merchant, *pi_to_new) == "UNAVAILABLE"
        # The usual case is untouched: sealed to the keys the old process holds.
        bought = purchase(merchant, cardholder, 700)
        assert answered(old_host, merchant, *auth_request(merchant, bought)) == (
            "AUTH_CODE_APPROVED"
        )

    restarted = served.start()
    request, state = sealed_to_new
    result = open_auth_response(
        restarted.gateway.Authorize(request), fresh.credentials, state, fresh.trust,
        gateway_identity=fresh.gateway_identity,
    )  # fmt: skip
    assert result.auth_code == APPROVED
    assert result.gateway.thumbprint == renewal.signature.thumb


def test_a_certificate_the_bank_never_issued_or_that_ended_is_still_refused(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    old_host = served.world
    merchant = register_merchant(old_host, "M-hosts-2")
    cardholder = register_cardholder(old_host)
    renewal = renew_beside(served, monkeypatch)
    with other_host(served) as new_host:
        fresh = refreshed(new_host, merchant)
    request, state = auth_request(fresh, purchase(fresh, cardholder, 500))

    # Once the renewed certificate has ended, it is sealed to another certificate.
    ended = load_certificate(fresh.gateway_kex.der).not_valid_after_utc + timedelta(seconds=1)
    bank = old_host.running.bank.as_of(int(ended.timestamp() * 1000))
    with pytest.raises(ProtocolError) as exc:
        gateway_authorize.authorize(bank, request)
    assert exc.value.code == ErrorCode.ERROR_CODE_WRONG_RECIPIENT

    # A thumbprint the bank never issued.
    stranger = replace(fresh, gateway_kex=replace(fresh.gateway_kex, thumbprint=bytes(32)))
    other, other_state = auth_request(stranger, purchase(merchant, cardholder, 400))
    assert answered(old_host, merchant, other, other_state) == "ERROR_CODE_WRONG_RECIPIENT"

    # Revoked: refused once the old process reads ca.db again.
    parser = argparse.ArgumentParser(prog="setpay")
    ca.add_parser(parser.add_subparsers(dest="command", required=True))
    config = str(served.directory / "setpay.toml")
    thumb = renewal.key_exchange.thumb.hex()
    assert ca.run(parser.parse_args(["ca", "revoke", "--config", config, "--thumb", thumb])) == 0
    time.sleep(
        opening_keys.ISSUED_RECHECK_SECONDS
    )  # what it read for the two refusals above is stale
    assert answered(old_host, fresh, request, state) == "ERROR_CODE_WRONG_RECIPIENT"
