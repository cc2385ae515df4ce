"""What a ledger operation's frame may build, checked from its opcodes before anything is
(``gateway.ledger.frame_check``): calls of ledger classes only, fill-ins of what the frame
made new only, and a bounded number of keys hashed into sets and dicts.

A frame could name any ledger code, and unpickling calls what it names: ``Phase("pending")``
is the process's own enum member, and filling it in journalled every later authorization
in another phase; a partial of ``money.decided_by_caller`` hands back any ledger function,
whose attributes a frame then changed; ``books._marks`` with a count of millions ran on
the loop serving every worker; a frozenset of ints that all hash alike took some 40 s to
build. Each is refused now, answered, and nothing of it is built or applied.
"""

from __future__ import annotations

import pickle
import time

import pytest

from gateway.ledger import books, frame_check, idempotency, wire
from tests.gateway.ledger.ledger_support import ServedSqliteStore, exchange, text_op

# Ints that all hash alike (to 0): multiples of the modulus of Python's int hash.
COLLIDING = 2**61 - 1
# As long as a set of MOST_KEYS such keys may take to build, with room (about 0.1 s).
AT_THE_CAP_SECONDS = 1.0


def _named(module: str, name: str) -> bytes:
    return text_op(module) + text_op(name) + b"\x93"


def _then_totals(prefix: bytes) -> bytes:
    """PROTO 5, ``prefix`` (it leaves nothing on the stack), then a real READ-able
    operation: the frame is accepted but for what ``prefix`` builds."""
    return b"\x80\x05" + prefix + wire.dump_operation(books.totals)[2:]


def _refused(served: ServedSqliteStore, payload: bytes, why: str) -> None:
    with pytest.raises(wire.FrameRefused, match=why):
        wire.nesting(payload, 10**6)
    reply, error = exchange(served.socket_path, wire.EXECUTE, payload)
    assert reply == wire.ERROR, error
    assert why in str(error) and "nothing was built or applied" in str(error)


@pytest.mark.parametrize("call", [b"R", b"\x81"], ids=["REDUCE", "NEWOBJ"])
def test_an_enum_member_a_frame_names_is_never_filled_in(
    served: ServedSqliteStore, call: bytes
) -> None:
    # Phase("pending") is the process's Phase.PENDING, and so is Phase.__new__(Phase,
    # "pending") (how copyreg would make one); BUILD would rename it for good.
    member = _named("gateway.ledger.books", "Phase") + text_op("pending") + b"\x85" + call
    state = b"}(" + text_op("_name_") + text_op("X") + text_op("_value_") + text_op("post") + b"u"
    _refused(served, _then_totals(member + state + b"b0"), "fills in a value it did not make")
    assert books.Phase.PENDING.value == "pending" and books.Phase.PENDING.name == "PENDING"
    # Looked up and left alone, the member is what a real frame carries: accepted.
    reply, result = exchange(served.socket_path, wire.EXECUTE, _then_totals(member + b"0"))
    assert (reply, result) == (wire.RESULT, ())


def test_a_partial_is_never_called_as_the_frame_is_read(served: ServedSqliteStore) -> None:
    # partial(money.decided_by_caller, None, outcome=fence)() hands back the function.
    fence = _named("gateway.ledger.idempotency", "fence")
    handed_back = (
        _named("functools", "partial") + _named("gateway.ledger.money", "decided_by_caller")
        + b"\x85R(" + _named("gateway.ledger.money", "decided_by_caller") + b"N\x85"
        + b"}(" + text_op("outcome") + fence + b"uNtb" + b")R"
    )  # fmt: skip
    altered = handed_back + b"}(" + text_op("marker") + b"K\x01ub0"
    _refused(served, _then_totals(altered), "calls a function or a value, not a ledger class")
    assert not hasattr(idempotency.fence, "marker")


def test_a_ledger_function_is_never_run_as_the_frame_is_read(served: ServedSqliteStore) -> None:
    # books._marks(n) builds a list and a text of n: run on the loop, it held every worker.
    count = 10**6
    marks = _named("gateway.ledger.books", "_marks") + b"\x8a\x03" + count.to_bytes(3, "little")
    frame = b"\x80\x05" + marks + b"\x85R."
    _refused(served, frame, "calls a function or a value, not a ledger class")
    # The text opcodes name and call the same way, and are read the same way.
    for text_frame in (
        b"cgateway.ledger.books\n_marks\nK\x03\x85R.",  # GLOBAL, REDUCE
        b"(K\x03igateway.ledger.books\n_marks\n.",  # INST
        b"(cgateway.ledger.books\n_marks\nK\x03o.",  # OBJ
        b"\x80\x05" + marks + b")}\x92.",  # NEWOBJ_EX
    ):
        _refused(served, text_frame, "calls a function or a value, not a ledger class")


def test_only_ledger_code_is_named_and_only_what_is_new_is_filled_in() -> None:
    # A name outside the ledger, even one pickle would resolve, is refused unread.
    with pytest.raises(wire.FrameRefused, match="names code outside the ledger"):
        wire.nesting(b"\x80\x05" + _named("os", "system") + b".", 10**6)
    with pytest.raises(wire.FrameRefused, match="names code outside the ledger"):
        wire.nesting(b"\x80\x05" + _named("gateway.ledger.ledger", "time") + b".", 10**6)
    # A module and name that are no short text: unreadable.
    with pytest.raises(wire.WireError, match="named by something other than short text"):
        wire.nesting(b"\x80\x05K\x01K\x02\x93.", 10**6)
    # A tuple is not filled in, nor a class or a function named.
    for frame in (
        b"\x80\x05)K\x01a.",
        b"\x80\x05" + _named("gateway.ledger.books", "Phase") + b"}b.",
        b"\x80\x05" + _named("gateway.ledger.books", "totals") + b"K\x01K\x02s.",
    ):
        with pytest.raises(wire.FrameRefused, match="fills in a value it did not make"):
            wire.nesting(frame, 10**6)
    # What a real operation is: a new object of a ledger class, filled in, is accepted.
    assert wire.nesting(pickle.dumps(books.CurrencyTotals(978, 1, 2, 3, 4), protocol=5), 9)
    assert wire.nesting(pickle.dumps(ValueError("an argument"), protocol=5), 9)


def test_a_ledger_classs_constructor_never_runs_as_the_frame_is_read() -> None:
    # LedgerConfig(...) runs its checks; DueReleases(...) would read through its first
    # argument: made by __new__ alone (NEWOBJ), as pickle makes them, they may be.
    config = _named("gateway.ledger.ledger", "LedgerConfig")
    for called in (
        b"\x80\x05" + config + b")R.",  # REDUCE
        b"\x80\x05(" + config + b"o.",  # OBJ
        b"(igateway.ledger.ledger\nLedgerConfig\n.",  # INST
    ):
        with pytest.raises(wire.FrameRefused, match="runs a ledger class's constructor"):
            wire.nesting(called, 10**6)
    assert wire.nesting(b"\x80\x05" + config + b")\x81.", 9) == 2  # (), the object


def test_a_value_duplicated_on_the_stack_is_taken_again() -> None:
    # DUP a list, hold it in a tuple, append the tuple to the list: a list holding itself.
    with pytest.raises(wire.FrameRefused, match="fills in a value it took again"):
        wire.nesting(b"\x80\x05]2\x85a.", 10**6)


def _colliding(keys: int) -> bytes:
    return pickle.dumps(frozenset(k * COLLIDING for k in range(1, keys + 1)), protocol=5)


def test_keys_that_all_hash_alike_are_bounded(served: ServedSqliteStore) -> None:
    most = wire.MOST_KEYS
    past = _colliding(most + 1)
    assert len(past) < wire.OPERATION_BOUNDS[wire.EXECUTE].most_bytes
    _refused(served, past, f"puts more than the {most} keys an operation may into sets")
    # Into a dict: each key counted once, its value not.
    pairs = {k * COLLIDING: 0 for k in range(1, most + 2)}
    with pytest.raises(wire.FrameRefused, match="keys"):
        wire.nesting(pickle.dumps(pairs, protocol=5), 10**6)
    assert wire.nesting(pickle.dumps(dict(list(pairs.items())[:most]), protocol=5), 9) == 1
    # At the bound: read, and built in a fraction of a second.
    at_the_cap = _colliding(most)
    assert wire.nesting(at_the_cap, 10**6) == 1
    started = time.perf_counter()
    assert len(wire.load(at_the_cap)) == most
    assert time.perf_counter() - started < AT_THE_CAP_SECONDS


def test_the_kinds_are_found_by_the_rule_find_class_keeps() -> None:
    kinds = {
        ("functools", "partial"): frame_check.PARTIAL,
        ("gateway.ledger.books", "Phase"): frame_check.ENUM,
        ("gateway.ledger.books", "CurrencyTotals"): frame_check.CLASS,
        ("builtins", "ValueError"): frame_check.ERROR,
        ("gateway.ledger.errors", "StoreError"): frame_check.ERROR,
        ("gateway.ledger.books", "totals"): frame_check.VALUE,
    }
    for (module, name), kind in kinds.items():
        assert wire._kind_of(module, name) == kind
    for module, name in (("builtins", "eval"), ("gateway.ledger.books", "__builtins__")):
        with pytest.raises(frame_check.Refused):
            wire._kind_of(module, name)


def test_a_key_is_a_scalar_whatever_the_count(served: ServedSqliteStore) -> None:
    """Keys that all hash alike, each a tuple of memo references as long as the frame
    allows, cost as much to compare as they are long: 1,024 such keys in a 46 KB frame held
    the loop 15 s, within the key count. A key is a number, a text or bytes."""
    long_tuple = b"K\x07\x94(" + b"h\x00" * 50 + b"t\x94"  # memo 1: a tuple of 50
    keys = b"".join(b"h\x01K" + bytes([k]) + b"\x86" for k in range(1, 5))
    frame = b"\x80\x05" + long_tuple + b"0(" + keys + b"\x91."
    _refused(served, frame, "hashes a key that is not a number, a text or bytes")
    # Phase(("pending", ...)): an enum looked up by a value that is not a scalar.
    nested = _named("gateway.ledger.books", "Phase") + text_op("pending") + b"\x85\x85R"
    _refused(served, _then_totals(nested + b"0"), "hashes a key that is not a number")
    # Scalar keys, as real frames hash them: accepted.
    scalars = b"\x80\x05(" + b"".join(b"K" + bytes([k]) for k in range(1, 5)) + b"\x91."
    frame_check.read(scalars, 32, 4096, wire._kind_of)
