"""The gRPC server: generic handlers over thin servicers, health, reflection, limits.

``create_server(...)`` returns ``(server, port)`` like the gRPC examples; tests bind port 0.
Requests are parsed by our own deserializer so an unparseable outer frame is answered
with INVALID_ARGUMENT instead of gRPC's INTERNAL; a servicer method with a ``received``
parameter is also given the bytes its request came as (the CA's CardCInit and
Me-AqCInit, whose request is the frame itself: their Error names it as received, which a
parse and a serialization again may change). Every call is counted and timed here for
the metrics (``gateway.metrics``), with the status it ended with. gRPC Python can either require a
client certificate or not ask for one (there is no "optional"), so the bank runs two
servers: PaymentGateway with mutual TLS for merchants, CertificateAuthority with
server-authenticated TLS for wallets.

Load shedding (``ServerLimits.max_concurrent_rpcs``, calls in flight per worker). gRPC's own
``maximum_concurrent_rpcs`` refuses a call in its poll thread where no code of ours runs, so
the calls it shed never reached the metrics. The server admits calls itself instead: its
pool counts the calls handed to it and not yet finished (queued or running: "in flight"),
and an interceptor, which gRPC calls for every call before handing it to the pool, admits
a call while fewer than the limit are in flight. Any other call is given a handler that,
on a thread of its own, counts it (``metrics.rpc_shed``) and answers RESOURCE_EXHAUSTED
with a ``google.rpc.RetryInfo`` (``SHED_RETRY_SECONDS``) without reading the request, so a
refusal never waits behind the real work queued in the pool. Health checks have a small
reserve above the limit (``HEALTH_RESERVE``) but no thread of their own: a busy worker
still answers SERVING, after the calls queued ahead; a worker whose threads are all stuck
answers late, and a balancer rightly reads it as down.

The backstop. That one thread answers one refusal at a time, each some tens of
microseconds of Python competing for the GIL with the admitted work, so a flood (on the
CA's port no client certificate is needed to send one) could queue refusals faster than
they are answered, each later than the last. gRPC's own limit therefore stays on, above
ours: ``max_concurrent_rpcs + HEALTH_RESERVE + SHED_BACKLOG``. gRPC counts a call as
active from when it is handed to a pool, the server's or the refusals', until it is
answered (grpcio's ``_server.py``, not documented: test_server_admission pins it), so at
most ``HEALTH_RESERVE + SHED_BACKLOG`` refusals ever wait. A call past
the backstop gets gRPC's own refusal in its poll thread, which holds the poll loop back
as a flood should: RESOURCE_EXHAUSTED with the same details, but no RetryInfo, and not
counted in ``setpay_rpc_shed_total`` (gRPC runs the interceptor for it too, but only the
refusal handler counts). Health checks are refused there too: a worker that far behind
with its refusals is overloaded, and a balancer may as well read it so. When the server
stops, the threads of its pool and of the refusals end with it.
"""

from __future__ import annotations

import inspect
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent import futures
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, ParamSpec, TypeVar

import grpc
from google.protobuf import any_pb2, message_factory
from google.protobuf.message import DecodeError, Message
from google.rpc import code_pb2, error_details_pb2, status_pb2  # type: ignore[import-untyped]
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from grpc_status import rpc_status

from gateway import metrics
from gateway.cpu_turn import PROCESS_TURN
from setpay.v1 import services_pb2

log = logging.getLogger("setpay.server")

# How often the health monitor probes the key backend and the database. One second keeps
# NOT_SERVING prompt for a load balancer without adding measurable load.
HEALTH_PROBE_SECONDS = 1.0
# In-flight calls above max_concurrent_rpcs that only health checks may take. A load
# balancer keeps about one check in flight per backend from each of its few nodes; refusing
# one reads as "down" and moves this worker's share onto the others, which are as loaded.
# 16 covers a handful of balancers and still bounds a flood of health calls, shed past it.
HEALTH_RESERVE = 16
# Threads that answer shed calls. A refusal is some tens of microseconds of Python, so one
# thread answers thousands a second; more would only take the GIL from the admitted work.
SHED_THREADS = 1
# Shed calls that may wait for that thread beyond the health reserve, before gRPC's own
# limit refuses new calls in its poll thread (the backstop, module docstring). A refusal
# costs its thread 25-30 us of CPU (measured on the 2-core development machine, RetryInfo
# included): 32 are about a millisecond, and even if every one waited out a whole GIL
# switch interval (5 ms) behind the admitted work, the last of HEALTH_RESERVE +
# SHED_BACKLOG would be answered within a quarter of a second. Room for a burst to get the
# counted refusal and its retry delay; a flood past it gets gRPC's.
SHED_BACKLOG = 32
# The retry delay a refusal asks for (google.rpc.RetryInfo). A worker at its limit answers
# hundreds of calls a second, so in 100 ms it frees tens of places; a longer delay would
# leave callers idle that it could soon take again. The bank's own clients wait up to as
# long (a random 0-100 ms) before their first retry.
SHED_RETRY_SECONDS = 0.1
# gRPC's own words for this refusal, so logs and searches written for it still match (its
# backstop answers with them too).
SHED_DETAILS = "Concurrent RPC limit exceeded!"
_HEALTH_PATH = f"/{health_pb2.DESCRIPTOR.services_by_name['Health'].full_name}/"

_P = ParamSpec("_P")
_T = TypeVar("_T")


@dataclass(frozen=True)
class ServiceBinding:
    """A servicer object bound to a service of ``services.proto``."""

    service_name: str  # e.g. "PaymentGatewayService"
    servicer: object

    @property
    def full_name(self) -> str:
        """The fully qualified gRPC service name."""
        return str(services_pb2.DESCRIPTOR.services_by_name[self.service_name].full_name)


@dataclass(frozen=True)
class ServerLimits:
    """Every limit of the server, named (DESIGN.md 7: every limit is explicit)."""

    max_message_bytes: int
    max_concurrent_rpcs: int  # calls queued or running before new ones are shed
    threads: int
    reuse_port: bool = False


@dataclass(frozen=True)
class TlsConfig:
    """PEM material for TLS; with ``client_ca`` every client must present a certificate
    chaining to it (mutual TLS)."""

    certificate_chain: bytes
    private_key: bytes
    client_ca: bytes | None = None


class _Unparseable:
    """Stands in for a request whose outer frame did not parse."""


_UNPARSEABLE = _Unparseable()


@dataclass(frozen=True, slots=True)
class _Received:
    """A request as parsed, and the bytes it came as (for a method taking ``received``)."""

    message: Message
    data: bytes


def _deserializer(cls: type[Message], *, with_frame: bool = False) -> Callable[[bytes], object]:
    def parse(data: bytes) -> object:
        try:
            message = cls.FromString(data)
        except DecodeError:
            return _UNPARSEABLE
        # gRPC's own bytes object, kept (not copied) until the call ends.
        return _Received(message, data) if with_frame else message

    return parse


def _given_frame(method: Callable[..., Any]) -> Callable[[Any, grpc.ServicerContext], Any]:
    """``method``, called with the parsed request and the bytes it came as."""

    def call(request: _Received, context: grpc.ServicerContext) -> Any:
        return method(request.message, context, received=request.data)

    return call


def _behaviour(
    service: str, name: str, method: Callable[[Any, grpc.ServicerContext], Any]
) -> Callable[[Any, grpc.ServicerContext], Any]:
    def handle(request: Any, context: grpc.ServicerContext) -> Any:
        started = time.perf_counter()
        metrics.rpc_started(name)
        status: grpc.StatusCode | None = grpc.StatusCode.UNKNOWN  # if the method raises
        try:
            if request is _UNPARSEABLE:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, "unparseable request frame")
            with PROCESS_TURN.held():
                response = method(request, context)
            status = None
            return response
        finally:
            # code() is what abort() or set_code() chose (grpc-stubs lacks it; grpcio has it).
            status = context.code() or status  # type: ignore[attr-defined]
            metrics.rpc_finished(service, name, time.perf_counter() - started, status)

    return handle


def _generic_handler(binding: ServiceBinding) -> grpc.GenericRpcHandler:  # type: ignore[type-arg]
    service = services_pb2.DESCRIPTOR.services_by_name[binding.service_name]
    handlers = {}
    for method in service.methods:
        request_cls = message_factory.GetMessageClass(method.input_type)
        behaviour = getattr(binding.servicer, method.name)
        with_frame = "received" in inspect.signature(behaviour).parameters
        if with_frame:
            behaviour = _given_frame(behaviour)
        handlers[method.name] = grpc.unary_unary_rpc_method_handler(
            _behaviour(service.full_name, method.name, behaviour),
            request_deserializer=_deserializer(request_cls, with_frame=with_frame),
            response_serializer=lambda m: m.SerializeToString(),
        )
    return grpc.method_handlers_generic_handler(service.full_name, handlers)


class _InFlightPool(futures.ThreadPoolExecutor):
    """The server's thread pool; counts the calls handed to it and not yet finished."""

    def __init__(self, threads: int) -> None:
        super().__init__(max_workers=threads, thread_name_prefix="rpc")
        # One item per call in flight. A deque's append and pop are thread-safe (its
        # documentation says so), so this path of every call takes no lock: measured a
        # few tenths of a microsecond cheaper per call than a lock around an int.
        self._calls: deque[None] = deque()

    @property
    def in_flight(self) -> int:
        """Calls handed to the pool and not yet finished (queued or running)."""
        return len(self._calls)

    def submit(
        self, fn: Callable[_P, _T], /, *args: _P.args, **kwargs: _P.kwargs
    ) -> futures.Future[_T]:
        """Queue ``fn`` (a call gRPC admitted) and count it until it is done."""
        self._calls.append(None)
        try:
            future = super().submit(fn, *args, **kwargs)
        except BaseException:
            self._calls.pop()
            raise
        # Runs once however the call ends, cancelled unrun included: a slot never leaks.
        future.add_done_callback(self._done)
        return future

    def _done(self, _future: object) -> None:
        self._calls.pop()


def _shed_status() -> grpc.Status:
    """RESOURCE_EXHAUSTED with its RetryInfo in the trailers (gRPC's rich status)."""
    retry = error_details_pb2.RetryInfo()
    retry.retry_delay.FromTimedelta(timedelta(seconds=SHED_RETRY_SECONDS))
    detail = any_pb2.Any()
    detail.Pack(retry)
    status = status_pb2.Status(
        code=code_pb2.RESOURCE_EXHAUSTED, message=SHED_DETAILS, details=[detail]
    )
    return rpc_status.to_status(status)


# Built once, at import: every refusal sends these same trailers, so none pays for them.
_SHED_STATUS = _shed_status()


class _Refusal:
    """The behaviour of a shed call of one method: counted, then RESOURCE_EXHAUSTED with
    its retry delay, the request left unread."""

    def __init__(self, service: str, method: str, pool: futures.ThreadPoolExecutor) -> None:
        self._service = service
        self._method = method
        # grpcio runs a behaviour that carries this attribute on that pool instead of the
        # server's (grpc_health relies on it too). It is not in gRPC's documented API:
        # test_server_admission fails if refusals ever queue behind the admitted calls.
        self.experimental_thread_pool = pool

    def __call__(self, requests: Iterator[object], context: grpc.ServicerContext) -> None:
        # Counted here, where it is answered: a call past gRPC's backstop passes the
        # interceptor too, but gRPC refuses it without running this.
        metrics.rpc_shed(self._service, self._method)
        context.abort_with_status(_SHED_STATUS)


class _Admission(grpc.ServerInterceptor):  # type: ignore[type-arg]
    """Admits a call while fewer than the limit are in flight; hands the others to the
    refusal (``_Refusal``), which counts them.

    grpcio calls this in its poll thread, for one call at a time, and hands an admitted
    call to the pool (``_InFlightPool.submit``) before it calls this for the next: so the
    count read here includes every call admitted before and the limit is never passed.
    That order is grpcio's, not documented; test_server_admission pins it (exactly the
    limit is admitted). Exact counting of shed calls does not depend on it: the refusal
    counts the calls it answers."""

    def __init__(self, pool: _InFlightPool, limit: int) -> None:
        self._pool = pool
        self._limit = limit
        self._health_limit = limit + HEALTH_RESERVE
        self.refusals = futures.ThreadPoolExecutor(
            max_workers=SHED_THREADS, thread_name_prefix="shed"
        )
        # A refusal per method shed so far, made at its first: only methods the server
        # has get here (the others have no handler), so it stays as small as they are few.
        self._shed: dict[str, grpc.RpcMethodHandler] = {}  # type: ignore[type-arg]

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],  # type: ignore[type-arg]
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:  # type: ignore[type-arg]
        """The call's handler if it is admitted (or unknown: gRPC answers UNIMPLEMENTED),
        else the refusal."""
        handler = continuation(handler_call_details)
        in_flight = self._pool.in_flight
        if handler is None or in_flight < self._limit:
            return handler
        path = handler_call_details.method
        if in_flight < self._health_limit and path.startswith(_HEALTH_PATH):
            return handler
        refusal = self._shed.get(path)
        if refusal is None:
            service, _, method = path[1:].partition("/")
            refusal = grpc.stream_unary_rpc_method_handler(_Refusal(service, method, self.refusals))
            self._shed[path] = refusal
        return refusal


class Server(grpc.Server):
    """gRPC's server, whose stop lets the thread pools it was given go once it stopped,
    and which tells how many calls it has in flight."""

    def __init__(
        self, server: grpc.Server, pool: _InFlightPool, refusals: futures.ThreadPoolExecutor
    ) -> None:
        self._server = server
        self._pool = pool
        self._pools = (pool, refusals)

    @property
    def in_flight(self) -> int:
        """Calls admitted and not yet finished (queued or running); refusals not counted."""
        return self._pool.in_flight

    def add_generic_rpc_handlers(
        self,
        generic_rpc_handlers: Iterable[grpc.GenericRpcHandler],  # type: ignore[type-arg]
    ) -> None:
        """As gRPC's."""
        self._server.add_generic_rpc_handlers(generic_rpc_handlers)

    def add_registered_method_handlers(
        self,
        service_name: str,
        method_handlers: dict[str, grpc.RpcMethodHandler],  # type: ignore[type-arg]
    ) -> None:
        """As gRPC's (generated code registers its services' methods with it)."""
        self._server.add_registered_method_handlers(service_name, method_handlers)  # type: ignore[attr-defined]

    def add_insecure_port(self, address: str) -> int:
        """As gRPC's."""
        return self._server.add_insecure_port(address)

    def add_secure_port(self, address: str, server_credentials: grpc.ServerCredentials) -> int:
        """As gRPC's."""
        return self._server.add_secure_port(address, server_credentials)

    def start(self) -> None:
        """As gRPC's."""
        self._server.start()

    def wait_for_termination(self, timeout: float | None = None) -> bool:
        """As gRPC's."""
        return self._server.wait_for_termination(timeout)

    def stop(self, grace: float | None = None) -> threading.Event:
        """As gRPC's; once it has stopped, the pools' threads end as they fall idle."""
        stopped = self._server.stop(grace)
        if stopped.is_set():  # without grace gRPC returns once it has stopped
            self._let_pools_go()
        else:
            threading.Thread(
                target=self._let_pools_go, args=(stopped,), name="server-stop", daemon=True
            ).start()
        return stopped

    def _let_pools_go(self, stopped: threading.Event | None = None) -> None:
        # Not before gRPC has stopped: until then its poll thread may still hand a call to
        # a pool, and a pool that was shut down raises there. Nor waiting for the pools: a
        # call still running (gRPC cancels it at stop) ends on its own thread.
        if stopped is not None:
            stopped.wait()
        for pool in self._pools:
            pool.shutdown(wait=False)


class _Health(health.HealthServicer):
    """grpc_health's servicer, whose Watch streams end once the server is stopping.

    A Watch stream is a call in flight until it ends, and gRPC's ``stop(grace)`` waits for
    every call: one open stream (a load balancer's, a client's own health checking) held
    every stopping worker for its whole grace period with nothing else to finish.
    ``end_watches`` ends each stream (status OK) once NOT_SERVING has been sent on it, and
    a Watch that starts after that gets the status and its end at once. The health
    checking protocol has a client retry a Watch that ends with any status but
    UNIMPLEMENTED, and NOT_SERVING has already told it to go elsewhere.
    """

    def __init__(self) -> None:
        super().__init__(experimental_non_blocking=True)
        self._ending = threading.Lock()
        self._ended = False
        self._watches: set[Callable[[object], None]] = set()

    def Watch(  # noqa: N802 - gRPC's method name
        self,
        request: health_pb2.HealthCheckRequest,
        context: grpc.ServicerContext,
        send_response_callback: Callable[[object], None] | None = None,
    ) -> None:
        """As grpc_health's (non-blocking), ended by ``end_watches``."""
        assert send_response_callback is not None  # non-blocking, as built above
        send = _once_ended(send_response_callback)
        with self._ending:
            super().Watch(request, context, send)  # sends the current status
            if self._ended:
                send(None)
                return
            self._watches.add(send)
        context.add_callback(lambda: self._forget(send))

    def _forget(self, send: Callable[[object], None]) -> None:
        with self._ending:
            self._watches.discard(send)

    def end_watches(self) -> None:
        """End every Watch stream, and any that starts from now on (after its status)."""
        with self._ending:
            self._ended = True
            watches, self._watches = self._watches, set()
        for send in watches:
            send(None)


def _once_ended(send: Callable[[object], None]) -> Callable[[object], None]:
    """``send``, which ignores everything once it was given None (the end of its stream):
    the servicer's own close callback gives it None again, and gRPC would try to send a
    second status."""
    ended = threading.Lock()
    done = False

    def once(response: object) -> None:
        nonlocal done
        with ended:
            if done:
                return
            done = response is None
            send(response)

    return once


class HealthMonitor:
    """Feeds grpc.health.v1 from probes of the key backend and the database."""

    def __init__(
        self,
        servicer: _Health,
        services: Sequence[str],
        probes: Sequence[Callable[[], None]],
        interval: float = HEALTH_PROBE_SECONDS,
    ) -> None:
        self._servicer = servicer
        self._services = ("", *services)
        self._probes = probes
        self._interval = interval
        self._stop = threading.Event()
        # Held from a probe's "still running?" check to the end of its publishing, and by
        # stop(): a probe that ends as the server stops can never publish SERVING after
        # stop() published NOT_SERVING.
        self._publishing = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="health", daemon=True)
        self.serving = False

    def _set(self, serving: bool) -> None:
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if serving
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for name in self._services:
            self._servicer.set(name, status)
        if serving != self.serving:
            log.log(logging.INFO if serving else logging.WARNING, "health: %s",
                    "SERVING" if serving else "NOT_SERVING")  # fmt: skip
        self.serving = serving

    def probe(self) -> bool:
        """Run every probe once; set and return the resulting health."""
        ok = True
        for probe in self._probes:
            try:
                probe()
            except Exception as exc:  # noqa: BLE001 - any failure means not serving
                log.warning("health probe failed: %s", type(exc).__name__)
                ok = False
        with self._publishing:
            if not self._stop.is_set():
                self._set(ok)
        return ok

    def start(self) -> None:
        """Probe once now, then every interval in the background."""
        self.probe()
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self.probe()

    def stop(self) -> None:
        """Stop probing, report NOT_SERVING (the server is going away), and then end the
        Watch streams, which would otherwise hold the server's stop for its grace period."""
        with self._publishing:
            self._stop.set()
            self._set(False)
        self._servicer.end_watches()


def create_server(
    bindings: Sequence[ServiceBinding],
    listen: str,
    limits: ServerLimits,
    *,
    tls: TlsConfig | None = None,
    reflection_enabled: bool = True,
    probes: Sequence[Callable[[], None]] = (),
) -> tuple[Server, int, HealthMonitor]:
    """Build and start a server for ``bindings``; returns it, its bound port and health.

    Raises ``OSError`` if ``listen`` cannot be bound."""
    options = [
        ("grpc.max_receive_message_length", limits.max_message_bytes),
        ("grpc.max_send_message_length", limits.max_message_bytes),
        ("grpc.so_reuseport", 1 if limits.reuse_port else 0),
    ]
    pool = _InFlightPool(limits.threads)
    admission = _Admission(pool, limits.max_concurrent_rpcs)
    # gRPC's own limit is only the backstop (module docstring), above ours, the health
    # reserve and the refusals let wait: short of it, every refusal is ours, counted.
    server = grpc.server(
        pool,
        handlers=[_generic_handler(b) for b in bindings],
        interceptors=[admission],
        options=options,
        maximum_concurrent_rpcs=limits.max_concurrent_rpcs + HEALTH_RESERVE + SHED_BACKLOG,
    )
    health_servicer = _Health()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    names = [b.full_name for b in bindings]
    if reflection_enabled:
        reflection.enable_server_reflection(
            (*names, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
             reflection.SERVICE_NAME),
            server,
        )  # fmt: skip
    try:
        if tls is None:
            port = server.add_insecure_port(listen)
        else:
            credentials = grpc.ssl_server_credentials(
                [(tls.private_key, tls.certificate_chain)],
                root_certificates=tls.client_ca,
                require_client_auth=tls.client_ca is not None,
            )
            port = server.add_secure_port(listen, credentials)
    except RuntimeError as exc:  # grpcio's way of saying the bind failed
        raise OSError(f"could not bind {listen}") from exc
    if port == 0:
        raise OSError(f"could not bind {listen}")
    monitor = HealthMonitor(health_servicer, names, probes)
    server.start()
    monitor.start()
    return Server(server, pool, admission.refusals), port, monitor
