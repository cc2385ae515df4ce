"""How ledger operations travel between a worker and the ledger service (``service``).

An operation is what ``Ledger`` hands its store: a function of one ``Transaction``. Here
it is always a ``functools.partial`` of a ledger rule (a module-level function of
``gateway.ledger``) with plain arguments, so it can be pickled by value. Two rules keep
that safe and cheap:

- **Only ledger code can be named.** The service unpickles with ``find_class`` limited to
  what the modules in ``SHIPPED_MODULES`` define (not what they import) and
  ``functools.partial``: a frame can name a ledger rule, an outcome or a ledger error,
  and nothing else (not ``os.system``, not a class with a dangerous constructor). The
  socket is reachable by the bank's own user only (``service``), so this is defence in
  depth, not the only wall.
- **Anything else callable stays home.** A ``respond`` closure signs with the worker's
  keys, which never leave the worker. The pickler replaces every callable that is not
  ledger code by a numbered *callback*; when the service's transaction calls it, the call
  goes back over the same connection, runs in the worker, and its bytes come back
  (``CALL``, then ``RETURN`` or ``RAISE``). The gateway's usual answer, an approval, is
  built before the operation leaves (``outcomes.PrebuiltApproval``) and costs no call back.

Frames: a 4-byte big-endian length, one kind byte, a 4-byte big-endian operation number,
then the pickle (protocol 5). An operation is numbered when it leaves the worker (the
n-th on a connection is n, ``next_number``), and every frame of it carries that number:
its EXECUTE or READ, each CALL and the RETURN or RAISE that answers it, and the closing
RESULT or ERROR. Either side refuses a frame with another number and closes the
connection, so an answer can never reach an operation it does not belong to.

A connection carries one operation at a time, in step: whenever a side cannot be sure
of what the other read or will send next (a callback answered late or not at all, a
frame of the wrong kind or number, one that does not unpickle), it closes the
connection rather than go on; the worker dials afresh for its next operation.
"""

from __future__ import annotations

import functools
import io
import pickle
import socket
import struct
import types
from collections.abc import Callable
from typing import Any

from gateway.ledger.errors import StoreError, StoreUnavailable

# The modules whose functions and classes may cross: the rules, their values and errors.
SHIPPED_MODULES = frozenset(
    {
        "gateway.ledger.accounts",
        "gateway.ledger.authorization",
        "gateway.ledger.batches",
        "gateway.ledger.books",
        "gateway.ledger.errors",
        "gateway.ledger.holds",
        "gateway.ledger.idempotency",
        "gateway.ledger.ledger",
        "gateway.ledger.money",
        "gateway.ledger.outcomes",
        "gateway.ledger.schema",
        "gateway.ledger.settlement",
    }
)
# Python's own exceptions that a rule may raise about its arguments (``run_once`` refuses
# a ``respond`` that does not return bytes): they cross as themselves.
SHIPPED_BUILTIN_ERRORS = frozenset({"TypeError", "ValueError"})
# Largest frame either side accepts. An operation is a few hundred bytes; the largest
# answer is a batch detail page (500 items).
MAX_FRAME_BYTES = 16 * 1024 * 1024

# Frame kinds. Worker to service: EXECUTE, READ, then RETURN/RAISE answering a CALL.
# Service to worker: CALL (zero or more), then RESULT or ERROR.
EXECUTE = 1
READ = 2
CALL = 3
RETURN = 4
RAISE = 5
RESULT = 6
ERROR = 7

_HEADER = struct.Struct(">IBI")  # payload length, kind, operation number
# Operation numbers fill the header's 4 bytes and wrap round to 1 (0 is never used).
MAX_NUMBER = 2**32 - 1


class WireError(StoreUnavailable):
    """The connection to the ledger service broke or carried something it must not."""


class CallbackFailed(StoreError):
    """A callback raised in the worker; the worker re-raises the original exception."""


def next_number(number: int) -> int:
    """The number of the operation after operation ``number`` on one connection."""
    return number % MAX_NUMBER + 1


def send_frame(sock: socket.socket, kind: int, number: int, payload: bytes) -> None:
    """Send one frame of operation ``number``."""
    if len(payload) > MAX_FRAME_BYTES:
        raise WireError(f"a ledger frame of {len(payload)} bytes is over the limit")
    sock.sendall(_HEADER.pack(len(payload), kind, number) + payload)


def _receive_exactly(sock: socket.socket, size: int) -> bytes:
    buffer = bytearray(size)
    view = memoryview(buffer)
    got = 0
    while got < size:
        n = sock.recv_into(view[got:], size - got)
        if n == 0:
            raise WireError("the ledger connection closed")
        got += n
    return bytes(buffer)


def receive_frame(sock: socket.socket) -> tuple[int, int, bytes]:
    """Receive one frame: (kind, operation number, payload)."""
    size, kind, number = _HEADER.unpack(_receive_exactly(sock, _HEADER.size))
    if size > MAX_FRAME_BYTES:
        raise WireError(f"a ledger frame of {size} bytes is over the limit")
    return kind, number, _receive_exactly(sock, size)


def receive_answer(sock: socket.socket, number: int) -> tuple[int, bytes]:
    """Receive the next frame of operation ``number``: (kind, payload); WireError if
    the frame is numbered for another operation (the two sides are out of step)."""
    kind, got, payload = receive_frame(sock)
    if got != number:
        raise WireError(f"a frame of operation {got} where operation {number} is under way")
    return kind, payload


def _is_ledger_code(obj: object) -> bool:
    """Travels as itself: a partial, a module-level ledger function, a ledger value."""
    if isinstance(obj, functools.partial):
        return True
    if isinstance(obj, types.FunctionType):
        return obj.__module__ in SHIPPED_MODULES and "<" not in obj.__qualname__
    return type(obj).__module__ in SHIPPED_MODULES


class _OperationPickler(pickle.Pickler):
    """Pickles an operation, keeping every non-ledger callable home as a callback."""

    def __init__(self, file: io.BytesIO, callbacks: list[Callable[..., Any]]) -> None:
        super().__init__(file, protocol=5)
        self._callbacks = callbacks

    def persistent_id(self, obj: Any) -> int | None:
        if callable(obj) and not isinstance(obj, type) and not _is_ledger_code(obj):
            self._callbacks.append(obj)
            return len(self._callbacks) - 1
        return None


def dump_operation(operation: object) -> tuple[bytes, list[Callable[..., Any]]]:
    """The operation's bytes, and the callbacks it refers to by number."""
    callbacks: list[Callable[..., Any]] = []
    buffer = io.BytesIO()
    try:
        _OperationPickler(buffer, callbacks).dump(operation)
    except (pickle.PicklingError, TypeError, AttributeError) as exc:
        raise StoreError(f"this operation cannot be sent to the ledger service: {exc}") from exc
    return buffer.getvalue(), callbacks


def dump_value(value: object) -> bytes:
    """A result, an exception or callback arguments, as bytes (no callbacks allowed)."""
    payload, callbacks = dump_operation(value)
    if callbacks:
        raise StoreError("a ledger value cannot carry a function")
    return payload


class _LedgerUnpickler(pickle.Unpickler):
    """Unpickles ledger code and values only; callbacks become what ``callback`` makes."""

    def __init__(self, data: bytes, callback: Callable[[int], Any] | None) -> None:
        super().__init__(io.BytesIO(data))
        self._callback = callback

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("functools", "partial"):
            return functools.partial
        if module == "builtins" and name in SHIPPED_BUILTIN_ERRORS:
            return super().find_class(module, name)
        if module in SHIPPED_MODULES and "." not in name and not name.startswith("__"):
            found = super().find_class(module, name)
            # Defined there, not merely imported there (``ledger`` imports ``time``).
            if getattr(found, "__module__", None) == module:
                return found
        raise pickle.UnpicklingError(f"{module}.{name} may not cross to the ledger")

    def persistent_load(self, pid: Any) -> Any:
        if self._callback is None or not isinstance(pid, int):
            raise pickle.UnpicklingError("a callback where none may be")
        return self._callback(pid)


def load(data: bytes, callback: Callable[[int], Any] | None = None) -> Any:
    """Unpickle a frame's payload (``callback`` turns callback numbers into proxies)."""
    try:
        return _LedgerUnpickler(data, callback).load()
    except WireError:
        raise
    except Exception as exc:  # a damaged or foreign frame, whatever pickle made of it
        raise WireError(f"an unreadable ledger frame: {type(exc).__name__}: {exc}") from exc


def shippable_error(exc: BaseException) -> BaseException:
    """``exc`` if the worker can unpickle it (a ledger error, or a TypeError or ValueError
    about the arguments), else a StoreError naming it."""
    if type(exc).__module__ == "gateway.ledger.errors" or (
        type(exc).__module__ == "builtins" and type(exc).__name__ in SHIPPED_BUILTIN_ERRORS
    ):
        return exc
    return StoreError(f"the ledger service failed: {type(exc).__name__}: {exc}")
