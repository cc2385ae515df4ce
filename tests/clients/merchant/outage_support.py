"""Outages for merchant tests: a gateway to stop and start again, or slower than the
wallets' patience (``held_gateway``), a merchant started again on its directory (after a
crash), and time that passes (``tests.clocks``)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import grpc

from clients.errors import TransportError
from clients.merchant.config import load as load_merchant_config
from clients.merchant.renewal import RENEW_MARGIN_MS
from clients.merchant.runtime import Merchant
from gateway.bank import Bank
from gateway.cpu_turn import PROCESS_TURN
from gateway.health_monitor import HealthMonitor
from gateway.ports import reserve
from gateway.process import tls_config
from gateway.server import ServiceBinding, create_server
from gateway.servicer import PaymentGatewayServicer
from setcore.freshness import FRESHNESS_WINDOW_MS
from tests.clients.bank_support import LIMITS, RunningBank, configure_merchant, register_merchant

# Past the freshness window and the margin after which the merchant builds a request the
# gateway refused as too old afresh.
WELL_PAST_MS = FRESHNESS_WINDOW_MS + RENEW_MARGIN_MS + 10_000
# Past the window, within that margin: too old for the gateway, too recent to rebuild.
JUST_PAST_MS = FRESHNESS_WINDOW_MS + RENEW_MARGIN_MS // 2
# How long a merchant's channel may take to reconnect to a restarted gateway (its backoff
# is at most 5 s; this only bounds a hang).
RECONNECT_SECONDS = 20.0
# Longer than any test: an Authorize still held after this is a bug, not a slow machine.
HOLD_SECONDS = 60.0


class GatewayOutage:
    """A PaymentGateway server of the bank's own, on a port that outlives its stops.

    The port is held by a socket that never listens (``gateway.ports``): no other process
    takes it while the gateway is away, and a merchant's calls meanwhile are refused as
    by a gateway down.
    """

    def __init__(self, bank: RunningBank) -> None:
        self._bank = bank
        self._held = reserve("127.0.0.1:0")
        self.port = self._held.port
        self._running: list[tuple[grpc.Server, HealthMonitor]] = []
        self.serve(PaymentGatewayServicer(bank.bank))

    def serve(self, servicer: PaymentGatewayServicer) -> None:
        """The gateway is (back) on its port, answering with ``servicer``."""
        server, _, health = create_server(
            [ServiceBinding("PaymentGatewayService", servicer)], self.target,
            replace(LIMITS, reuse_port=True),  # bound beside the reservation
            tls=tls_config(self._bank.config, mutual=True), reflection_enabled=False,
        )  # fmt: skip
        self._running.append((server, health))

    @property
    def target(self) -> str:
        """Where a merchant reaches this gateway."""
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        """The gateway goes away."""
        for server, health in self._running:
            health.stop()
            server.stop(grace=None).wait()
        self._running.clear()

    def release(self) -> None:
        """The gateway goes away for good, its port with it."""
        self.stop()
        self._held.close()

    def end(self, merchant: Merchant) -> None:
        """The gateway is back on the same port; wait until ``merchant`` reaches it."""
        self.serve(PaymentGatewayServicer(self._bank.bank))
        give_up = time.monotonic() + RECONNECT_SECONDS
        while True:
            try:
                merchant.gateway.gateway_certificates(merchant.config.brand_id)
                return
            except TransportError:
                if time.monotonic() > give_up:
                    raise
                time.sleep(0.2)  # the channel reconnects after its (bounded) backoff


def restart(directory: Path) -> Merchant:
    """What ``setpay merchant serve`` does at start, on the same directory."""
    merchant = Merchant.open(load_merchant_config(directory))
    try:
        merchant.serve()
    except BaseException:
        merchant.close()
        raise
    return merchant


class HeldAuthorize(PaymentGatewayServicer):
    """The bank's PaymentGateway, whose Authorize waits for ``release`` before deciding;
    ``entered`` counts the Authorize calls that reached it."""

    def __init__(self, bank: Bank) -> None:
        super().__init__(bank)
        self.release = threading.Event()
        self.entered = 0

    def Authorize(self, request: Any, context: grpc.ServicerContext) -> Any:
        self.entered += 1
        with PROCESS_TURN.aside():  # as a handler waiting on the issuer would
            self.release.wait(HOLD_SECONDS)
        return super().Authorize(request, context)

    def wait_entered(self, count: int) -> None:
        """Until ``count`` Authorize calls are held."""
        give_up = time.monotonic() + RECONNECT_SECONDS
        while self.entered < count:
            assert time.monotonic() < give_up, f"{self.entered} of {count} Authorize held"
            time.sleep(0.01)


@contextmanager
def held_gateway(
    bank: RunningBank, directory: Path, merchant_id: str, **server: int
) -> Iterator[tuple[Merchant, HeldAuthorize]]:
    """A merchant serving (``server``: its ``[server]`` settings changed) whose gateway
    answers Authorize only once the test lets it go (``HeldAuthorize.release``)."""
    outage = GatewayOutage(bank)
    configure_merchant(bank, directory, merchant_id, gateway_target=outage.target)
    register_merchant(directory)
    config = load_merchant_config(directory)
    merchant = Merchant.open(replace(config, server=replace(config.server, **server)))
    held = HeldAuthorize(bank.bank)
    try:
        merchant.serve()  # its start-up fetches the gateway's certificates, answered at once
        outage.stop()
        outage.serve(held)
        yield merchant, held
    finally:
        held.release.set()
        merchant.close()
        outage.release()
