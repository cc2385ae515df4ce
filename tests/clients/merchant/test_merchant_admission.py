"""The Merchant service sheds as the bank does: past its limit of calls in flight a call is
refused at once, RESOURCE_EXHAUSTED with a retry delay, and counted; health checks keep a
reserve; and header ids of the wrong size are not echoed.

A real gRPC server on port 0 (``start_server``) over a checkout whose PInit waits for the
test: calls stay in flight for as long as a test wants. The checkout is a test double: what
is under test is the server around it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import cast

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status

from clients.merchant import servicer as servicer_module
from clients.merchant.checkout import Checkout
from clients.merchant.servicer import MerchantServicer, ServerSettings, start_server
from hsm.software import SoftwareBackend
from setcore.admission import SHED_DETAILS, SHED_RETRY_SECONDS
from setcore.credentials import Credentials
from setcore.errors import ErrorCode, fail
from setcore.freshness import ID_BYTES, MAX_LID_BYTES
from setcore.profiles import EC
from setpay.v1 import purchase_pb2
from tests.clients.merchant.metrics_support import samples_of, scrape_text, value
from tests.setcore.certified import certify
from tests.setcore.echo_support import assert_echoed_only_at_its_size, header_with

PINIT = "/setpay.v1.MerchantService/PInit"
# Every wait is bounded; a prompt answer takes milliseconds, a loaded CI machine far more.
WAIT_SECONDS = 10.0


class _HeldCheckout:
    """PInit waits for ``release`` and answers an empty PInitRes; or, ``refuse``, refuses
    at once as a malformed request is refused (DECODING_FAILURE)."""

    def __init__(self, refuse: bool) -> None:
        self.release = threading.Event()
        self.entered = 0
        self._refuse = refuse

    def pinit(self, request: purchase_pb2.PInitRequest) -> purchase_pb2.PInitResponse:
        if self._refuse:
            raise fail(ErrorCode.ERROR_CODE_DECODING_FAILURE, "malformed PInitReq")
        self.entered += 1
        self.release.wait(WAIT_SECONDS * 3)
        return purchase_pb2.PInitResponse()


class _Served:
    def __init__(
        self, limit: int, threads: int, credentials: Credentials | None = None, refuse: bool = False
    ) -> None:
        self.checkout = _HeldCheckout(refuse)
        # Without credentials no call may be refused: an Error is signed with them.
        servicer = MerchantServicer(cast(Checkout, self.checkout), cast(Credentials, credentials))
        settings = ServerSettings(
            listen="127.0.0.1:0", threads=threads, max_concurrent_rpcs=limit, tls=None
        )
        self.server, port = start_server(servicer, settings)
        self.channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        self.pinit = self.channel.unary_unary(
            PINIT, request_serializer=bytes, response_deserializer=bytes
        )
        self.check = health_pb2_grpc.HealthStub(self.channel).Check

    def entered(self, count: int) -> None:
        deadline = time.monotonic() + WAIT_SECONDS
        while self.checkout.entered < count:
            assert time.monotonic() < deadline, f"{self.checkout.entered} of {count} arrived"
            time.sleep(0.01)

    def close(self) -> None:
        self.checkout.release.set()
        self.channel.close()
        self.server.stop(None).wait()


@pytest.fixture
def served() -> Iterator[_Served]:
    # A thread more than the limit: a health check finds it free (the reserve admits the
    # check; it still needs a thread, as the bank's do: ``setcore.admission``).
    s = _Served(limit=2, threads=3)
    yield s
    s.close()


def _retry_delay(error: grpc.RpcError) -> timedelta | None:
    status = rpc_status.from_call(cast(grpc.Call, error))
    if status is None:
        return None
    for detail in status.details:
        if detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            info = error_details_pb2.RetryInfo()
            detail.Unpack(info)
            return cast(timedelta, info.retry_delay.ToTimedelta())
    return None


def test_a_call_past_the_limit_is_shed_at_once_with_a_retry_delay_and_counted(
    served: _Served, page: int
) -> None:
    held = [served.pinit.future(b"", timeout=WAIT_SECONDS * 3) for _ in range(2)]
    served.entered(2)
    started = time.monotonic()
    with pytest.raises(grpc.RpcError) as exc:
        served.pinit(b"", timeout=WAIT_SECONDS)
    assert time.monotonic() - started < WAIT_SECONDS / 2  # not queued behind the held
    assert exc.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert exc.value.details() == SHED_DETAILS
    assert _retry_delay(exc.value) == timedelta(seconds=SHED_RETRY_SECONDS)
    # Health checks have their reserve: a busy merchant still answers SERVING.
    answer = served.check(health_pb2.HealthCheckRequest(), timeout=WAIT_SECONDS)
    assert answer.status == health_pb2.HealthCheckResponse.SERVING
    served.checkout.release.set()
    for call in held:
        assert call.result() == b""
    samples = samples_of(scrape_text(page))
    assert value(samples, "setpay_merchant_rpc_shed_total", method="PInit") == 1
    assert value(samples, "setpay_merchant_rpc_requests_total", method="PInit") == 2


@pytest.mark.parametrize(
    ("field", "size", "echoed"),
    [
        ("rrpid", ID_BYTES, True),
        ("rrpid", 600_000, False),
        ("rrpid", ID_BYTES + 1, False),
        ("xid", 600_000, False),
        ("lid_c", MAX_LID_BYTES, True),
        ("lid_m", 600_000, False),
    ],
)
def test_a_refusal_echoes_a_header_id_only_at_its_size(field: str, size: int, echoed: bool) -> None:
    # An id of hundreds of kilobytes, echoed in the reply's header and its Error, made a
    # reply past the merchant's message limit: gRPC refused to send it and the wallet got
    # RESOURCE_EXHAUSTED instead of the SET Error meant for it.
    credentials = certify(SoftwareBackend.ephemeral(), EC).merchant
    s = _Served(limit=2, threads=2, credentials=credentials, refuse=True)
    try:
        sent = b"i" * size
        request = purchase_pb2.PInitRequest(header=header_with(field, sent))
        reply = purchase_pb2.PInitResponse.FromString(
            s.pinit(request.SerializeToString(), timeout=WAIT_SECONDS)
        )
    finally:
        s.close()
    assert reply.error.signed_error  # the SET Error meant for it
    assert_echoed_only_at_its_size(reply.header, reply.error, field, sent, echoed)


class _GaveUp:
    """A call's context whose deadline passed while it was queued, before gRPC's poll
    thread marked it inactive (the window gRPC's own check leaves open)."""

    def __init__(self) -> None:
        self.aborted: grpc.StatusCode | None = None

    def time_remaining(self) -> float:
        return -0.01

    def is_active(self) -> bool:
        return True

    def abort(self, code: grpc.StatusCode, details: str) -> None:
        self.aborted = code
        raise grpc.RpcError(details)


def test_a_call_found_past_its_deadline_is_not_handled() -> None:
    handled: list[object] = []
    handle = servicer_module._guarded(lambda request, context: handled.append(request))
    context = _GaveUp()
    request = servicer_module._parser(purchase_pb2.PInitRequest)(b"")
    with pytest.raises(grpc.RpcError):
        handle(request, cast(grpc.ServicerContext, context))
    assert handled == [] and context.aborted is grpc.StatusCode.DEADLINE_EXCEEDED


def test_a_call_whose_wallet_gave_up_while_queued_is_not_handled() -> None:
    """Pins grpcio's own behaviour as much as ours: grpcio drops a queued call whose
    client gave up before it reaches a handler, so this passes without ``_guarded``'s
    check too; the unit test of ``_guarded`` above covers the window grpcio leaves."""
    # One thread, held: the second call waits in the queue past its wallet's deadline.
    s = _Served(limit=4, threads=1)
    try:
        held = s.pinit.future(b"", timeout=WAIT_SECONDS * 3)
        s.entered(1)
        with pytest.raises(grpc.RpcError) as exc:
            s.pinit(b"", timeout=0.3)
        assert exc.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
        s.checkout.release.set()
        assert held.result() == b""
        # The queued call's turn came after its wallet gave up: skipped, not handled.
        answered = s.pinit(b"", timeout=WAIT_SECONDS)
        assert answered == b""
        assert s.checkout.entered == 2  # the first and the last, never the one given up
    finally:
        s.close()


def test_the_threads_of_the_calls_and_the_refusals_end_with_the_server() -> None:
    before = set(threading.enumerate())
    s = _Served(limit=1, threads=2)
    held = s.pinit.future(b"", timeout=WAIT_SECONDS * 3)
    s.entered(1)
    with pytest.raises(grpc.RpcError):  # shed: a refusal thread starts
        s.pinit(b"", timeout=WAIT_SECONDS)
    s.checkout.release.set()
    assert held.result() == b""
    started = [t for t in set(threading.enumerate()) - before if t.name.startswith(("rpc", "shed"))]
    assert {t.name.split("_")[0] for t in started} == {"rpc", "shed"}
    s.close()
    for thread in started:
        thread.join(WAIT_SECONDS)
    assert [t.name for t in started if t.is_alive()] == []
