"""Reference services for the load generator: the crypto ceiling and the echo.

``setpay bench authorize --ceiling`` compares the gateway with two services that keep
everything about it except the work being measured:

ceiling  ``PaymentGatewayService/Authorize`` doing exactly the authorization's private- and
         public-key work on the same request bytes, with the bank's own keys from the same
         key backend: open the AuthReq envelope with the key-exchange key and verify the
         merchant's signature (setcore's ``open_auth_request``), open the PI and verify the
         dual signature (``open_payment_instruction``), seal a capture token and sign and
         seal the AuthRes (``seal_cap_token``, ``build_auth_response``). No ledger, no
         idempotency store, no agreement checks, no revocation refresh: what is left is the
         cost of the cryptography the protocol requires, plus the parsing it needs.
echo     the same service answering every Authorize with one fixed response, no crypto:
         the cost of gRPC, TLS and the Python server itself. ``delay`` holds each call for a
         while (a deliberately slow server, for testing the load generator's clock).

Both run the bank's process model: the same sync ``grpc.server`` from
``gateway.server.create_server`` with the bank's limits (threads, concurrent RPCs, message
size), the same TLS (mutual, the bank's certificates), and ``workers`` processes sharing
one port with SO_REUSEPORT, each opening its key backend after the fork. Like the bank's
workers (``gateway.worker``), each stops when its parent is gone: a parent killed with
SIGKILL cannot stop them, and they would go on serving the port. Like them, the workers
of one ``serve`` are one bank start (``hsm.pinsource.join_bank_start``): an ``env:`` PIN
the token refused is offered by one of them, not by each.

Errors: a request the ceiling cannot open is a broken bench, not a protocol event; it is
answered with FAILED_PRECONDITION naming the SET error code (never a PAN: setcore's
reasons hold none). Options that make no service (``ReferenceOptions``: a listen address
that is not HOST:PORT with a port of 0 to 65535, a delay for the ceiling) are a
``ValueError`` before anything opens; configuration and key-backend errors at start pass
through; an address that cannot be reserved for the workers is an ``OSError``.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import secrets
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from multiprocessing.process import BaseProcess
from multiprocessing.synchronize import Event as ProcessEvent
from pathlib import Path
from typing import Any

import grpc

from gateway import scheduling
from gateway.bank_pki import load_bank_pki
from gateway.config import BankConfig
from gateway.ports import MAX_PORT, PortError, parse_port, reserve, write_port_file
from gateway.process import tls_config
from gateway.server import ServerLimits, ServiceBinding, create_server
from gateway.servicer import reply_header
from gateway.stop_signals import StopSignals
from hsm.pinsource import join_bank_start
from setcore.authorization import (
    AuthDecision,
    build_auth_response,
    open_auth_request,
    open_payment_instruction,
    seal_cap_token,
)
from setcore.credentials import Credentials
from setcore.errors import ProtocolError
from setcore.pki.truststore import TrustStore
from setcore.token_seal import TokenKey
from setpay.v1 import authorization_pb2, common_pb2, services_pb2_grpc

log = logging.getLogger("setpay.ceiling")

MODES = ("ceiling", "echo")
# The echo's fixed AuthRes stand-in: about the size of a real sealed AuthRes with the
# gateway's certificate bundle, so the wire and TLS carry what they carry for the bank.
ECHO_RESPONSE_BYTES = 2048
# The ceiling's approval code and hold id: fixed, there is no ledger to make them.
CEILING_APPROVAL_CODE = "CEIL00"
CEILING_HOLD_ID = "ceiling"
# Workers that have not bound their port in this long are reported as failed.
WORKER_START_SECONDS = 120.0
# How often the parent looks whether a starting worker died instead.
WORKER_POLL_SECONDS = 0.1
# Largest injected delay of the echo (ms): enough to model any slow server in a test.
MAX_DELAY_MS = 60_000.0
# How often a worker looks whether its parent is still there (as ``gateway.worker`` does):
# an orphan stops serving within about this long.
PARENT_CHECK_SECONDS = 1.0


class CeilingServicer(services_pb2_grpc.PaymentGatewayServiceServicer):
    """Authorize with the authorization's cryptography and nothing else."""

    def __init__(self, credentials: Credentials, trust: TrustStore, token_key: TokenKey) -> None:
        self._credentials = credentials
        self._trust = trust
        self._token_key = token_key

    def Authorize(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        """AuthReq -> a signed, sealed approval, made without the ledger."""
        try:
            verified = open_auth_request(request, self._credentials, self._trust)
            open_payment_instruction(verified, self._credentials, self._trust)
            asked = verified.data.auth_req_payload.auth_req_amt
            token = seal_cap_token(
                self._token_key,
                authorization_pb2.CapTokenData(
                    xid=verified.xid, auth_rrpid=verified.rrpid, auth_amt=asked,
                    merchant_id=verified.merchant_id,
                    merchant_cert_thumb=verified.merchant.thumbprint, hold_id=CEILING_HOLD_ID,
                    issued_unix_ms=verified.data.auth_tags.auth_rr_tags.date_unix_ms,
                ),
            )  # fmt: skip
            decision = AuthDecision(
                auth_code=authorization_pb2.AUTH_CODE_APPROVED, auth_amt=asked,
                approval_code=CEILING_APPROVAL_CODE, cap_token=token,
            )  # fmt: skip
            auth_res = build_auth_response(self._credentials, verified, decision)
        except ProtocolError as exc:
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, f"ceiling: {exc.code_name}")
        return authorization_pb2.AuthorizeResponse(
            header=reply_header(request.header), auth_res=auth_res
        )


class EchoServicer(services_pb2_grpc.PaymentGatewayServiceServicer):
    """Authorize answered with one fixed response (after ``delay`` seconds)."""

    def __init__(self, delay: float = 0.0) -> None:
        self._delay = delay
        self._answer = authorization_pb2.AuthorizeResponse(
            header=common_pb2.Header(version=1), auth_res=bytes(ECHO_RESPONSE_BYTES)
        )

    def Authorize(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        """The fixed response."""
        if self._delay:
            time.sleep(self._delay)
        return self._answer


class WorkerStartFailed(Exception):
    """A reference service's worker process exited, or was not ready in time, at start."""


@dataclass(frozen=True)
class ReferenceOptions:
    """How to run a reference service."""

    mode: str
    listen: str
    workers: int = 1
    threads: int | None = None  # None: the bank's configured threads per worker
    delay_ms: float = 0.0
    port_file: Path | None = None

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}")
        if not is_host_port(self.listen):
            # gRPC would take a port beyond 16 bits modulo 65536 and serve elsewhere.
            raise ValueError(
                f"listen must be HOST:PORT (port 0 to {MAX_PORT}), not {self.listen!r}"
            )
        if not 1 <= self.workers <= 64:
            raise ValueError("workers must be between 1 and 64")
        if not 0 <= self.delay_ms <= MAX_DELAY_MS:
            raise ValueError(f"delay must be between 0 and {MAX_DELAY_MS:.0f} ms")
        if self.delay_ms and self.mode != "echo":
            raise ValueError("only the echo service takes a delay")


def is_host_port(listen: str) -> bool:
    """Whether ``listen`` is HOST:PORT as a bank's ``listen`` setting is read
    (``gateway.config``): a host, and a port ``gateway.ports.parse_port`` takes."""
    host, sep, port = listen.rpartition(":")
    return bool(sep and host and parse_port(port) is not None)


def _limits(config: BankConfig, options: ReferenceOptions, reuse_port: bool) -> ServerLimits:
    return ServerLimits(
        max_message_bytes=config.max_message_bytes,
        max_concurrent_rpcs=config.max_concurrent_rpcs,
        threads=options.threads or config.threads,
        reuse_port=reuse_port,
    )


def _serve_one(
    config: BankConfig, options: ReferenceOptions, listen: str, reuse_port: bool
) -> tuple[grpc.Server, int, Callable[[], None]]:
    """Open what the mode needs and serve; returns the server, its port and a closer."""
    close: Callable[[], None] = _nothing
    servicer: services_pb2_grpc.PaymentGatewayServiceServicer
    probes: tuple[Callable[[], None], ...] = ()
    if options.mode == "ceiling":
        pki = load_bank_pki(config)
        token_key = pki.token_sealer()
        servicer = CeilingServicer(pki.gateway, pki.trust, token_key)
        probes = (pki.backend.check_health,)
        close = pki.close
    else:
        servicer = EchoServicer(options.delay_ms / 1000.0)
    try:
        server, port, health = create_server(
            [ServiceBinding("PaymentGatewayService", servicer)],
            listen,
            _limits(config, options, reuse_port),
            tls=tls_config(config, mutual=True),
            reflection_enabled=config.reflection,
            probes=probes,
        )
    except BaseException:
        close()
        raise

    def stop() -> None:
        health.stop()
        server.stop(config.grace_seconds).wait()
        close()

    return server, port, stop


def _nothing() -> None:
    return None


def _start_worker(
    start: str,
    config: BankConfig,
    options: ReferenceOptions,
    listen: str,
    ready: ProcessEvent,
    parent: int,
) -> None:
    """A worker process, first made one of the serve's bank start ``start`` (before any
    backend opens, as the bank's workers are: ``gateway.workers``), then ``_worker``."""
    join_bank_start(start)
    _worker(config, options, listen, ready, parent)


def _worker(
    config: BankConfig, options: ReferenceOptions, listen: str, ready: ProcessEvent, parent: int
) -> None:
    # A worker process: keys and gRPC are opened here, after the fork (DESIGN.md 5.4).
    # SIGTERM is waited for on the wakeup pipe, as by the bank's workers: a handler setting
    # an Event this thread waits on could run inside that wait, holding its lock, and wait
    # for itself forever.
    stopping = StopSignals((signal.SIGTERM,))
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    scheduling.apply(config.scheduling)  # the bank's workers' policy, before any thread
    _, _, close = _serve_one(config, options, listen, reuse_port=True)
    ready.set()
    while not stopping.wait(PARENT_CHECK_SECONDS):
        if os.getppid() != parent:
            log.error("%s worker: the parent process is gone; stopping", options.mode)
            break
    close()


def serve(config: BankConfig, options: ReferenceOptions, stop: threading.Event) -> int:
    """Serve until ``stop`` is set; returns the port. Writes ``options.port_file`` once up.

    ``stop`` is waited on in the calling thread: set it from another (``setpay bench
    serve`` hears its signals on a thread of their own), never from a signal handler, which
    could run inside that wait holding the Event's lock and wait for itself."""
    config = replace(config, threads=options.threads or config.threads)
    if options.workers == 1:
        scheduling.apply(config.scheduling)  # the bank's workers' policy, before any thread
        _, port, close = _serve_one(config, options, options.listen, reuse_port=False)
        _announce(options, port)
        stop.wait()
        close()
        return port
    # The bank's reservation: the port is shared by these workers only, never joined to
    # another server's (a bank's workers on that port would take part of the bench's load).
    try:
        reserved = reserve(options.listen)
    except PortError as exc:
        raise OSError(str(exc)) from exc
    listen, port = reserved.address, reserved.port
    context = multiprocessing.get_context("fork")
    workers: list[tuple[BaseProcess, ProcessEvent]] = []
    start = secrets.token_hex(16)  # this serve's bank start, for its workers' logins
    try:
        for _ in range(options.workers):
            ready = context.Event()
            worker = context.Process(
                target=_start_worker, args=(start, config, options, listen, ready, os.getpid())
            )
            worker.start()
            workers.append((worker, ready))
        _wait_ready(options.mode, workers)
        _announce(options, port)
        stop.wait()
    finally:
        for started, _ in workers:
            started.terminate()
        for started, _ in workers:
            started.join()
        reserved.close()
    return port


def _wait_ready(mode: str, workers: list[tuple[BaseProcess, ProcessEvent]]) -> None:
    give_up = time.monotonic() + WORKER_START_SECONDS
    for process, ready in workers:
        while not ready.wait(WORKER_POLL_SECONDS):
            if process.exitcode is not None or time.monotonic() > give_up:
                raise WorkerStartFailed(
                    f"a {mode} worker did not start (exit {process.exitcode}); its log says why"
                )


def _announce(options: ReferenceOptions, port: int) -> None:
    log.info("%s service on port %d", options.mode, port)
    if options.port_file is not None:
        write_port_file(options.port_file, port)
