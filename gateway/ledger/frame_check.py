"""What an operation's frame would build, read from its pickle opcodes before anything is.

The ledger service unpickles each operation on the loop that serves every worker
(``gateway.ledger.service``), with ``find_class`` limited to ledger code (``wire``). That
limit alone leaves four ways for a frame to harm the process, and this reading refuses
each before a byte of it is unpickled:

- **Depth.** Hashing a value recurses in C, unchecked: a tuple some 200,000 deep handed
  to a ledger enum crashed the process (SIGSEGV). Each value is counted one deeper than
  its deepest part; a frame deeper than its kind's bound is refused.
- **Calls.** Unpickling calls what a frame names on the values it gives (REDUCE, NEWOBJ,
  OBJ, INST). Only a ledger *class* may be: a ledger function would run as the frame is
  read (``books._marks`` with a count of millions held every worker and hundreds of
  megabytes), and a value built already (a partial) would run the function it holds. A
  function crosses only as a value: the function of a partial. And a class's own code
  runs for none but an enum (its member looked up), ``partial`` and an error: any other
  is made as pickle makes it, by ``__new__`` alone (NEWOBJ), then filled in.
- **Fill-ins.** A value is filled in (BUILD, SETITEM(S), APPEND(S), ADDITEMS) only if the
  frame made it new: an empty list, dict or set, an object of a ledger class, a
  partial. An enum member, a function or a class is the process's own, shared by every
  later operation (BUILD on ``Phase("pending")`` journalled every later authorization in
  another phase), so filling one in is refused; so is filling in, deeper, a value taken
  again from the memo (a cycle, or a depth hidden from what holds it).
- **Hashing.** A set or dict of keys that all hash alike takes quadratic time to build
  (a frozenset of some 84,000 such ints in 1 MiB held every worker some 40 s): the
  keys a frame inserts into sets and dicts are counted and bounded.

``wire.nesting`` runs this for every operation and says what was refused.
"""

from __future__ import annotations

from collections.abc import Callable

# What a value is, as far as calls and fill-ins go: one the frame may not call or fill
# in (a scalar, a tuple, an enum member, a function), a new one it may fill in, or a
# ledger class (``resolve`` says which a name is): an enum, ``partial``, an error, or
# any other class.
VALUE, NEW, CLASS, ENUM, PARTIAL, ERROR = range(6)
# What each kind makes, called (REDUCE, OBJ, INST: its ``__init__`` runs, so only an
# enum's lookup, a partial's or an error's) or made (NEWOBJ: its ``__new__`` only, as
# pickle makes an object of a ledger class); None, it may not be.
_CALLED: tuple[int | None, ...] = (None, None, None, VALUE, NEW, NEW)
_MADE: tuple[int | None, ...] = (None, None, NEW, VALUE, NEW, NEW)


class Refused(Exception):
    """The frame builds what it must not; the message says what, after "a frame"."""


class Unreadable(Exception):
    """The payload is no pickle this reading follows."""


# How ``read`` takes each pickle opcode: the ones protocol 5 writes, and the text ones.
_SHORT, _MEMOIZE, _SCALAR, _GET, _PUT, _MARK, _SKIP, _LONG, _LINE, _STOP = range(1, 11)
_STACK_GLOBAL, _GLOBAL, _BINPERSID, _POP, _POP_MARK, _DUP = range(11, 17)
_EMPTY, _TUPLE_N, _TO_MARK, _CALL, _OBJ, _INST, _INTO, _INTO_MARK = range(17, 25)
_MEMOIZE_OP = 0x94
_SHORT_TEXT_OP = 0x8C


def _opcodes() -> tuple[list[int], list[int], list[int], list[int], list[bool]]:
    """For each opcode: how ``read`` takes it; a size (its argument's bytes, its length's
    bytes, its lines, or the values it takes off the stack); what it makes (``VALUE`` or
    ``NEW``); the values it takes for each key it hashes into a set or dict (0: none);
    whether it makes an object by its class's ``__new__`` alone (NEWOBJ)."""
    hows, sizes, makes, hashes = [0] * 256, [0] * 256, [VALUE] * 256, [0] * 256
    by_new = [False] * 256
    for code in b"\x81\x92":  # NEWOBJ, NEWOBJ_EX
        by_new[code] = True
    for codes, how, size in (
        (b"\x8cCU\x8a", _SHORT, 1),  # str, bytes, str, int: a length byte, then data
        (b"\x94", _MEMOIZE, 0),
        (b"N\x88\x89\x97", _SCALAR, 0),  # None, True, False, an out-of-band buffer
        *((b"K\x82", _SCALAR, 1), (b"M\x83", _SCALAR, 2), (b"J\x84", _SCALAR, 4)),
        *((b"G", _SCALAR, 8), (b"h", _GET, 1), (b"j", _GET, 4), (b"q", _PUT, 1)),
        *((b"r", _PUT, 4), (b"(", _MARK, 0), (b"\x98", _SKIP, 0), (b"\x80", _SKIP, 1)),
        *((b"\x95", _SKIP, 8), (b"XBT\x8b", _LONG, 4), (b"\x8d\x8e\x96", _LONG, 8)),
        *((b"ILFSVP", _LINE, 1), (b"c", _GLOBAL, 2), (b".", _STOP, 0)),
        *((b"\x93", _STACK_GLOBAL, 2), (b"Q", _BINPERSID, 1), (b"0", _POP, 0)),
        *((b"1", _POP_MARK, 0), (b"2", _DUP, 0), (b")]}\x8f", _EMPTY, 0)),
        *((b"\x85", _TUPLE_N, 1), (b"\x86", _TUPLE_N, 2), (b"\x87", _TUPLE_N, 3)),
        *((b"tld\x91", _TO_MARK, 0), (b"o", _OBJ, 0), (b"i", _INST, 2)),
        *((b"R\x81", _CALL, 2), (b"\x92", _CALL, 3), (b"ab", _INTO, 1), (b"s", _INTO, 2)),
        (b"eu\x90", _INTO_MARK, 0),
    ):
        for code in codes:
            hows[code], sizes[code] = how, size
    for code in b"]}\x8fld":  # empty list, dict, set; a list, a dict of the marked
        makes[code] = NEW
    for code in b"\x90\x91":  # ADDITEMS, FROZENSET: a key each
        hashes[code] = 1
    for code in b"sud":  # SETITEM(S), DICT: a key and its value
        hashes[code] = 2
    return hows, sizes, makes, hashes, by_new


_HOWS, _SIZES, _MAKES, _HASHES, _BY_NEW = _opcodes()


# A key other than a scalar can cost as much to hash and compare as it is long: keys that
# all hash alike, each a tuple of thousands of memo references, held the loop 15 s in a
# 46 KB frame, within the key count. Real frames hash scalars alone.
_COSTLY_KEY = "that hashes a key that is not a number, a text or bytes into a set or dict"


def _text(payload: bytes, node: int) -> str:
    """The short text (SHORT_BINUNICODE) that stack entry ``node`` (< 0) stands for."""
    at = -node
    if node >= 0 or payload[at - 1] != _SHORT_TEXT_OP:
        raise Unreadable("a class or function named by something other than short text")
    return payload[at + 1 : at + 1 + payload[at]].decode("utf-8")


def read(
    payload: bytes, most_depth: int, most_keys: int, resolve: Callable[[str, str], int]
) -> int:
    """How deeply the values ``payload`` unpickles to nest (0: a scalar, a function or a
    class; 1: a container or object of those; ...), read from its opcodes without
    building anything. Refused as soon as a value nests deeper than ``most_depth``, more
    than ``most_keys`` keys go into sets and dicts, something other than a ledger class
    is called, or something the frame did not make new is filled in (the module's
    docstring); Unreadable if it is no pickle this reading follows. ``resolve`` says
    what kind (``VALUE``, ``CLASS``, ``ENUM``, ``PARTIAL``) a named global is, and
    raises Refused for a name that may not cross.

    Each container or object is a node, one deeper than its deepest part; a node filled
    in before anything else holds it is as deep as its parts. A short text is kept on
    the stack as minus its offset (a class's module and name, for STACK_GLOBAL). It runs
    on the service's loop for every operation: the common opcodes come first, and the
    MEMOIZE that follows most values is taken with them.
    """
    depths = [0]  # by node; node 0 is every scalar and function
    kinds = [VALUE]
    stack: list[int] = []
    push = stack.append
    marks: list[int] = []
    memo: dict[int, int] = {}
    taken_again: set[int] = set()
    hows, sizes = _HOWS, _SIZES
    deepest = at = keys = 0
    try:
        while True:
            op = payload[at]
            how = hows[op]
            at += 1
            if how == _SHORT:
                node = -at
                at += 1 + payload[at]
                push(node)
                if payload[at] == _MEMOIZE_OP:
                    memo[len(memo)] = node
                    at += 1
            elif how == _MEMOIZE:
                memo[len(memo)] = stack[-1]
            elif how == _GET:
                size = sizes[op]
                node = memo[int.from_bytes(payload[at : at + size], "little")]
                at += size
                if node > 0:
                    taken_again.add(node)
                push(node)
            elif how == _SCALAR:
                at += sizes[op]
                push(0)
            elif how == _MARK:
                marks.append(len(stack))
            elif how == _PUT:
                size = sizes[op]
                memo[int.from_bytes(payload[at : at + size], "little")] = stack[-1]
                at += size
            elif how == _SKIP:
                at += sizes[op]
            elif how == _LONG:
                size = sizes[op]
                at += size + int.from_bytes(payload[at : at + size], "little")
                push(0)
            elif how == _LINE:
                at = payload.index(b"\n", at) + 1
                push(0)
            elif how == _STOP:
                return deepest
            elif how in (_STACK_GLOBAL, _GLOBAL):
                if how == _GLOBAL:
                    end = payload.index(b"\n", at)
                    module, at = payload[at:end].decode("utf-8"), end + 1
                    end = payload.index(b"\n", at)
                    name, at = payload[at:end].decode("utf-8"), end + 1
                else:
                    name, module = _text(payload, stack.pop()), _text(payload, stack.pop())
                kind = resolve(module, name)
                node = 0
                if kind != VALUE:
                    node = len(depths)
                    depths.append(0)
                    kinds.append(kind)
                push(node)
                if payload[at] == _MEMOIZE_OP:
                    memo[len(memo)] = node
                    at += 1
            elif how == _BINPERSID:
                stack[-1] = 0
            elif how == _POP:
                if marks and marks[-1] == len(stack):
                    marks.pop()  # as the unpickler does: the mark on top goes
                else:
                    stack.pop()
            elif how == _POP_MARK:
                del stack[marks.pop() :]
            elif how == _DUP:
                node = stack[-1]
                if node > 0:
                    taken_again.add(node)
                push(node)
            elif how < _EMPTY:
                raise Unreadable(f"opcode {op} at byte {at - 1}")
            else:  # a node built, or filled in, from values taken off the stack
                made = _MAKES[op]
                if how == _EMPTY:
                    depth = 1
                else:
                    if how in (_TUPLE_N, _CALL, _INTO):
                        start = len(stack) - sizes[op]
                    else:
                        start = marks.pop()
                    if how >= _CALL and how <= _INST:  # a call: of a ledger class only
                        if how == _INST:
                            end = payload.index(b"\n", at)
                            module, at = payload[at:end].decode("utf-8"), end + 1
                            end = payload.index(b"\n", at)
                            name, at = payload[at:end].decode("utf-8"), end + 1
                            callee = resolve(module, name)
                        else:
                            callee = kinds[stack[start]] if stack[start] > 0 else VALUE
                        called = (_MADE if _BY_NEW[op] else _CALLED)[callee]
                        if called is None:
                            raise Refused(
                                "that calls a function or a value, not a ledger class, or"
                                " runs a ledger class's constructor"
                            )
                        made = called
                        if callee == ENUM:
                            keys += 1  # the member is looked up by its value's hash
                            # Its arguments: a tuple of scalars (depth 1), no more.
                            if any(depths[node] > 1 for node in stack[start + 1 :] if node > 0):
                                raise Refused(_COSTLY_KEY)
                    elif _HASHES[op]:
                        keys += (len(stack) - start) // _HASHES[op]
                        if any(node > 0 for node in stack[start :: _HASHES[op]]):
                            raise Refused(_COSTLY_KEY)  # a key each, or a key and its value
                    if keys > most_keys:
                        raise Refused(
                            f"that puts more than the {most_keys} keys an operation may"
                            " into sets and dicts"
                        )
                    depth = 1
                    for node in stack[start:]:
                        if node > 0 and depths[node] >= depth:
                            depth = depths[node] + 1
                    del stack[start:]
                if how < _INTO:
                    node = len(depths)
                    depths.append(depth)
                    kinds.append(made)
                    push(node)
                    if payload[at] == _MEMOIZE_OP:
                        memo[len(memo)] = node
                        at += 1
                else:
                    node = stack[-1]
                    if node <= 0 or kinds[node] != NEW:
                        raise Refused(
                            "that fills in a value it did not make: an enum member, a"
                            " scalar, a function or a class"
                        )
                    if depth <= depths[node]:
                        continue
                    if node in taken_again:
                        raise Refused("that fills in a value it took again (a cycle)")
                    depths[node] = depth
                if depth > deepest:
                    deepest = depth
                    if depth > most_depth:
                        raise Refused(
                            f"nesting deeper than the {most_depth} levels an operation"
                            " of its kind may"
                        )
    except (IndexError, KeyError, ValueError) as exc:  # UnicodeDecodeError is one
        raise Unreadable(f"{type(exc).__name__} at byte {at}") from exc
