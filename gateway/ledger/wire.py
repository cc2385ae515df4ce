"""How ledger operations travel between a worker and the ledger service (``service``).

An operation is what ``Ledger`` hands its store: a function of one ``Transaction``. Here
it is always a ``functools.partial`` of a ledger rule (a module-level function of
``gateway.ledger``) with plain arguments, so it can be pickled by value. Three rules keep
that safe and cheap:

- **Only ledger code can be named.** The service unpickles with ``find_class`` limited to
  what the modules in ``SHIPPED_MODULES`` define (not what they import), Python's
  ``TypeError`` and ``ValueError``, and ``functools.partial`` (as ``_ShippedPartial``,
  never a partial of a partial): any function, class or constant of those modules,
  private ones too, and nothing else (not ``os.system``). The socket is reachable by
  the bank's own user only (``service``), so this is defence in depth, not the only wall.
- **A frame builds only what an operation needs, no larger and no deeper.** The service
  reads an operation's opcodes before it builds anything (``nesting``, ``frame_check``)
  and refuses, answering the refusal with nothing built and nothing applied, one that:
  is larger than ``OPERATION_BOUNDS`` allows (skipped as it comes, never held) or
  nests deeper (hashing a value recurses in C, unchecked: a tuple some 200,000 deep
  crashed the process, SIGSEGV, every worker's operation in flight with it); calls
  anything but a ledger class (a ledger function would run as the frame is read, on
  the loop serving every worker); fills in anything it did not make new (an enum
  member, a function or a class is shared by every later operation) or a value it took
  again (a cycle); or puts more than ``MOST_KEYS`` keys into sets and dicts (keys that
  hash alike take quadratic time). What runs is then the operation itself: a partial of
  a ledger function, called by the store on its transaction.
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
the bytes come, never waiting for the rest (``service``), so a worker stopped in the
middle of a frame holds up no other; a worker waits for its answer (``receive_answer``)
up to its timeout.

A connection carries one operation at a time, in step: whenever a side cannot be sure
of what the other read or will send next (an answer that came too late or not at all, a
frame of the wrong kind or number, one that does not unpickle), it closes the connection
rather than go on; the worker dials afresh for its next operation.
"""

from __future__ import annotations

import builtins
import enum
import functools
import importlib
import io
import pickle
import socket
import struct
import types
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gateway.ledger import frame_check
from gateway.ledger.errors import StoreAway, StoreError, StoreUnavailable

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
# Largest frame either side accepts: the largest answer is a batch detail page (500
# items). An operation has a far lower bound of its kind's (``OPERATION_BOUNDS``).
MAX_FRAME_BYTES = 16 * 1024 * 1024

# Frame kinds. Worker to service: EXECUTE or READ. Service to worker: RESULT or ERROR.
# Kinds 3 to 5 are retired and never reused: a frame of one, say from a side of an older
# release, is a frame of the wrong kind, and its connection is closed.
EXECUTE = 1
READ = 2
RESULT = 6
ERROR = 7

KIND_NAMES = {EXECUTE: "EXECUTE", READ: "READ", RESULT: "RESULT", ERROR: "ERROR"}


@dataclass(frozen=True)
class Bounds:
    """How large (payload bytes) and how deeply nested a frame of one kind may be."""

    most_bytes: int
    most_depth: int


# What an operation may be, by kind, measured on the real operations through the gateway
# (tests/gateway/test_ledger_process_frame_sizes.py: authorizations, a capture, credit
# and credit reversal of 100 items, batch admin with the largest page, the operators'
# reads): an EXECUTE is at most some 33 KB (storing the signed answer to 100 items) and
# 9 deep (a decision on 100 items), a READ at most some 200 bytes and 3 deep. Each bound
# leaves room for larger answers (a detail page of 500) and new rules; a value nested
# this deep hashes in a few kilobytes of stack.
OPERATION_BOUNDS: Mapping[int, Bounds] = {
    EXECUTE: Bounds(most_bytes=1024 * 1024, most_depth=32),
    READ: Bounds(most_bytes=16 * 1024, most_depth=16),
}

# Keys a frame may put into sets and dicts (``frame_check``): the real operations put at
# most 410 (a decision on 100 items; measured as the bounds are), and this leaves 10x
# room. Keys that all hash alike cost quadratic time: this many, some 0.1 s at most.
MOST_KEYS = 4096

HEADER = struct.Struct(">IBI")  # payload length, kind, operation number
# Operation numbers fill the header's 4 bytes and wrap round to 1 (0 is never used).
MAX_NUMBER = 2**32 - 1


class WireError(StoreUnavailable):
    """The connection to the ledger service broke or carried something it must not."""


class ConnectionEnded(WireError, StoreAway):
    """The service's end of the connection closed before its answer came whole: the
    ledger process died or was restarted (the ledger away, ``StoreAway``), not a frame
    out of step."""


class FrameRefused(WireError):
    """A frame refused whole as it was read (a kind that is no operation, too large, too
    deep): nothing was built from it, the connection is in step for the next."""

    def __init__(self, message: str, kind: int = 0, number: int = 0) -> None:
        """The refusal of operation ``number``'s frame of kind ``kind`` (0: as given)."""
        super().__init__(message)
        self.kind = kind
        self.number = number


class NotLedgerCode(TypeError):
    """An operation or value holds a callable that is not ledger code; nothing was sent."""


def next_number(number: int) -> int:
    """The number of the operation after operation ``number`` on one connection."""
    return number % MAX_NUMBER + 1


def send_frame(sock: socket.socket, kind: int, number: int, payload: bytes) -> None:
    """Send one frame of operation ``number``."""
    if len(payload) > MAX_FRAME_BYTES:
        raise WireError(f"a ledger frame of {len(payload)} bytes is over the limit")
    sock.sendall(HEADER.pack(len(payload), kind, number) + payload)


def _receive_exactly(sock: socket.socket, size: int) -> bytes:
    buffer = bytearray(size)
    view = memoryview(buffer)
    got = 0
    while got < size:
        n = sock.recv_into(view[got:], size - got)
        if n == 0:
            raise ConnectionEnded("the ledger connection closed")
        got += n
    return bytes(buffer)


def receive_frame(sock: socket.socket) -> tuple[int, int, bytes]:
    """Receive one frame: (kind, operation number, payload)."""
    size, kind, number = HEADER.unpack(_receive_exactly(sock, HEADER.size))
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
        found = _shipped(module, name)
        if found is None:
            raise pickle.UnpicklingError(f"{module}.{name} may not cross to the ledger")
        return found


def load(data: bytes) -> Any:
    """Unpickle a frame's payload; WireError if it is damaged or names anything else."""
    try:
        return _LedgerUnpickler(data).load()
    except WireError:
        raise
    except Exception as exc:  # a damaged or foreign frame, whatever pickle made of it
        raise WireError(f"an unreadable ledger frame: {type(exc).__name__}: {exc}") from exc


def load_operation(kind: int, payload: bytes) -> Any:
    """Unpickle an operation frame's payload once ``nesting`` has found it no deeper than
    its kind's bound (FrameRefused, nothing built); WireError as ``load``."""
    nesting(payload, OPERATION_BOUNDS[kind].most_depth, KIND_NAMES[kind])
    return load(payload)


def _shipped(module: str, name: str) -> Any:
    """What a frame may name as ``module``.``name`` (``find_class``'s rule), or None:
    ``functools.partial`` (as ``_ShippedPartial``), a shipped builtin error, or what a
    module of ``SHIPPED_MODULES`` defines (not what it imports: ``ledger`` imports
    ``time``)."""
    if (module, name) == ("functools", "partial"):
        return _ShippedPartial
    if module == "builtins" and name in SHIPPED_BUILTIN_ERRORS:
        return getattr(builtins, name)
    if module in SHIPPED_MODULES and "." not in name and not name.startswith("__"):
        found = getattr(importlib.import_module(module), name, None)
        if found is not None and getattr(found, "__module__", None) == module:
            return found
    return None


# What each name a frame may name is, for ``frame_check`` (found once, then kept: the
# names that may cross are few).
_KINDS: dict[tuple[str, str], int] = {}


def _kind_of(module: str, name: str) -> int:
    """``frame_check``'s kind of what a frame names: a ledger enum, ``partial``, an error,
    another class, or a value (a function, a constant); Refused for a name that may not
    cross."""
    kind = _KINDS.get((module, name))
    if kind is None:
        found = _shipped(module, name)
        if found is None:
            raise frame_check.Refused(
                f"that names code outside the ledger: {module}.{name} may not cross to the ledger"
            )
        if found is _ShippedPartial:
            kind = frame_check.PARTIAL
        elif isinstance(found, type) and issubclass(found, enum.Enum):
            kind = frame_check.ENUM
        elif isinstance(found, type) and issubclass(found, BaseException):
            kind = frame_check.ERROR
        elif isinstance(found, type):
            kind = frame_check.CLASS
        else:
            kind = frame_check.VALUE
        _KINDS[(module, name)] = kind
    return kind


def nesting(payload: bytes, most: int, kind: str = "operation", most_keys: int = MOST_KEYS) -> int:
    """How deeply the values ``payload`` unpickles to nest, read from its opcodes
    without building anything (``frame_check.read``). FrameRefused, naming ``kind``, as
    soon as a value nests deeper than ``most``, more than ``most_keys`` keys go into
    sets and dicts, anything but a ledger class is called, or anything the frame did not
    make new is filled in; WireError if it is no pickle this reading follows."""
    try:
        return frame_check.read(payload, most, most_keys, _kind_of)
    except frame_check.Refused as exc:
        raise FrameRefused(f"a ledger {kind} frame {exc}: nothing was built or applied") from None
    except frame_check.Unreadable as exc:
        raise WireError(f"an unreadable ledger frame: {exc}") from None


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
