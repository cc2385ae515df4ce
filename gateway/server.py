"""The gRPC server: generic handlers over thin servicers, health, reflection, limits.

``create_server(...)`` returns ``(server, port)`` like the gRPC examples; tests bind port 0.
Requests are parsed by our own deserializer so an unparseable outer frame is answered
with INVALID_ARGUMENT instead of gRPC's INTERNAL. Every call is counted and timed here for
the metrics (``gateway.metrics``), with the status it ended with. gRPC Python can either require a
client certificate or not ask for one (there is no "optional"), so the bank runs two
servers: PaymentGateway with mutual TLS for merchants, CertificateAuthority with
server-authenticated TLS for wallets.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent import futures
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf import message_factory
from google.protobuf.message import DecodeError, Message
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from gateway import metrics
from gateway.cpu_turn import PROCESS_TURN
from setpay.v1 import services_pb2

log = logging.getLogger("setpay.server")

# How often the health monitor probes the key backend and the database. One second keeps
# NOT_SERVING prompt for a load balancer without adding measurable load.
HEALTH_PROBE_SECONDS = 1.0


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
    max_concurrent_rpcs: int
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


def _deserializer(cls: type[Message]) -> Callable[[bytes], object]:
    def parse(data: bytes) -> object:
        try:
            return cls.FromString(data)
        except DecodeError:
            return _UNPARSEABLE

    return parse


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
        handlers[method.name] = grpc.unary_unary_rpc_method_handler(
            _behaviour(service.full_name, method.name, getattr(binding.servicer, method.name)),
            request_deserializer=_deserializer(request_cls),
            response_serializer=lambda m: m.SerializeToString(),
        )
    return grpc.method_handlers_generic_handler(service.full_name, handlers)


class HealthMonitor:
    """Feeds grpc.health.v1 from probes of the key backend and the database."""

    def __init__(
        self,
        servicer: health.HealthServicer,
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
        """Stop probing and report NOT_SERVING (the server is going away)."""
        with self._publishing:
            self._stop.set()
            self._set(False)


def create_server(
    bindings: Sequence[ServiceBinding],
    listen: str,
    limits: ServerLimits,
    *,
    tls: TlsConfig | None = None,
    reflection_enabled: bool = True,
    probes: Sequence[Callable[[], None]] = (),
) -> tuple[grpc.Server, int, HealthMonitor]:
    """Build and start a server for ``bindings``; returns it, its bound port and health.

    Raises ``OSError`` if ``listen`` cannot be bound."""
    options = [
        ("grpc.max_receive_message_length", limits.max_message_bytes),
        ("grpc.max_send_message_length", limits.max_message_bytes),
        ("grpc.so_reuseport", 1 if limits.reuse_port else 0),
    ]
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=limits.threads, thread_name_prefix="rpc"),
        handlers=[_generic_handler(b) for b in bindings],
        options=options,
        maximum_concurrent_rpcs=limits.max_concurrent_rpcs,
    )
    health_servicer = health.HealthServicer(experimental_non_blocking=True)
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
    return server, port, monitor
