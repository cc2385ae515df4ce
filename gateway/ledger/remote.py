"""A worker's ledger store when one ledger service commits for every worker (``service``).

``RemoteLedgerStore`` keeps the ``LedgerStore`` contract: ``execute`` returns only once
the service has committed the operation durably, ``read`` runs on a snapshot there. Each
request thread has a connection of its own, opened on first use, so an operation and its
callbacks never interleave with another's. The thread steps aside from the worker's turn
to compute (``gateway.cpu_turn``) while the service works, and takes it back to run a
callback (a ``respond`` that signs) and when the answer is in.

A broken connection fails the operation with StoreUnavailable (the gateway answers
UNAVAILABLE) and is dropped; the next operation dials again. For ``execute``, the
operation may still have committed: as with a lost commit acknowledgment, the RRPID makes
a retry safe.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from gateway.cpu_turn import PROCESS_TURN, CpuTurn
from gateway.ledger import wire
from gateway.ledger.errors import StoreUnavailable
from gateway.ledger.group_commit import SUBMIT_TIMEOUT_SECONDS
from gateway.ledger.store import LedgerStore, Transaction

R = TypeVar("R")

# How long an operation may wait for the service's answer: as long as an in-process
# writer lets a caller wait for its commit.
ANSWER_TIMEOUT_SECONDS = SUBMIT_TIMEOUT_SECONDS


class RemoteLedgerStore(LedgerStore):
    """The ledger store served by a ``LedgerService`` on the Unix socket ``path``."""

    def __init__(
        self,
        path: str,
        *,
        timeout_seconds: float = ANSWER_TIMEOUT_SECONDS,
        cpu: CpuTurn = PROCESS_TURN,
    ) -> None:
        """Check the service answers at ``path``; raise StoreUnavailable if it does not."""
        self._path = path
        self._timeout = timeout_seconds
        self._cpu = cpu
        self._local = threading.local()
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._closed = False
        self._connection()  # fail at start, not on the first request

    def _connection(self) -> socket.socket:
        sock: socket.socket | None = getattr(self._local, "sock", None)
        if sock is not None:
            return sock
        with self._lock:
            if self._closed:
                raise StoreUnavailable("the ledger store is closed")
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.settimeout(self._timeout)
                sock.connect(self._path)
            except OSError as exc:
                sock.close()
                raise StoreUnavailable(f"the ledger service does not answer: {exc}") from exc
            self._open.add(sock)
        self._local.sock = sock
        return sock

    def _drop(self, sock: socket.socket | None) -> None:
        self._local.sock = None
        if sock is None:
            return
        with self._lock:
            self._open.discard(sock)
        sock.close()

    def execute(self, work: Callable[[Transaction], R]) -> R:
        """Run ``work`` in the service's next group; return once that group is committed."""
        result: R = self._call(wire.EXECUTE, work)
        return result

    def read(self, query: Callable[[Transaction], R]) -> R:
        """Run ``query`` on a snapshot in the service."""
        result: R = self._call(wire.READ, query)
        return result

    def _send(self, kind: int, payload: bytes) -> socket.socket:
        """Send an operation; on a connection whose service is gone, dial once more."""
        sock = self._connection()
        try:
            wire.send_frame(sock, kind, payload)
        except (BrokenPipeError, ConnectionResetError):
            # The service closed this connection (it was restarted): nothing was sent,
            # so nothing can have happened, and sending again on a new one is safe.
            self._drop(sock)
            sock = self._connection()
            wire.send_frame(sock, kind, payload)
        return sock

    def _call(self, kind: int, operation: Callable[[Transaction], Any]) -> Any:
        payload, callbacks = wire.dump_operation(operation)
        failed: list[BaseException] = []  # a callback's own exception, re-raised here
        sock: socket.socket | None = None
        try:
            with self._cpu.aside():
                sock = self._send(kind, payload)
                while True:
                    reply, body = wire.receive_frame(sock)
                    if reply != wire.CALL:
                        break
                    with self._cpu.held():
                        self._run_callback(sock, callbacks, body, failed)
        except (OSError, wire.WireError) as exc:
            self._drop(sock or getattr(self._local, "sock", None))
            if isinstance(exc, StoreUnavailable):
                raise
            raise StoreUnavailable(f"the ledger service connection failed: {exc}") from exc
        if reply == wire.RESULT:
            return wire.load(body)
        if reply != wire.ERROR:
            self._drop(sock)
            raise StoreUnavailable(f"the ledger service answered with a frame of kind {reply}")
        if failed:
            raise failed[0]
        error = wire.load(body)
        if not isinstance(error, BaseException):
            raise StoreUnavailable("the ledger service answered an error that is not one")
        raise error

    @staticmethod
    def _run_callback(
        sock: socket.socket,
        callbacks: list[Callable[..., Any]],
        body: bytes,
        failed: list[BaseException],
    ) -> None:
        number, args = wire.load(body)
        try:
            value = callbacks[number](*args)
            answer = wire.dump_value(value)
        except Exception as exc:  # noqa: BLE001  re-raised to our caller after the rollback
            failed[:] = [exc]
            wire.send_frame(sock, wire.RAISE, b"")
            return
        wire.send_frame(sock, wire.RETURN, answer)

    def close(self) -> None:
        """Close every connection; later calls raise StoreUnavailable."""
        with self._lock:
            self._closed = True
            connections = list(self._open)
            self._open.clear()
        for sock in connections:
            with contextlib.suppress(OSError):
                sock.close()
