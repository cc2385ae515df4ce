"""The PaymentGateway servicer while the CA's revocation refresh fails (``gateway.answers``).

Each request first lets the CA's watcher refresh the revocation data (``Bank.
refresh_revocation``). A refresh that fails because a part of the bank is away (its token,
ca.db) or because ca.db's newest BCI does not verify must not turn into an answer about
the merchant's request: requests are served while the data held is current, and once
nothing current is held they are UNAVAILABLE, which the merchant retries; never a SET
Error, which it would record as the gateway's refusal.

Real gRPC server on port 0, the bank's real keys, a ca.db of its own, the merchant
registered with the bank's CA; the one double is the token that fails to sign.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import replace
from pathlib import Path

import grpc
import pytest

from gateway.ca import RevocationWatcher
from gateway.ca import store as ca_store
from gateway.servicer import PaymentGatewayServicer
from setcore.gateway_admin import build_pcert_request, open_pcert_response
from setcore.pki.truststore import TrustStore
from setpay.v1 import services_pb2_grpc

from .actors import TEST_BIN, Merchant, World
from .ca.revocation_support import (
    DUE_AGE,
    LAPSED_AGE,
    TokenGone,
    authority_keys,
    bank_trust,
    locked,
    new_ca_db,
    publish_dated,
)

# ca.db's busy timeout in these tests: a refresh behind another writer gives up after this
# long rather than the five seconds a bank waits.
SHORT_BUSY_TIMEOUT_MS = 200
# The parts a refresh uses that go away: the token (signing), ca.db (its write lock).
AWAY = ["token", "ca.db"]


@contextmanager
def _gateway(
    world: World, trust: TrustStore, watcher: RevocationWatcher
) -> Iterator[services_pb2_grpc.PaymentGatewayServiceStub]:
    """The world's bank with ``trust`` fed by ``watcher``, served on port 0."""
    bank = replace(world.running.bank, trust=trust, refresh_revocation=watcher.check)
    server = grpc.server(ThreadPoolExecutor(max_workers=2))
    services_pb2_grpc.add_PaymentGatewayServiceServicer_to_server(  # type: ignore[no-untyped-call]
        PaymentGatewayServicer(bank), server
    )
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield services_pb2_grpc.PaymentGatewayServiceStub(channel)  # type: ignore[no-untyped-call]
    finally:
        channel.close()
        server.stop(None)


def _gateway_certificates(
    stub: services_pb2_grpc.PaymentGatewayServiceStub, merchant: Merchant
) -> None:
    """PCertReq -> PCertRes, opened and verified as the merchant does."""
    request, state = build_pcert_request(
        merchant.credentials, [("setpay", TEST_BIN)], merchant.merchant_id
    )
    response = stub.GatewayCertificates(request)
    certificates = open_pcert_response(response, merchant.credentials, state, merchant.trust)
    assert certificates.items


def _unavailable(stub: services_pb2_grpc.PaymentGatewayServiceStub, merchant: Merchant) -> None:
    with pytest.raises(grpc.RpcError) as failed:
        _gateway_certificates(stub, merchant)
    assert failed.value.code() == grpc.StatusCode.UNAVAILABLE  # type: ignore[attr-defined]
    details = failed.value.details()  # type: ignore[attr-defined]
    assert details == "certificate authority revocation data unavailable"


@pytest.fixture
def short_busy_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ca_store, "BUSY_TIMEOUT_MS", SHORT_BUSY_TIMEOUT_MS)


@pytest.mark.usefixtures("short_busy_timeout")
@pytest.mark.parametrize("away", AWAY)
def test_requests_are_served_while_a_refresh_fails_and_the_bci_is_current(
    ec_world: World, ec_merchant: Merchant, tmp_path: Path, away: str
) -> None:
    """ca.db's BCI is due (half its lifetime gone) and current for hours: a refresh that
    fails (token gone: once UNAVAILABLE; ca.db busy: once a signed UNSPECIFIED_FAILURE)
    leaves every request served."""
    pki = ec_world.running.pki
    token = TokenGone(pki.backend, gone=away == "token")
    with ExitStack() as stack:
        store = new_ca_db(tmp_path / "ca.db", pki, age=DUE_AGE)
        stack.callback(store.close)
        if away == "ca.db":
            stack.enter_context(locked(store))
        trust = bank_trust(pki)
        watcher = RevocationWatcher(store, trust, keys=authority_keys(pki, token), interval_s=0)
        stub = stack.enter_context(_gateway(ec_world, trust, watcher))
        for _ in range(3):
            _gateway_certificates(stub, ec_merchant)
        assert watcher.counters.publish_failures == 1  # then put off, not tried per request
        assert trust.revocation is not None and trust.revocation.sequence_num == 1


@pytest.mark.usefixtures("short_busy_timeout")
@pytest.mark.parametrize("away", AWAY)
def test_requests_are_unavailable_while_nothing_current_is_held(
    ec_world: World, ec_merchant: Merchant, tmp_path: Path, away: str
) -> None:
    """ca.db's BCI has lapsed and the refresh fails: UNAVAILABLE (the merchant sends the
    same bytes again), never a SET Error; served again once the refresh succeeds."""
    pki = ec_world.running.pki
    token = TokenGone(pki.backend, gone=away == "token")
    store = new_ca_db(tmp_path / "ca.db", pki, age=LAPSED_AGE)
    try:
        trust = bank_trust(pki)
        watcher = RevocationWatcher(store, trust, keys=authority_keys(pki, token), interval_s=0)
        with _gateway(ec_world, trust, watcher) as stub:
            if away == "ca.db":
                with locked(store):
                    _unavailable(stub, ec_merchant)
            else:
                _unavailable(stub, ec_merchant)
                token.gone = False
            _gateway_certificates(stub, ec_merchant)
        assert trust.revocation is not None and trust.revocation.sequence_num == 2
    finally:
        store.close()


def test_a_newest_bci_that_does_not_verify_is_not_the_merchants_fault(
    ec_world: World, ec_merchant: Merchant, tmp_path: Path
) -> None:
    """ca.db's newest BCI is past its window (published with a wrong clock, say): it is not
    installed, the current one is kept and requests are served, rather than the merchant
    getting that BCI's EXPIRED_CERTIFICATE as a refusal of its request."""
    pki = ec_world.running.pki
    store = new_ca_db(tmp_path / "ca.db", pki)
    try:
        trust = bank_trust(pki)
        watcher = RevocationWatcher(
            store, trust, keys=authority_keys(pki, pki.backend), interval_s=0
        )
        with _gateway(ec_world, trust, watcher) as stub:
            _gateway_certificates(stub, ec_merchant)  # BCI 1 installed
            publish_dated(store, pki, LAPSED_AGE)  # BCI 2, lapsed
            _gateway_certificates(stub, ec_merchant)
            _gateway_certificates(stub, ec_merchant)
        assert trust.revocation is not None and trust.revocation.sequence_num == 1
        assert watcher.counters.install_failures == 2
    finally:
        store.close()
