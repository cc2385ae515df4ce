"""A call and the worker's turn to compute: bounded waits, and nothing done for a client
that gave up (``gateway.server``, ``gateway.cpu_turn``).

A real gRPC server on port 0. The turn is held the way a token call that does not return
holds it: by a handler blocked inside it (``_Stuck.Authorize``), or by the test's own
thread (the server shares the process's turn). Waits poll what they wait for, under a
deadline; the only fixed times are the deadlines and turn waits under test.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import pytest
from prometheus_client import CollectorRegistry

from gateway.cpu_turn import PROCESS_TURN
from gateway.server import ServerLimits, ServiceBinding, create_server
from setpay.v1 import authorization_pb2, capture_pb2, services_pb2_grpc

from .actors import Merchant, World, auth_request, authorize, purchase, register_cardholder

PG = "setpay.v1.PaymentGatewayService"
# Every wait is bounded; a prompt answer takes milliseconds, a loaded CI machine far more.
WAIT_SECONDS = 10.0
# A client's deadline that passes while the turn is held.
SHORT_DEADLINE = 0.5


class _Stuck(services_pb2_grpc.PaymentGatewayServiceServicer):
    """Authorize blocks inside the turn until ``release`` (a token call that does not
    return); Capture records that its handler ran, and waits for ``capture_may_end``."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.stuck = threading.Event()
        self.capture_may_end = threading.Event()
        self.capture_may_end.set()
        self.ran: list[str] = []

    def Authorize(self, request: Any, context: grpc.ServicerContext) -> Any:
        self.stuck.set()
        self.release.wait(WAIT_SECONDS * 3)
        return authorization_pb2.AuthorizeResponse()

    def Capture(self, request: Any, context: grpc.ServicerContext) -> Any:
        self.ran.append("Capture")
        self.capture_may_end.wait(WAIT_SECONDS)
        return capture_pb2.CaptureResponse()


class _Served:
    """A running server over ``_Stuck``, and a channel to it."""

    def __init__(self, turn_wait_seconds: float) -> None:
        self.servicer = _Stuck()
        limits = ServerLimits(
            max_message_bytes=1 << 20, max_concurrent_rpcs=64, threads=8,
            turn_wait_seconds=turn_wait_seconds,
        )  # fmt: skip
        self.server, port, self.health = create_server(
            [ServiceBinding("PaymentGatewayService", self.servicer)], "127.0.0.1:0", limits,
            reflection_enabled=False,
        )  # fmt: skip
        self.channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        self.authorize, self.capture, self.unknown = (
            self.channel.unary_unary(f"/{PG}/{m}", request_serializer=bytes,
                                     response_deserializer=bytes)
            for m in ("Authorize", "Capture", "NoSuchMethod")
        )  # fmt: skip

    def hold_the_turn(self) -> grpc.Future:
        """An Authorize that stays inside the turn until ``servicer.release``."""
        held = self.authorize.future(b"", timeout=WAIT_SECONDS * 3)
        assert self.servicer.stuck.wait(WAIT_SECONDS), "the Authorize never started"
        return held

    def caught_up(self) -> None:
        """Return once the server's poll thread has handled what reached it on this
        channel before now (a cancellation): an unknown method is refused there, after."""
        with pytest.raises(grpc.RpcError) as exc:
            self.unknown(b"", timeout=WAIT_SECONDS)
        assert exc.value.code() is grpc.StatusCode.UNIMPLEMENTED

    def close(self) -> None:
        self.servicer.release.set()
        self.servicer.capture_may_end.set()
        self.channel.close()
        self.health.stop()
        self.server.stop(None).wait()


@pytest.fixture
def served() -> Iterator[Callable[..., _Served]]:
    opened: list[_Served] = []

    def open_one(turn_wait_seconds: float = WAIT_SECONDS) -> _Served:
        opened.append(_Served(turn_wait_seconds))
        return opened[-1]

    yield open_one
    for s in opened:
        s.close()


def _counted(registry: CollectorRegistry, method: str) -> float:
    """Calls of ``method`` counted as handled."""
    value = registry.get_sample_value(
        "setpay_rpc_requests_total", {"service": PG, "method": method}
    )
    return value or 0.0


def _errors(registry: CollectorRegistry, method: str) -> dict[str, float]:
    """``method``'s calls counted by the status they ended with, other than OK."""
    return {
        sample.labels["code"]: sample.value
        for family in registry.collect()
        for sample in family.samples
        if sample.name == "setpay_rpc_errors_total" and sample.labels["method"] == method
    }


def _ended_in_error(registry: CollectorRegistry, method: str) -> Callable[[], bool]:
    """Whether ``method``'s one call is counted, its status too: ``metrics.rpc_finished``
    counts the call handled first and its error last, so a wait for the first alone may
    read the errors before the call's own."""
    return lambda: _counted(registry, method) == 1.0 and bool(_errors(registry, method))


def _wait_for(what: str, check: Callable[[], bool]) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while not check():
        assert time.monotonic() < deadline, f"still waiting: {what}"
        time.sleep(0.01)


def test_a_call_without_a_deadline_gets_unavailable_when_the_turn_stays_taken(
    registry: CollectorRegistry, served: Callable[..., _Served]
) -> None:
    s = served(turn_wait_seconds=0.3)
    s.hold_the_turn()
    started = time.monotonic()
    call = s.capture.future(b"")  # no deadline: only the server's bound ends its wait
    _wait_for("an answer to the Capture while the turn is held", call.done)
    error = call.exception()
    assert error is not None and error.code() is grpc.StatusCode.UNAVAILABLE, error
    assert "send the request again" in error.details()
    assert time.monotonic() - started < WAIT_SECONDS
    assert _errors(registry, "Capture") == {"UNAVAILABLE": 1.0}
    s.servicer.release.set()
    _wait_for("the Authorize to end", lambda: _counted(registry, "Authorize") == 1.0)
    assert s.servicer.ran == []  # nothing was done for it, then or later
    # The waiter that gave up is no longer counted as wanting the turn.
    _wait_for("nobody to want the turn", lambda: PROCESS_TURN.wanting == 0)


def test_a_call_whose_deadline_passes_waiting_for_the_turn_ends_then_and_is_not_handled(
    registry: CollectorRegistry, served: Callable[..., _Served]
) -> None:
    s = served()  # a bound longer than the deadline: the deadline ends the wait
    held = s.hold_the_turn()
    with pytest.raises(grpc.RpcError) as exc:
        s.capture(b"", timeout=SHORT_DEADLINE)
    assert exc.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
    # Its thread gave up at its deadline, while the turn was still taken ...
    _wait_for("the Capture to be counted with the turn still held",
              _ended_in_error(registry, "Capture"))  # fmt: skip
    assert not s.servicer.release.is_set()
    assert _errors(registry, "Capture") == {"DEADLINE_EXCEEDED": 1.0}
    # ... and its handler does not run once the turn is free.
    s.servicer.release.set()
    # Answered once counted (``metrics.rpc_finished`` runs before the answer goes).
    _wait_for("the Authorize to end", held.done)
    assert _counted(registry, "Authorize") == 1.0
    assert s.servicer.ran == []
    # Both are calls the worker handled (what a load generator matches its requests to).
    assert registry.get_sample_value("setpay_worker_rpcs_total", {"worker": "0"}) == 2.0


def test_a_call_cancelled_while_waiting_for_the_turn_is_not_handled(
    registry: CollectorRegistry, served: Callable[..., _Served]
) -> None:
    s = served()
    s.hold_the_turn()
    call = s.capture.future(b"", timeout=WAIT_SECONDS)
    _wait_for("the Capture to wait for the turn", lambda: PROCESS_TURN.wanting == 2)
    assert call.cancel()
    s.caught_up()
    s.servicer.release.set()  # the Capture gets the turn, its client long gone
    _wait_for("the Capture to be counted", _ended_in_error(registry, "Capture"))
    assert s.servicer.ran == []
    assert _errors(registry, "Capture") == {"CANCELLED": 1.0}


def test_a_call_whose_deadline_passes_while_it_is_handled_is_counted_as_such(
    registry: CollectorRegistry, served: Callable[..., _Served]
) -> None:
    s = served()
    s.servicer.capture_may_end.clear()
    with pytest.raises(grpc.RpcError) as exc:
        s.capture(b"", timeout=SHORT_DEADLINE)
    assert exc.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
    s.servicer.capture_may_end.set()  # its handler returns an answer nobody will get
    _wait_for("the Capture to be counted", _ended_in_error(registry, "Capture"))
    assert s.servicer.ran == ["Capture"]
    assert _errors(registry, "Capture") == {"DEADLINE_EXCEEDED": 1.0}


def _decisions(registry: CollectorRegistry) -> float:
    return sum(
        sample.value
        for family in registry.collect()
        for sample in family.samples
        if sample.name == "setpay_authorizations_total"
    )


def test_an_authorization_given_up_waiting_for_the_turn_holds_no_funds(
    registry: CollectorRegistry, ec_world: World, ec_merchant: Merchant
) -> None:
    cardholder = register_cardholder(ec_world, limit=1000)
    first, _ = auth_request(ec_merchant, purchase(ec_merchant, cardholder, 600))
    second = purchase(ec_merchant, cardholder, 600)
    with PROCESS_TURN.held():  # stuck, as behind a token call that does not return
        with pytest.raises(grpc.RpcError) as exc:
            ec_world.gateway.Authorize(first, timeout=SHORT_DEADLINE)
        assert exc.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
        # The turn held until the first call ended on the server too: the server's
        # deadline is the client's plus the call's transit, and a turn let go as the
        # client gave up was taken, on a loaded machine, by the call still within its
        # deadline there, which then ran and held the funds.
        _wait_for("the first call to end", _ended_in_error(registry, "Authorize"))
    # The funds the first would have held are still there for the second.
    result = authorize(ec_world, ec_merchant, second)
    header = result.data.auth_res_payload.auth_header
    assert authorization_pb2.AuthCode.Name(header.auth_code) == "AUTH_CODE_APPROVED"
    # The first is a call handled, with its client's status, and no decision.
    assert _errors(registry, "Authorize") == {"DEADLINE_EXCEEDED": 1.0}
    assert _counted(registry, "Authorize") == 2.0
    assert _decisions(registry) == 1.0
