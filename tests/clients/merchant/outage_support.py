"""Outages for merchant tests: a gateway to stop and start again, a merchant started
again on its directory (after a crash), and time that passes (``tests.clocks``)."""

from __future__ import annotations

import time
from pathlib import Path

import grpc

from clients.errors import TransportError
from clients.merchant.config import load as load_merchant_config
from clients.merchant.renewal import RENEW_MARGIN_MS
from clients.merchant.runtime import Merchant
from gateway.health_monitor import HealthMonitor
from setcore.freshness import FRESHNESS_WINDOW_MS
from tests.clients.bank_support import RunningBank, serve_gateway

# Past the freshness window and the margin after which the merchant builds a request the
# gateway refused as too old afresh.
WELL_PAST_MS = FRESHNESS_WINDOW_MS + RENEW_MARGIN_MS + 10_000
# Past the window, within that margin: too old for the gateway, too recent to rebuild.
JUST_PAST_MS = FRESHNESS_WINDOW_MS + RENEW_MARGIN_MS // 2
# How long a merchant's channel may take to reconnect to a restarted gateway (its backoff
# is at most 5 s; this only bounds a hang).
RECONNECT_SECONDS = 20.0


class GatewayOutage:
    """A PaymentGateway server of the bank's own, on a port that outlives its stops."""

    def __init__(self, bank: RunningBank) -> None:
        self._bank = bank
        server, self.port, health = serve_gateway(bank.bank, bank.config)
        self._running: list[tuple[grpc.Server, HealthMonitor]] = [(server, health)]

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

    def end(self, merchant: Merchant) -> None:
        """The gateway is back on the same port; wait until ``merchant`` reaches it."""
        server, _, health = serve_gateway(self._bank.bank, self._bank.config, self.port)
        self._running.append((server, health))
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
