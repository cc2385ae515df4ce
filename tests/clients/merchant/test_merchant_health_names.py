"""The Merchant service's health keeps only its own name and "": a Watch for any other name
is told SERVICE_UNKNOWN and leaves nothing behind once it ends. Before, it ran grpc_health's
own servicer, which kept every name ever watched, for good: wallets need no client
certificate, so anyone who reached the port could grow the merchant's memory without
bound with Watch streams for distinct long names, each opened and cancelled at once.

A real gRPC server on port 0 (``start_server``) over a checkout never called."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import cast

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from clients.merchant.checkout import Checkout
from clients.merchant.servicer import (
    SERVICE_NAME,
    MerchantServer,
    MerchantServicer,
    ServerSettings,
    start_server,
)
from setcore.credentials import Credentials
from setcore.served_health import ServedHealth
from tests.setcore.served_health_support import (
    NAME_BYTES,
    STREAMS,
    UNKNOWN,
    WAIT_SECONDS,
    client_channel,
    grown_by_watches,
)

SERVING = health_pb2.HealthCheckResponse.SERVING


@dataclass
class _Merchant:
    server: MerchantServer
    servicer: ServedHealth
    channel: grpc.Channel

    def kept(self) -> dict[str, int]:
        """The names the health servicer keeps Watch streams under, and how many each."""
        return self.servicer.watchers()


@pytest.fixture
def merchant(monkeypatch: pytest.MonkeyPatch) -> Iterator[_Merchant]:
    added: list[ServedHealth] = []
    add = health_pb2_grpc.add_HealthServicer_to_server

    def recorded(servicer: ServedHealth, server: grpc.Server) -> None:
        added.append(servicer)
        add(servicer, server)

    # The health servicer start_server builds is its own; the test sees it as it is added
    # (start_server adds it through the module's attribute, patched here).
    monkeypatch.setattr(health_pb2_grpc, "add_HealthServicer_to_server", recorded)
    servicer = MerchantServicer(cast(Checkout, None), cast(Credentials, None))
    settings = ServerSettings(listen="127.0.0.1:0", threads=4, max_concurrent_rpcs=64, tls=None)
    server, port = start_server(servicer, settings)
    channel = client_channel(port)
    (health_servicer,) = added
    yield _Merchant(server, health_servicer, channel)
    channel.close()
    server.stop(None).wait()


def test_cancelled_watches_for_names_not_served_leave_nothing_behind(merchant: _Merchant) -> None:
    first, grown = grown_by_watches(merchant.channel)
    assert first == [UNKNOWN] * STREAMS
    assert set(merchant.kept()) <= {"", SERVICE_NAME}, sorted(len(n) for n in merchant.kept())
    assert merchant.kept() == {}  # no stream of a served name was opened
    # Kept, the names alone would be STREAMS MiB (test_health_watch_names says more).
    assert grown < STREAMS * NAME_BYTES // 4, f"RSS grew {grown >> 20} MiB"


def test_the_merchant_name_is_still_watched_and_served(merchant: _Merchant) -> None:
    stub = health_pb2_grpc.HealthStub(merchant.channel)
    assert stub.Check(health_pb2.HealthCheckRequest(service=SERVICE_NAME)).status == SERVING
    watch = stub.Watch(health_pb2.HealthCheckRequest(service=SERVICE_NAME), timeout=WAIT_SECONDS)
    assert next(watch).status == SERVING
    assert merchant.kept() == {SERVICE_NAME: 1}
    watch.cancel()
    with pytest.raises(grpc.RpcError) as refused:
        stub.Check(health_pb2.HealthCheckRequest(service="setpay.v1.NoSuchService"))
    assert refused.value.code() == grpc.StatusCode.NOT_FOUND
