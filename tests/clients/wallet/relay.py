"""A TLS hop between a wallet and a real merchant that can lose or spoil the PRes.

It serves the merchant's TLS certificate on a port of its own (0: chosen by the OS) and
passes every call on to the merchant byte for byte; only the merchant's answer to a
Purchase goes through ``on_purchase`` on the way back, as a network or a middlebox that
fails after the merchant has done its work would treat it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent import futures
from contextlib import contextmanager
from typing import Any

import grpc

from tests.clients.bank_support import RunningBank

PURCHASE = "/Purchase"
# One wallet call at a time, each forwarded once: a couple of threads are plenty.
RELAY_THREADS = 2
# Bounds the merchant's answer (it waits on the gateway's authorization).
FORWARD_DEADLINE_SECONDS = 30.0

OnPurchase = Callable[[bytes, grpc.ServicerContext], bytes]


class _Forward(grpc.GenericRpcHandler):  # type: ignore[type-arg]
    """Every unary method, forwarded to the merchant's channel."""

    def __init__(self, merchant: grpc.Channel, on_purchase: OnPurchase) -> None:
        self._merchant = merchant
        self._on_purchase = on_purchase

    def service(self, details: grpc.HandlerCallDetails) -> Any:
        method: str = details.method

        def forward(request: bytes, context: grpc.ServicerContext) -> bytes:
            call = self._merchant.unary_unary(method, None, None)
            answer: bytes = call(request, timeout=FORWARD_DEADLINE_SECONDS)
            if method.endswith(PURCHASE):
                return self._on_purchase(answer, context)
            return answer

        return grpc.unary_unary_rpc_method_handler(forward)


@contextmanager
def merchant_relay(bank: RunningBank, merchant_port: int, on_purchase: OnPurchase) -> Iterator[int]:
    """Serve the relay; yields its port."""
    tls = bank.tls
    root = (tls / "root.pem").read_bytes()
    channel = grpc.secure_channel(
        f"127.0.0.1:{merchant_port}", grpc.ssl_channel_credentials(root_certificates=root)
    )
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=RELAY_THREADS))
    server.add_generic_rpc_handlers((_Forward(channel, on_purchase),))
    key = (tls / "merchant-server.key").read_bytes()
    identity = [(key, (tls / "merchant-server.pem").read_bytes())]
    port = server.add_secure_port("127.0.0.1:0", grpc.ssl_server_credentials(identity))
    server.start()
    try:
        yield port
    finally:
        server.stop(grace=None).wait()
        channel.close()
