"""A worker's ledger store when one ledger service commits for every worker (``service``).

``RemoteLedgerStore`` keeps the ``LedgerStore`` contract: ``execute`` returns only once
the service has committed the operation durably, ``read`` runs on a snapshot there. Each
request thread has a connection of its own, opened on first use, so one thread's
operation and answer never interleave with another's. It is closed when its thread
ends (the thread-local record goes, and the connection with it): a worker whose request
threads come and go piled up the connections of the threads gone, and filled the
service's room. The thread steps aside from the worker's turn to compute
(``gateway.cpu_turn``) while it sends the operation and waits for the service, and
takes it back once the answer is in.

An operation must be ledger code only (``wire.dump_operation``): one that holds any other
callable is refused with ``wire.NotLedgerCode`` before anything is sent, and the
connection stays as it was.

A broken connection fails the operation with StoreUnavailable (the gateway answers
UNAVAILABLE) and is dropped; the next operation dials again. A connection refused,
reset, ended or timed out, or a socket not there, is StoreAway: the ledger process is
away (killed, restarting), a fault that passes, and a worker's replacement meeting it
as it starts is started again (``gateway.child``). Any other failure (a socket this
side may not open, a frame out of step, a store closed here, an error the service
answered: its database damaged) is what it was, lasting. For ``execute``, the
operation may still have committed: as with a lost commit acknowledgment, the RRPID makes
a retry safe. The connection is dropped too whenever this side cannot be sure it is in
step with the service: an answer that did not come in time, a frame of the wrong kind or
operation number (``wire``), one that does not unpickle, or an ERROR that says the service
or its database failed (a StoreError) rather than that a rule refused.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import weakref
from collections.abc import Callable
from typing import Any, TypeVar

from gateway.cpu_turn import PROCESS_TURN, CpuTurn
from gateway.ledger import wire
from gateway.ledger.errors import DecisionSettled, StoreAway, StoreError, StoreUnavailable
from gateway.ledger.group_commit import SUBMIT_TIMEOUT_SECONDS
from gateway.ledger.store import LedgerStore, Transaction

R = TypeVar("R")

# The failures of a connection to the service that say it is away (``StoreAway``): not
# listening or no socket (killed, not yet back), the connection reset or broken, no
# answer in time, its listen queue full. Any other OSError (a socket this side may not
# open, a path too long) would fail again at every try.
_AWAY = (ConnectionError, FileNotFoundError, TimeoutError, BlockingIOError)

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
        """Check the service answers at ``path``; raise StoreUnavailable if it does not
        (StoreAway if it is away: not listening, no socket)."""
        self._path = path
        self._timeout = timeout_seconds
        self._cpu = cpu
        self._local = threading.local()
        self._lock = threading.Lock()
        # Every thread's connection, held weakly: a thread that ends takes its own along.
        self._open: weakref.WeakSet[_Connection] = weakref.WeakSet()
        self._closed = False
        self._connection()  # fail at start, not on the first request

    def _connection(self) -> _Connection:
        line: _Connection | None = getattr(self._local, "line", None)
        if line is not None:
            return line
        with self._lock:
            if self._closed:
                raise StoreUnavailable("the ledger store is closed")
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.settimeout(self._timeout)
                sock.connect(self._path)
            except OSError as exc:
                sock.close()
                fault = StoreAway if isinstance(exc, _AWAY) else StoreUnavailable
                raise fault(f"the ledger service does not answer: {exc}") from exc
            line = _Connection(sock)
            self._open.add(line)
        self._local.line = line
        return line

    def _drop(self) -> None:
        """Close this thread's connection, if it has one: the next operation dials again."""
        line: _Connection | None = getattr(self._local, "line", None)
        self._local.line = None
        if line is None:
            return
        with self._lock:
            self._open.discard(line)
        line.close()

    def execute(self, work: Callable[[Transaction], R]) -> R:
        """Run ``work`` in the service's next group; return once that group is committed.
        ``work`` must be ledger code (``wire``), else NotLedgerCode and nothing is sent."""
        result: R = self._call(wire.EXECUTE, work)
        return result

    def read(self, query: Callable[[Transaction], R]) -> R:
        """Run ``query`` on a snapshot in the service (ledger code only, as ``execute``)."""
        result: R = self._call(wire.READ, query)
        return result

    def _send(self, kind: int, payload: bytes) -> _Connection:
        """Send an operation under its number; on a connection whose service is gone,
        dial once more."""
        line = self._connection()
        try:
            line.send_operation(kind, payload)
        except (BrokenPipeError, ConnectionResetError):
            # The service closed this connection (it was restarted): nothing was sent,
            # so nothing can have happened, and sending again on a new one is safe.
            self._drop()
            line = self._connection()
            line.send_operation(kind, payload)
        return line

    def _call(self, kind: int, operation: Callable[[Transaction], Any]) -> Any:
        payload = wire.dump_operation(operation)  # refused here: nothing sent, nothing dropped
        try:
            with self._cpu.aside():
                line = self._send(kind, payload)
                reply, body = wire.receive_answer(line.sock, line.number)
            if reply == wire.RESULT:
                return wire.load(body)
            if reply != wire.ERROR:
                raise wire.WireError(f"the ledger service answered with a frame of kind {reply}")
            error = wire.load(body)
            if not isinstance(error, BaseException):
                raise wire.WireError("the ledger service answered an error that is not one")
        except BaseException as exc:
            # Whatever cut the exchange short, this side no longer knows what the service
            # will send next on this connection: never read from it again.
            self._drop()
            if isinstance(exc, StoreUnavailable) or not isinstance(exc, OSError):
                raise
            fault = StoreAway if isinstance(exc, _AWAY) else StoreUnavailable
            raise fault(f"the ledger service connection failed: {exc}") from exc
        if isinstance(error, StoreError) and not isinstance(error, DecisionSettled):
            # The service failed, not a rule: start the next operation afresh. A settled
            # decision is the ledger's rule (``idempotency.SettledByHand``), answered in step.
            self._drop()
        raise error

    def close(self) -> None:
        """Close every connection; later calls raise StoreUnavailable."""
        with self._lock:
            self._closed = True
            connections = list(self._open)
            self._open.clear()
        for line in connections:
            line.close()


def _close_quietly(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.close()


class _Connection:
    """One request thread's connection to the service, and its latest operation's number.
    Its socket is closed when it is closed, or when nothing holds it any more: its
    thread ended, and the thread-local record of it went with the thread."""

    __slots__ = ("__weakref__", "_closer", "number", "sock")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.number = 0  # none yet: the first operation is number 1
        self._closer = weakref.finalize(self, _close_quietly, sock)

    def close(self) -> None:
        """Close the socket (once, whoever asks first: this, or its thread's end)."""
        self._closer()

    def send_operation(self, kind: int, payload: bytes) -> None:
        """Send the next operation on this connection, under the next number."""
        self.number = wire.next_number(self.number)
        wire.send_frame(self.sock, kind, self.number, payload)
