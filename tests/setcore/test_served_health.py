"""``ServedHealth`` alone, driven as gRPC drives it (a context and a send callback), for the
moments a real server makes hard to reach: a Watch whose call is already over when it
runs, and one that comes before the server has published a status. The servers' own
tests (``test_health_watch_names``, ``test_merchant_health_names``) use real servers."""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

import grpc
import pytest
from grpc_health.v1 import health_pb2

from setcore.served_health import ServedHealth

SERVED = "setpay.v1.MerchantService"
SERVING = health_pb2.HealthCheckResponse.SERVING
UNKNOWN = health_pb2.HealthCheckResponse.SERVICE_UNKNOWN


class _Context:
    """A call's context: over already (``over``), or keeping its close callbacks."""

    def __init__(self, over: bool = False) -> None:
        self.over = over
        self.callbacks: list[Callable[[], None]] = []

    def add_callback(self, callback: Callable[[], None]) -> bool:
        if self.over:
            return False
        self.callbacks.append(callback)
        return True

    def end(self) -> None:
        self.over = True
        for callback in self.callbacks:
            callback()


def _watch(servicer: ServedHealth, name: str, context: _Context) -> list[int]:
    sent: list[int] = []

    def send(response: object) -> None:
        if response is not None:
            sent.append(cast(health_pb2.HealthCheckResponse, response).status)

    servicer.Watch(
        health_pb2.HealthCheckRequest(service=name), cast(grpc.ServicerContext, context), send
    )
    return sent


def test_a_watch_whose_call_is_already_over_is_not_kept() -> None:
    servicer = ServedHealth((SERVED,))
    assert _watch(servicer, SERVED, _Context(over=True)) == [UNKNOWN]  # no status set yet
    assert _watch(servicer, "", _Context(over=True)) == [SERVING]
    assert all(not sends for sends in servicer._send_response_callbacks.values())


def test_a_watch_before_the_first_status_is_told_it_when_set_and_leaves_when_ended() -> None:
    servicer = ServedHealth((SERVED,))
    context = _Context()
    sent = _watch(servicer, SERVED, context)
    servicer.set(SERVED, SERVING)
    assert sent == [UNKNOWN, SERVING]
    context.end()
    assert servicer._send_response_callbacks == {SERVED: set()}


def test_a_name_not_served_is_told_unknown_keeps_no_callback_and_cannot_be_set() -> None:
    servicer = ServedHealth((SERVED,))
    context = _Context()
    assert _watch(servicer, "setpay.v1.Other", context) == [UNKNOWN]
    assert context.callbacks == [] and servicer._send_response_callbacks == {}
    with pytest.raises(ValueError, match="not served here"):
        servicer.set("setpay.v1.Other", SERVING)
    assert servicer._server_status == {"": SERVING}
    servicer.serve(["setpay.v1.Other"])
    servicer.set("setpay.v1.Other", SERVING)
    assert servicer.served == {"", SERVED, "setpay.v1.Other"}


def test_a_blocking_watch_is_refused() -> None:
    """gRPC gives a non-blocking Watch its send callback; without one there is no stream
    to answer on, and nothing is kept."""
    servicer = ServedHealth()
    with pytest.raises(TypeError, match="non-blocking"):
        servicer.Watch(health_pb2.HealthCheckRequest(), cast(grpc.ServicerContext, _Context()))
    assert servicer._send_response_callbacks == {}
