"""Outcomes as JSON text, for a decision the ledger keeps while its answer is built.

The ledger commits a decision before the caller signs its answer (``idempotency``), so
the outcome must outlive the process that decided it: a retry, perhaps after a restart,
builds the answer from the stored outcome. JSON rather than pickle: the database is
read by people and other tools, and loading it must never run code.

Each outcome class is an object with a ``type`` naming it; enums are their values; an
optional field is null; a tuple is a list; a dict keyed by an enum is an object keyed by
the enum's value. Only the classes of ``outcomes`` below can be named, and decoding is
driven by each class's field types, so text that does not fit is refused, never guessed.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import types
import typing
from typing import Any

from gateway.ledger.errors import OutcomeUnreadable
from gateway.ledger.outcomes import (
    AuthorizationReversed,
    Authorized,
    BatchOutcome,
    BatchSummary,
    Declined,
    KindTotals,
    Outcome,
    Posted,
    PostingOutcome,
    ReversalDeclined,
)

_OUTCOMES = (Authorized, AuthorizationReversed, PostingOutcome, BatchOutcome, Declined)
# Every class a stored outcome may name: the outcomes and their parts.
_CLASSES: dict[str, type[Any]] = {
    cls.__name__: cls for cls in (*_OUTCOMES, ReversalDeclined, BatchSummary, KindTotals, Posted)
}

# Each class's fields and their declared types, resolved once here: resolving the
# annotations costs several times more than decoding the fields themselves.
_FIELD_TYPES: dict[type[Any], dict[str, Any]] = {
    cls: {f.name: hints[f.name] for f in dataclasses.fields(cls)}
    for cls in _CLASSES.values()
    for hints in (typing.get_type_hints(cls),)
}


def dumps(outcome: Outcome) -> str:
    """The outcome as compact JSON text."""
    if not isinstance(outcome, _OUTCOMES):
        raise TypeError(f"not an outcome: {type(outcome).__name__}")
    text = json.dumps(_encode(outcome), separators=(",", ":"), sort_keys=True)
    # Refuse now what could not be read back when a retry needs it (a field of the
    # wrong type), rather than commit a decision whose answer can never be built.
    try:
        same = loads(text) == outcome
    except OutcomeUnreadable:
        same = False
    if not same:
        raise TypeError(f"a {type(outcome).__name__} that does not read back as written")
    return text


def loads(text: str) -> Outcome:
    """The outcome ``dumps`` wrote; OutcomeUnreadable for anything else."""
    try:
        value = _decode(json.loads(text), Outcome)
    except (ValueError, TypeError, KeyError, RecursionError) as exc:
        raise OutcomeUnreadable(f"a stored outcome cannot be read: {exc}") from exc
    return typing.cast(Outcome, value)


def _encode(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {f.name: _encode(getattr(value, f.name)) for f in dataclasses.fields(value)}
        return {"type": type(value).__name__, **fields}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, tuple):
        return [_encode(item) for item in value]
    if isinstance(value, dict):
        return {_encode(key): _encode(item) for key, item in value.items()}
    if value is None or isinstance(value, bool | int | str):
        return value
    raise TypeError(f"an outcome cannot hold a {type(value).__name__}")


def _decode(value: Any, kind: Any) -> Any:
    """``value`` (parsed JSON) as an instance of the type ``kind``, checked all the way."""
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        return _decode_union(value, typing.get_args(kind))
    if origin is tuple:
        item_kind, ellipsis = typing.get_args(kind)
        if ellipsis is not Ellipsis:
            raise TypeError("outcomes hold only homogeneous tuples")
        return tuple(_decode(item, item_kind) for item in _expect(value, list))
    if origin is dict:
        key_kind, item_kind = typing.get_args(kind)
        return {
            _decode(key, key_kind): _decode(item, item_kind)
            for key, item in _expect(value, dict).items()
        }
    if isinstance(kind, type) and issubclass(kind, enum.Enum):
        return kind(value)
    if isinstance(kind, type) and dataclasses.is_dataclass(kind):
        return _decode_class(value, kind)
    if kind is bool or kind is str:
        return _expect(value, kind)
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"expected an integer, found {type(value).__name__}")
        return value
    raise TypeError(f"no rule to read a {kind!r}")


def _decode_union(value: Any, kinds: tuple[Any, ...]) -> Any:
    if value is None:
        if type(None) not in kinds:
            raise TypeError("a value is missing")
        return None
    if isinstance(value, dict):
        named = _CLASSES.get(str(value.get("type")))
        if named is None or named not in kinds:
            raise TypeError(f"an object of type {value.get('type')!r} does not belong here")
        return _decode_class(value, named)
    plain = [kind for kind in kinds if kind is not type(None)]
    if len(plain) != 1:
        raise TypeError("an untyped value where only objects belong")
    return _decode(value, plain[0])


def _decode_class(value: Any, cls: type[Any]) -> Any:
    fields = dict(_expect(value, dict))
    if fields.pop("type", None) != cls.__name__:
        raise TypeError(f"expected a {cls.__name__}")
    hints = _FIELD_TYPES[cls]
    if fields.keys() != hints.keys():
        raise TypeError(f"a {cls.__name__} with fields {sorted(fields)}")
    return cls(**{name: _decode(fields[name], kind) for name, kind in hints.items()})


def _expect(value: Any, kind: type[Any]) -> Any:
    if not isinstance(value, kind):
        raise TypeError(f"expected {kind.__name__}, found {type(value).__name__}")
    return value
