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

A call computes under the worker's turn (``gateway.cpu_turn``), waited for at most until
its deadline and never longer than ``ServerLimits.turn_wait_seconds``: a call that gets no
turn in time is answered UNAVAILABLE without its handler running (nothing is stored; the
client sends it again), or, once its deadline has passed, ends DEADLINE_EXCEEDED as its
client already saw. Once it has the turn, a call whose client has given up (deadline
passed, cancelled) is not handled either: nothing would be decided after its client was
told it failed. Such a call is still counted as a call handled, with the status its client
got; gRPC never sets a code on the context when a deadline passes or a client cancels, so
the metrics take it from the call's state.

Server reflection (on unless turned off) is grpc_reflection's servicer, whose streams a
stop ends (``EndingReflection``). Load shedding is ``gateway.admission``'s, health
``gateway.health_monitor``'s.
"""

from __future__ import annotations

import inspect
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent import futures
from dataclasses import dataclass
from typing import Any, NoReturn

import grpc
from google.protobuf import message_factory
from google.protobuf.message import DecodeError, Message
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2

from gateway import metrics
from gateway.admission import HEALTH_RESERVE, SHED_BACKLOG, Admission, InFlightPool
from gateway.cpu_turn import PROCESS_TURN, TurnNotFree
from gateway.health_monitor import HealthMonitor, OpenStreams, WatchEndingHealth
from setcore.admission import given_up, release_pools
from setpay.v1 import services_pb2


@dataclass(frozen=True)
class ServiceBinding:
    """A servicer object bound to a service of ``services.proto``."""

    service_name: str  # e.g. "PaymentGatewayService"
    servicer: object

    @property
    def full_name(self) -> str:
        """The fully qualified gRPC service name."""
        return str(services_pb2.DESCRIPTOR.services_by_name[self.service_name].full_name)


#: Longest a call waits for the worker's turn to compute, whatever its deadline (and the
#: only bound for a call without one). A call computes for about a millisecond and the
#: ledger's waits are taken aside, so a turn taken for seconds means its holder is stuck
#: (a token call that does not return): the waiters are told UNAVAILABLE, to send the same
#: request again, instead of being held with it. 5 s as the key backend's own wait for a
#: token session (``hsm.token_session.DEFAULT_POOL_WAIT_SECONDS``), for the same reason.
TURN_WAIT_SECONDS = 5.0


@dataclass(frozen=True)
class ServerLimits:
    """Every limit of the server, named (DESIGN.md 7: every limit is explicit)."""

    max_message_bytes: int
    max_concurrent_rpcs: int  # calls queued or running before new ones are shed
    threads: int
    reuse_port: bool = False
    turn_wait_seconds: float = TURN_WAIT_SECONDS


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


def _unless_given_up(context: grpc.ServicerContext) -> None:
    """End (``abort``) a call whose client gave up while it waited: whatever it would
    decide, its client was told it failed."""
    gone = given_up(context)
    if gone is not None:
        context.abort(gone, "the client gave up before the call was handled")


def _no_turn(context: grpc.ServicerContext, wait_seconds: float) -> NoReturn:
    """End (``abort``) a call that found the turn taken for all of its wait."""
    _unless_given_up(context)  # its deadline ended the wait: its client knows
    context.abort(
        grpc.StatusCode.UNAVAILABLE,
        f"the gateway worker had no turn to compute within {wait_seconds:g} s; "
        "nothing was done, send the request again",
    )


def _behaviour(
    service: str,
    name: str,
    method: Callable[[Any, grpc.ServicerContext], Any],
    turn_wait_seconds: float,
) -> Callable[[Any, grpc.ServicerContext], Any]:
    def handle(request: Any, context: grpc.ServicerContext) -> Any:
        started = time.perf_counter()
        metrics.rpc_started(name)
        status: grpc.StatusCode | None = grpc.StatusCode.UNKNOWN  # if the method raises
        try:
            if request is _UNPARSEABLE:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, "unparseable request frame")
            try:
                with PROCESS_TURN.held(min(context.time_remaining(), turn_wait_seconds)):
                    _unless_given_up(context)
                    response = method(request, context)
            except TurnNotFree:  # only a wait for the turn raises it, never a holder
                _no_turn(context, turn_wait_seconds)
            status = None
            return response
        finally:
            # code() is what abort() or set_code() chose (grpc-stubs lacks it; grpcio has
            # it); gRPC sets none when the client's deadline passes or it cancels.
            code = context.code() or given_up(context)  # type: ignore[attr-defined]
            metrics.rpc_finished(service, name, time.perf_counter() - started, code or status)

    return handle


def _generic_handler(binding: ServiceBinding, turn_wait_seconds: float) -> grpc.GenericRpcHandler:  # type: ignore[type-arg]
    service = services_pb2.DESCRIPTOR.services_by_name[binding.service_name]
    handlers = {}
    for method in service.methods:
        request_cls = message_factory.GetMessageClass(method.input_type)
        behaviour = getattr(binding.servicer, method.name)
        with_frame = "received" in inspect.signature(behaviour).parameters
        if with_frame:
            behaviour = _given_frame(behaviour)
        handlers[method.name] = grpc.unary_unary_rpc_method_handler(
            _behaviour(service.full_name, method.name, behaviour, turn_wait_seconds),
            request_deserializer=_deserializer(request_cls, with_frame=with_frame),
            response_serializer=lambda m: m.SerializeToString(),
        )
    return grpc.method_handlers_generic_handler(service.full_name, handlers)


class EndingReflection:
    """grpc_reflection's servicer, whose streams are no calls a stop waits for or cuts.

    A reflection stream stays open as long as its client keeps it (grpcurl closes it at
    once; a GUI client may hold one idle for its whole session), on a pool thread waiting
    for the next request. gRPC's ``stop(grace)`` waits for every call: one idle stream held
    every stop for its whole grace period, and was counted as a call cut. Its streams
    therefore run on the pool's stream lane (``InFlightPool.streams``: not in the count of
    calls cut, and on threads of their own, so that streams held open and idle never hold
    the threads the calls need; ``setcore.admission`` sheds a stream past the lane's
    threads), and ``end_streams`` cancels each when the server stops: gRPC gives a server
    no other way to end a stream whose handler waits for a request. Its client sees the
    stream fail (CANCELLED, or UNAVAILABLE if the server's shutdown reaches it first) and
    sends its next query to a server that serves; a stream that starts after that is
    answered UNAVAILABLE at once.
    """

    def __init__(self, service_names: Sequence[str], lane: futures.ThreadPoolExecutor) -> None:
        # Any: its stubs type the stream method as returning None, not the responses.
        self._servicer: Any = reflection.ReflectionServicer(service_names)
        self._lane = lane
        self._streams: OpenStreams[grpc.ServicerContext] = OpenStreams()

    def handler(self) -> grpc.GenericRpcHandler:  # type: ignore[type-arg]
        """The service's handler, its streams run on the lane."""
        info = grpc.stream_stream_rpc_method_handler(
            _OnLane(self._info, self._lane),
            request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
            response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString,
        )
        return grpc.method_handlers_generic_handler(
            reflection.SERVICE_NAME, {"ServerReflectionInfo": info}
        )

    def _info(
        self, request_iterator: Iterator[Any], context: grpc.ServicerContext
    ) -> Iterator[Any]:
        """ServerReflectionInfo as grpc_reflection's, ended by ``end_streams``."""
        if not self._streams.open(context, context):
            context.abort(grpc.StatusCode.UNAVAILABLE, "the server is stopping")
        yield from self._servicer.ServerReflectionInfo(request_iterator, context)

    def end_streams(self) -> None:
        """Cancel every stream, and answer any that starts from now on UNAVAILABLE."""
        # grpc.RpcContext's cancel, documented (grpc-stubs lacks its types).
        self._streams.end_all(lambda context: context.cancel())  # type: ignore[no-untyped-call]


class _OnLane:
    """A behaviour grpcio runs on ``lane`` instead of the server's pool (``Refusal`` in
    ``gateway.admission`` says how)."""

    def __init__(
        self, method: Callable[[Any, grpc.ServicerContext], Any], lane: futures.ThreadPoolExecutor
    ) -> None:
        self._method = method
        self.experimental_thread_pool = lane

    def __call__(self, requests: Any, context: grpc.ServicerContext) -> Any:
        return self._method(requests, context)


class Server(grpc.Server):
    """gRPC's server, whose stop ends its reflection streams and lets the thread pools it
    was given go once it stopped, and which tells how many calls it has in flight."""

    def __init__(
        self,
        server: grpc.Server,
        pool: InFlightPool,
        refusals: futures.ThreadPoolExecutor,
        reflection: EndingReflection | None = None,
    ) -> None:
        self._server = server
        self._pool = pool
        self._pools = (pool, refusals)
        self._reflection = reflection
        # Whether a stop has begun, under its lock: stops may come from several threads.
        self._stopping = threading.Lock()
        self._stop_began = False

    @property
    def in_flight(self) -> int:
        """Calls admitted and not yet finished (queued or running): what a stop would cut.
        Neither refusals nor reflection streams are counted."""
        return self._pool.calls_in_flight

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
        """As gRPC's, reflection streams ended at once; once it has stopped, the pools'
        threads end as they fall idle.

        Only the first stop ends the streams and lets the pools go: a later one (the cut a
        drain makes at its grace end, ``gateway.process``) only shortens gRPC's. gRPC sets
        every stop's event at once when the server has stopped, so the first stop's
        release comes as soon as any later stop's would."""
        stopped = self._server.stop(grace)
        with self._stopping:
            first, self._stop_began = not self._stop_began, True
        if first:
            if self._reflection is not None:
                # After gRPC's stop began: from then on no new stream can start.
                self._reflection.end_streams()
            release_pools(stopped, self._pools)
        return stopped


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
    pool = InFlightPool(limits.threads)
    admission = Admission(pool, limits.max_concurrent_rpcs)
    # gRPC's own limit is only the backstop (module docstring), above ours, the health
    # reserve and the refusals let wait: short of it, every refusal is ours, counted.
    server = grpc.server(
        pool,
        handlers=[_generic_handler(b, limits.turn_wait_seconds) for b in bindings],
        interceptors=[admission],
        options=options,
        maximum_concurrent_rpcs=limits.max_concurrent_rpcs + HEALTH_RESERVE + SHED_BACKLOG,
    )
    health_servicer = WatchEndingHealth()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    names = [b.full_name for b in bindings]
    ending: EndingReflection | None = None
    if reflection_enabled:
        ending = EndingReflection(
            (*names, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
             reflection.SERVICE_NAME),
            pool.streams,
        )  # fmt: skip
        server.add_generic_rpc_handlers([ending.handler()])
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
    return Server(server, pool, admission.refusals, ending), port, monitor
