"""How ledger operations travel between a worker and the ledger service (``service``).

An operation is what ``Ledger`` hands its store: a function of one ``Transaction``. Here
it is always a ``functools.partial`` of a ledger rule (a module-level function of
``gateway.ledger``) with plain arguments, so it can be pickled by value. Two rules keep
that safe and cheap:

- **Only ledger code can be named.** The service unpickles with ``find_class`` limited to
  what the modules in ``SHIPPED_MODULES`` define (not what they import) and
  ``functools.partial``: a frame can name a ledger rule, an outcome or a ledger error,
  and nothing else (not ``os.system``, not a class with a dangerous constructor, not a
  chain of partials: ``_ShippedPartial``). The socket is reachable by the bank's own
  user only (``service``), so this is defence in depth, not the only wall: a frame can
  still hand a ledger class or rule a value nested deeply enough that hashing it
  recurses in C until the process dies (a tuple some 200,000 deep, 200 KB), which only
  that user can send, and who could stop the process anyway.
- **Only ledger code leaves the worker.** ``dump_operation`` refuses an operation that
  holds any other callable (a lambda, a closure, a bound method) with ``NotLedgerCode``
  before a byte is sent. Nothing of the worker's ever needs to run inside the service's
  transaction: a response is built and signed in the worker once the decision is
  committed, outside any transaction (``gateway.ledger.idempotency``).

Frames: a 4-byte big-endian length, one kind byte, a 4-byte big-endian operation number,
then the pickle (protocol 5). An operation is numbered when it leaves the worker (the
n-th on a connection is n, ``next_number``), and both frames of it carry that number:
its EXECUTE or READ, and the RESULT or ERROR that answers it. Either side refuses a frame
with another number and closes the connection, so an answer can never reach an
operation it does not belong to. The service takes each frame off its connection as
the bytes come, never waiting for the rest (``FrameReader``), so a worker stopped in the
middle of a frame holds up no other; a worker waits for its answer (``receive_answer``)
up to its timeout.

A connection carries one operation at a time, in step: whenever a side cannot be sure
of what the other read or will send next (an answer that came too late or not at all, a
frame of the wrong kind or number, one that does not unpickle), it closes the connection
rather than go on; the worker dials afresh for its next operation.
"""

from __future__ import annotations

import functools
import io
import os
import pickle
import socket
import struct
import types
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
        "gateway.ledger.expiry",
        "gateway.ledger.holds",
        "gateway.ledger.idempotency",
        "gateway.ledger.key_check",
        "gateway.ledger.ledger",
        "gateway.ledger.money",
        "gateway.ledger.outcomes",
        "gateway.ledger.reports",
        "gateway.ledger.retention",
        "gateway.ledger.schema",
        "gateway.ledger.settlement",
    }
)
# Python's own exceptions that a rule may raise about its arguments (``store_answer``
# refuses a response that is not bytes): they cross as themselves.
SHIPPED_BUILTIN_ERRORS = frozenset({"TypeError", "ValueError"})
# Largest frame either side accepts. An operation is a few hundred bytes; the largest
# answer is a batch detail page (500 items).
MAX_FRAME_BYTES = 16 * 1024 * 1024
# Largest single read of a frame's bytes by the service: an operation comes in one read.
READ_CHUNK_BYTES = 64 * 1024

# Frame kinds. Worker to service: EXECUTE or READ. Service to worker: RESULT or ERROR.
# Kinds 3 to 5 are retired and never reused: a frame of one, say from a side of an older
# release, is a frame of the wrong kind, and its connection is closed.
EXECUTE = 1
READ = 2
RESULT = 6
ERROR = 7

_HEADER = struct.Struct(">IBI")  # payload length, kind, operation number
# Operation numbers fill the header's 4 bytes and wrap round to 1 (0 is never used).
MAX_NUMBER = 2**32 - 1


class WireError(StoreUnavailable):
    """The connection to the ledger service broke or carried something it must not."""


class NotLedgerCode(TypeError):
    """An operation or value holds a callable that is not ledger code; nothing was sent."""


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


class FrameReader:
    """Takes one frame off a non-blocking socket as its bytes arrive, never waiting for
    the rest: the ledger service's loop serves every worker, and a worker stopped in the
    middle of a frame must hold up no other."""

    __slots__ = ("_header", "_part")

    def __init__(self) -> None:
        """Expect a frame's header."""
        self._header: tuple[int, int, int] | None = None  # payload length, kind, number
        self._part = bytearray()

    def read(self, fd: int) -> tuple[int, int, bytes] | None:
        """Read what has arrived on ``fd`` (non-blocking): the frame (kind, operation
        number, payload) once it is whole, None while some of it is still to come;
        WireError if the connection closed or the frame is over the limit."""
        while True:
            wanted = _HEADER.size if self._header is None else self._header[0]
            missing = wanted - len(self._part)
            if missing > 0:
                try:
                    # Read at most what was announced and at most one chunk at a time:
                    # memory follows the bytes that came, not the length a header claims.
                    chunk = os.read(fd, min(missing, READ_CHUNK_BYTES))
                except BlockingIOError:
                    return None
                if not chunk:
                    raise WireError("the ledger connection closed")
                self._part += chunk
                continue
            if self._header is None:
                self._header = _HEADER.unpack(self._part)
                self._part = bytearray()
                if self._header[0] > MAX_FRAME_BYTES:
                    raise WireError(f"a ledger frame of {self._header[0]} bytes is over the limit")
                continue
            _, kind, number = self._header
            payload = bytes(self._part)
            self._header, self._part = None, bytearray()
            return kind, number, payload


def receive_answer(sock: socket.socket, number: int) -> tuple[int, bytes]:
    """Receive the next frame of operation ``number``: (kind, payload); WireError if
    the frame is numbered for another operation (the two sides are out of step)."""
    kind, got, payload = receive_frame(sock)
    if got != number:
        raise WireError(f"a frame of operation {got} where operation {number} is under way")
    return kind, payload


def _is_ledger_code(obj: object) -> bool:
    """Whether callable ``obj`` may travel: what the service's ``find_class`` accepts
    (``functools.partial``, a module-level function or class of ``SHIPPED_MODULES``, a
    shipped builtin error), or an instance of a ledger class (pickled by value)."""
    if obj is functools.partial or isinstance(obj, functools.partial):
        return True
    if isinstance(obj, type | types.FunctionType):
        module = obj.__module__
        qualname = obj.__qualname__
        if isinstance(obj, type) and module == "builtins":
            return qualname in SHIPPED_BUILTIN_ERRORS
        return module in SHIPPED_MODULES and "." not in qualname and "<" not in qualname
    return type(obj).__module__ in SHIPPED_MODULES


def _describe(obj: object) -> str:
    """What ``obj`` is: its type, and for a class, function or method the code's own name;
    never its value or repr (a refused object may hold a key or a PAN)."""
    code: object = obj
    if isinstance(obj, type):
        kind = "class"
    elif isinstance(obj, types.FunctionType):
        kind = "function"
    elif isinstance(obj, types.MethodType):
        kind, code = "method", obj.__func__
    elif isinstance(obj, types.BuiltinFunctionType):
        kind = "built-in function"
    else:
        return f"an instance of {type(obj).__module__}.{type(obj).__qualname__}"
    module = getattr(code, "__module__", None)
    name = getattr(code, "__qualname__", "?")
    return f"the {kind} {module}.{name}" if module else f"the {kind} {name}"


class _LedgerPickler(pickle.Pickler):
    """Pickles ledger code and values only; refuses any other callable."""

    def __init__(self, file: io.BytesIO) -> None:
        super().__init__(file, protocol=5)

    def reducer_override(self, obj: Any) -> Any:
        if callable(obj) and not _is_ledger_code(obj):
            raise NotLedgerCode(
                f"only ledger code travels to the ledger service; this holds {_describe(obj)}"
            )
        return NotImplemented  # pickle ``obj`` the usual way


def dump_operation(operation: object) -> bytes:
    """The operation as bytes; NotLedgerCode if it holds a callable that is not ledger
    code, StoreError if anything else in it cannot be pickled."""
    buffer = io.BytesIO()
    try:
        _LedgerPickler(buffer).dump(operation)
    except NotLedgerCode:
        raise
    except (pickle.PicklingError, TypeError, AttributeError) as exc:
        raise StoreError(f"this operation cannot be sent to the ledger service: {exc}") from exc
    return buffer.getvalue()


def dump_value(value: object) -> bytes:
    """A result or an exception as bytes, under the same rules as an operation."""
    return dump_operation(value)


def _refuse_nested(func: object) -> None:
    """UnpicklingError if ``func``, a partial's function, is itself a partial."""
    if isinstance(func, functools.partial):
        raise pickle.UnpicklingError("a partial whose function is another partial may not cross")


class _ShippedPartial(functools.partial[Any]):
    """``functools.partial`` as a frame rebuilds one: its function is never a partial.

    ``partial`` flattens a partial of a partial as it builds it, so the worker never
    sends one; but a frame can rebuild any chain of them (a partial's pickled state
    names its function, and nothing flattens it there), and calling a chain some 100,000
    deep recurses in C, unchecked, until the process dies (SIGSEGV): the ledger process,
    and every worker's operation in flight with it. Refused as the frame is read."""

    def __new__(cls, func: Any, /, *args: Any, **keywords: Any) -> _ShippedPartial:
        """A partial of ``func``; UnpicklingError if ``func`` is a partial."""
        _refuse_nested(func)
        return super().__new__(cls, func, *args, **keywords)

    def __setstate__(self, state: Any) -> None:
        """Take a pickled partial's state; UnpicklingError if its function is a partial."""
        if isinstance(state, tuple) and state:
            _refuse_nested(state[0])
        # partial's own (in C, unknown to the type stubs) checks the state's shape.
        super().__setstate__(state)  # type: ignore[misc]


class _LedgerUnpickler(pickle.Unpickler):
    """Unpickles ledger code and values only."""

    def __init__(self, data: bytes) -> None:
        super().__init__(io.BytesIO(data))

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("functools", "partial"):
            return _ShippedPartial
        if module == "builtins" and name in SHIPPED_BUILTIN_ERRORS:
            return super().find_class(module, name)
        if module in SHIPPED_MODULES and "." not in name and not name.startswith("__"):
            found = super().find_class(module, name)
            # Defined there, not merely imported there (``ledger`` imports ``time``).
            if getattr(found, "__module__", None) == module:
                return found
        raise pickle.UnpicklingError(f"{module}.{name} may not cross to the ledger")


def load(data: bytes) -> Any:
    """Unpickle a frame's payload; WireError if it is damaged or names anything else."""
    try:
        return _LedgerUnpickler(data).load()
    except WireError:
        raise
    except Exception as exc:  # a damaged or foreign frame, whatever pickle made of it
        raise WireError(f"an unreadable ledger frame: {type(exc).__name__}: {exc}") from exc


def shippable_error(exc: BaseException) -> BaseException:
    """``exc`` if the worker can unpickle it (a ledger error, or a TypeError or ValueError
    about the arguments), else the ledger error that says the same.

    A frame the service could not read (``WireError``) is StoreUnavailable on the worker's
    side, as a broken connection is: nothing ran, so the gateway answers UNAVAILABLE and
    the merchant's retry is safe. Shipped as a plain StoreError it would be a service
    failure, which the gateway answers with a signed Error the merchant takes as final.
    """
    if type(exc).__module__ == "gateway.ledger.errors" or (
        type(exc).__module__ == "builtins" and type(exc).__name__ in SHIPPED_BUILTIN_ERRORS
    ):
        return exc
    if isinstance(exc, WireError):
        return StoreUnavailable(f"the ledger service could not read the operation: {exc}")
    return StoreError(f"the ledger service failed: {type(exc).__name__}: {exc}")
