"""The ledger's statements are rendered with the dialect's type names and nothing else.

``schema._render`` is a function of a module whose code may cross to the ledger service,
so a frame can call it with a statement of its own. Rendered with ``str.format``, a field
such as ``{blob.__class__.__mro__}`` read attributes and items of whatever the dialect
held, on to any module's globals, and the answer (an error repeating an id) carried what
it read back to the peer.
"""

from __future__ import annotations

import dataclasses
import functools
import io
import pickle
import socket
from typing import Any

import pytest

from gateway.ledger import SchemaError, StoreUnavailable, accounts, schema, wire
from tests.gateway.ledger.ledger_support import ServedSqliteStore

PROBE = "{blob.__class__.__mro__}"


def test_every_statement_renders_as_before() -> None:
    for dialect in (schema.SQLITE, schema.POSTGRES):
        for migration in schema.MIGRATIONS:
            for statement in migration:
                expected = statement.format(**dataclasses.asdict(dialect))
                assert schema._render(statement, dialect) == expected


@pytest.mark.parametrize(
    "statement",
    [PROBE, "{blob[0]}", "{blob!r}", "{blob:>99}", "{0}", "{}", "{other}", "a { b", "a } b"],
)
def test_a_statement_with_another_field_or_a_stray_brace_is_refused(statement: str) -> None:
    with pytest.raises(SchemaError) as refused:
        schema._render(statement, schema.SQLITE)
    assert "class" not in str(refused.value) and statement not in str(refused.value)


def test_a_dialect_that_is_not_the_ledgers_is_refused() -> None:
    copy = dataclasses.replace(schema.SQLITE, blob="BLOB); DROP TABLE holds; --")
    with pytest.raises(SchemaError, match="not the ledger's"):
        schema._render("CREATE TABLE t (x {blob})", copy)
    with pytest.raises(SchemaError, match="not the ledger's"):
        schema._render("x", dataclasses.replace(schema.SQLITE))


class _Rendered:
    """Pickles as ``schema._render(statement, schema.SQLITE)``, called as it is read."""

    def __init__(self, statement: str) -> None:
        self.statement = statement


class _ByName(pickle.Pickler):
    """Names ``schema.SQLITE`` (a frame may), and calls ``_render`` as it is read."""

    def reducer_override(self, obj: Any) -> Any:
        if obj is schema.SQLITE:
            return "SQLITE"
        if isinstance(obj, _Rendered):
            return schema._render, (obj.statement, schema.SQLITE)
        return NotImplemented


def test_a_frame_cannot_read_attributes_through_render(served: ServedSqliteStore) -> None:
    # The read's error repeats the id it was given: what the field read, before.
    query = functools.partial(accounts.card_by_id, account_id=_Rendered(PROBE), now_ms=0)
    buffer = io.BytesIO()
    _ByName(buffer, protocol=5).dump(query)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(30)
        sock.connect(served.socket_path)
        wire.send_frame(sock, wire.READ, 1, buffer.getvalue())
        reply, body = wire.receive_answer(sock, 1)
    error = wire.load(body)
    assert reply == wire.ERROR
    assert "<class" not in str(error)
    # Refused as the frame's opcodes were read: a frame calls no ledger function, so
    # ``_render`` never ran (nothing ran: the worker may try again). ``_render``'s own
    # refusal of the field stands behind it (the tests above).
    assert isinstance(error, StoreUnavailable)
    assert "calls a function or a value, not a ledger class" in str(error)
