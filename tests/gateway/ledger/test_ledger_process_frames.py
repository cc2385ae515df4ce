"""Frames the ledger service refuses as it reads them, before anything is built: deeper
or larger than an operation of their kind, or filling in what they must not.

Hashing a value recurses in C, unchecked: a tuple some 200,000 deep, handed to a ledger
enum, crashed the ledger process (SIGSEGV) and every worker's operation in flight with
it. Each refusal here is answered (the worker answers UNAVAILABLE: nothing ran), nothing
of the frame is applied, and the process serves on.
"""

from __future__ import annotations

import functools
import pickle
import signal
import socket
import subprocess
import sys
from pathlib import Path
from types import FunctionType

import pytest

from gateway.ledger import (
    Decline,
    PrebuiltApproval,
    RemoteLedgerStore,
    RequestFenced,
    StoreUnavailable,
    books,
    idempotency,
    wire,
)
from tests.gateway.ledger.ledger_support import (
    ServedSqliteStore,
    exchange,
    service_in_a_child,
    text_op,
)

# Levels of the tuple that crashed the ledger process (a frame of about 200 KB).
CRASH_LEVELS = 200_000
# A READ nested deep, within a READ's size.
READ_LEVELS = 10_000
# A depth past the bound that hashes harmlessly: what is refused without any danger.
# The bounds of ``wire.OPERATION_BOUNDS`` (as the tests below check them).
EXECUTE_BYTES, EXECUTE_DEPTH = 1024 * 1024, 32
READ_BYTES, READ_DEPTH = 16 * 1024, 16
PAST_THE_BOUND = EXECUTE_DEPTH + 1


def _deep_enum_lookup(levels: int) -> bytes:
    """A frame: ``Decline(v)`` for ``v`` a tuple ``levels`` deep; the enum's lookup hashes
    ``v``. Written out, not pickled: pickling it would recurse as deep."""
    return (
        b"\x80\x05" + text_op("gateway.ledger.outcomes") + text_op("Decline") + b"\x93"
        b")" + b"\x85" * levels + b"\x85R."  # (), then (v,) around it; REDUCE; STOP
    )


def _stored(store: RemoteLedgerStore, rrpid: bytes = b"r") -> bytes | None:
    query = functools.partial(idempotency.stored_response, rrpid=rrpid, request_digest=b"d")
    found: bytes | None = store.read(query)
    return found


_UNBOUNDED_LOAD = """
import sys, threading
from gateway.ledger import wire
frame = sys.stdin.buffer.read()
# As the service's loop did: unpickle straight away, on a thread of its own.
loop = threading.Thread(target=wire.load, args=(frame,))
loop.start()
loop.join()
print("survived")
"""


def test_a_deep_value_crashes_an_unpickler_that_does_not_bound_it() -> None:
    # Why the bound: run in a child, the load the service made of every frame dies.
    result = subprocess.run(
        [sys.executable, "-c", _UNBOUNDED_LOAD],
        cwd=Path(__file__).resolve().parents[3],  # the repository, where gateway is
        input=_deep_enum_lookup(CRASH_LEVELS),
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == -signal.SIGSEGV, (result.returncode, result.stdout)
    # The same frame, read as the service reads it now: refused, nothing built.
    with pytest.raises(wire.FrameRefused, match=f"nesting deeper than the {EXECUTE_DEPTH} levels"):
        wire.load_operation(wire.EXECUTE, _deep_enum_lookup(CRASH_LEVELS))


def test_a_deep_value_is_refused_and_the_ledger_process_serves_on(tmp_path: Path) -> None:
    with service_in_a_child(tmp_path / "ledger.db") as child:
        # The frame that crashed it as an EXECUTE; a READ as deep would be over its size.
        for kind, levels, most_bytes, most in (
            (wire.EXECUTE, CRASH_LEVELS, EXECUTE_BYTES, EXECUTE_DEPTH),
            (wire.READ, READ_LEVELS, READ_BYTES, READ_DEPTH),
        ):
            frame = _deep_enum_lookup(levels)
            assert len(frame) <= most_bytes
            try:
                reply, error = exchange(child.path, kind, frame)
            except wire.WireError:  # the old service died here (SIGSEGV)
                child.process.join(30)
                pytest.fail(f"the ledger process died: exit {child.process.exitcode}")
            assert reply == wire.ERROR and isinstance(error, StoreUnavailable)
            assert f"frame nesting deeper than the {most} levels" in str(error)
        assert child.process.is_alive()
        store = RemoteLedgerStore(child.path)
        assert store.read(books.totals) == ()  # every other connection is served
        store.close()
        assert child.stop() == 0


def _deep(levels: int) -> object:
    value: object = ()
    for _ in range(levels - 1):
        value = (value,)
    return value


def test_an_operation_nesting_past_its_kinds_bound_is_refused_before_it_runs(
    served: ServedSqliteStore,
) -> None:
    # A fence that would be written, carrying a value past the bound on the side (an
    # attribute of its partial, which nothing reads): refused whole, nothing fenced.
    fence = functools.partial(idempotency.fence, rrpid=b"r", request_digest=b"d", now_ms=1)
    fence.extra = _deep(PAST_THE_BOUND)  # type: ignore[attr-defined]
    payload = wire.dump_operation(fence)
    reply, error = exchange(served.socket_path, wire.EXECUTE, payload)
    assert reply == wire.ERROR and isinstance(error, StoreUnavailable)
    assert f"deeper than the {EXECUTE_DEPTH} levels an operation of its kind may" in str(error)
    assert _stored(served) is None  # nothing applied
    # At the bound, the same operation runs.
    fence.extra = _deep(PAST_THE_BOUND - 4)  # type: ignore[attr-defined]
    reply, _ = exchange(served.socket_path, wire.EXECUTE, wire.dump_operation(fence))
    assert reply == wire.RESULT
    with pytest.raises(RequestFenced):  # applied: the request is fenced
        _stored(served)
    assert wire.nesting(payload, 10**6) == PAST_THE_BOUND + 3  # dict, state tuple, partial


def test_a_frame_larger_than_its_kind_is_refused_whole_and_the_connection_serves_on(
    served: ServedSqliteStore,
) -> None:
    most = EXECUTE_BYTES
    fence = functools.partial(idempotency.fence, rrpid=b"r", request_digest=b"d" * most, now_ms=1)
    payload = wire.dump_operation(fence)
    assert most < len(payload) < wire.MAX_FRAME_BYTES
    query = wire.dump_operation(
        functools.partial(idempotency.stored_response, rrpid=b"r", request_digest=b"d")
    )
    reads = READ_BYTES
    padded_read = wire.dump_operation(
        functools.partial(idempotency.stored_response, rrpid=b"r", request_digest=b"d" * reads)
    )
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(60)
        sock.connect(served.socket_path)
        wire.send_frame(sock, wire.EXECUTE, 1, payload)
        reply, body = wire.receive_answer(sock, 1)
        error = wire.load(body)
        assert reply == wire.ERROR and isinstance(error, StoreUnavailable)
        assert f"EXECUTE frame of {len(payload)} bytes, over the {most}" in str(error)
        # Read whole and skipped: the connection is in step, and serves the next.
        wire.send_frame(sock, wire.READ, 2, padded_read)
        reply, body = wire.receive_answer(sock, 2)
        assert reply == wire.ERROR and f"READ frame of {len(padded_read)} bytes" in str(
            wire.load(body)
        )
        wire.send_frame(sock, wire.READ, 3, query)
        assert wire.receive_answer(sock, 3) == (wire.RESULT, wire.dump_value(None))
    assert _stored(served) is None  # nothing applied


def _depth(value: object) -> int:
    """How deeply ``value`` nests, by the reading ``wire.nesting`` makes."""
    if isinstance(value, Decline):
        return 2  # Decline(("value",))
    if isinstance(value, str | bytes | int | float | bool | type(None) | type | FunctionType):
        return 0
    if isinstance(value, functools.partial):
        parts: list[object] = [value.func, value.args, value.keywords or None]
        if value.__dict__:
            parts.append(value.__dict__)
        return 2 + max(_depth(p) for p in parts)  # (func,) to build it, then its state
    if isinstance(value, dict):
        return 1 + max((_depth(p) for kv in value.items() for p in kv), default=0)
    if isinstance(value, tuple | list | set | frozenset):
        return 1 + max((_depth(p) for p in value), default=0)
    # Built from (cls, ()), then given its __dict__: two deeper than its deepest field.
    return 2 + max((_depth(p) for p in vars(value).values()), default=0)


def _held(part: object) -> PrebuiltApproval:
    """A ledger object holding ``part`` (a frame may name ledger classes only)."""
    return PrebuiltApproval(part, 1, 978, b"")  # type: ignore[arg-type]


def test_the_reading_follows_what_pickle_builds() -> None:
    assert {
        wire.EXECUTE: wire.Bounds(EXECUTE_BYTES, EXECUTE_DEPTH),
        wire.READ: wire.Bounds(READ_BYTES, READ_DEPTH),
    } == wire.OPERATION_BOUNDS
    shared = ("s", b"t")
    for value in (
        1,
        (),
        [1, [2, [3]]],
        {"a": {"b": (1, 2, frozenset({3}))}, "c": {4, 5}},
        (shared, [shared, (shared,)]),
        _held(_held(_held(Decline.HOLD_EXPIRED))),
        PrebuiltApproval("hold", 1, 978, b"answer"),
        functools.partial(books.totals),
        functools.partial(idempotency.fence, rrpid=(b"r",), request_digest=[[b"d"]], now_ms=1),
        _deep(PAST_THE_BOUND),
    ):
        payload, depth = pickle.dumps(value, protocol=5), _depth(value)
        assert wire.nesting(payload, 10**6) == depth, value
        assert wire.nesting(payload, depth) == depth
        if depth:
            with pytest.raises(wire.FrameRefused, match="nesting deeper"):
                wire.nesting(payload, depth - 1)
    # Text opcodes that name the memo (GET, PUT) are not read: a worker never sends them.
    with pytest.raises(wire.WireError, match="unreadable"):
        wire.nesting(b"(lp0\ng0\na.", 10)


def test_a_frame_that_fills_in_a_value_it_took_again_or_ledger_code_is_refused(
    served: ServedSqliteStore,
) -> None:
    # A list holding itself (cycles hide any depth) ...
    cycle: list[object] = []
    cycle.append(cycle)
    # ... a list filled in deeper after a tuple took it (the tuple's depth would be
    # counted before), ...
    hidden = b"\x80\x05]\x94h\x00\x85\x940(" + b")" + b"\x85" * 20 + b"e0h\x01."
    # ... and the attributes of a ledger function, which every later operation would see.
    code = b"\x80\x05" + text_op("gateway.ledger.idempotency") + text_op("fence") + b"\x93"
    altered = code + b"}" + text_op("marker") + b"K\x01sb."  # BUILD with {"marker": 1}
    try:
        for payload in (pickle.dumps(cycle, protocol=5), hidden, altered):
            reply, error = exchange(served.socket_path, wire.EXECUTE, payload)
            assert reply == wire.ERROR and "fills in a value" in str(error)
            with pytest.raises(wire.FrameRefused, match="fills in"):
                wire.nesting(payload, 10**6)
        assert not hasattr(idempotency.fence, "marker")
    finally:
        vars(idempotency.fence).pop("marker", None)  # what the old service did to it
    assert _stored(served) is None
