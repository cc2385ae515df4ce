"""A PostgreSQL URL's password is never shown, however libpq cuts it (``postgres_refusals``).

libpq ends a URL's user info at its first ``@``, a host at ``:``, ``/``, ``?`` or ``,``
(an IPv6 one at ``]``), a query parameter at ``&``. A password holding one of these
unescaped is read as a password and the rest as hosts, ports, a database or query
parameters, which `setpay ca prune-gateway` showed (``shown_ledger``) and libpq's reason
for a refused connection named ("failed to resolve host 'Xv7Lq2'"): the password's tail.
The pieces were looked for only up to the first ``?`` after an ``@``, never cut at a
``,``, ``?`` or ``[``, and a query's ``password=`` was not cut at all. No server is
needed: the hosts named cannot be resolved.
"""

from __future__ import annotations

import logging

import psycopg
import pytest

from gateway.ledger import PostgresLedgerStore, StoreUnavailable
from gateway.ledger.postgres_refusals import REASON_WITHHELD, connect_secrets
from gateway.pruning_ledger import URL_WITHHELD, shown_ledger

# No connection: the URL's own secrets alone.
_NO_ERROR = psycopg.Error()
WITHHELD = f"PostgreSQL is unavailable (cannot connect: {REASON_WITHHELD})"

# Each: a URL whose writer's password ("k9@Xv7Lq2..." and the like) libpq reads in
# part as something it names; the piece named is "Xv7Lq2", "dor3" or "Lq2".
CUT_PASSWORDS = [
    # The reviewer's: a ? after the @ starts the query, whose own @ ended the user info.
    "postgresql://bank:k9@Xv7Lq2?application_name=a@db.example/ledger",
    "postgresql://bank:Tr0ub@dor3?connect_timeout=9@db.example/ledger",
    "postgres://bank:k9@Xv7Lq2?application_name=a@db.example/ledger",
    # The host named is percent-decoded: "Xv%37Lq2" is named "Xv7Lq2".
    "postgresql://bank:k9@Xv%37Lq2?application_name=a@db.example/ledger",
    # A # is no fragment to libpq: the host is "Xv7#Lq2".
    "postgresql://bank:k9#@Xv7#Lq2?application_name=a@db.example/ledger",
    # Several @, the last in the query.
    "postgresql://bank:a@b@Xv7Lq2?application_name=c@db.example/ledger",
    # A database, then the query.
    "postgresql://bank:k9@Xv7Lq2/Zp4?application_name=a@db.example/ledger",
    # A comma separates two hosts, each named on its own.
    "postgresql://bank:k9@Xv7,Lq2@nowhere.invalid/ledger",
    # A bracketed IPv6 host is named without its brackets.
    "postgresql://bank:k9@[Xv7Lq2]?application_name=a@db.example/ledger",
    # A query's password holding an unescaped &: libpq reads the rest as a host.
    "postgresql://nowhere.invalid/ledger?user=bank&password=k9&host=Xv7Lq2",
    "postgresql://nowhere.invalid/ledger?user=bank&pass%77ord=k9&host=Xv7Lq2",
    # A key file's passphrase, too.
    "postgresql://bank@nowhere.invalid/ledger?sslpassword=k9&host=Xv7Lq2",
]


@pytest.mark.parametrize("url", CUT_PASSWORDS)
def test_a_url_whose_password_libpq_cuts_is_not_shown(url: str) -> None:
    assert shown_ledger(url) == URL_WITHHELD


@pytest.mark.parametrize("url", CUT_PASSWORDS)
def test_a_url_whose_password_libpq_cuts_withholds_the_refusals_reason(
    url: str, caplog: pytest.LogCaptureFixture
) -> None:
    with (
        caplog.at_level(logging.WARNING, logger="setpay.ledger"),
        pytest.raises(StoreUnavailable) as raised,
    ):
        PostgresLedgerStore(url)
    assert str(raised.value) == WITHHELD
    said = [r.getMessage() for r in caplog.records if r.name == "setpay.ledger"]
    assert said and all(REASON_WITHHELD in line for line in said)
    assert not any(piece in line for line in said for piece in ("Xv7", "Lq2", "dor3"))


# Each: a URL libpq reads as its writer meant, every part of it shown.
READ_WHOLE = [
    # A password's own ?, :, comma, & or = before its one @ are the password's.
    ("postgresql://bank:pa?s,s@db.example/ledger", "user='bank' host='db.example'"),
    ("postgresql://bank:pa:ss&x=y@db.example/ledger", "user='bank' host='db.example'"),
    # A query's password last, or followed by a parameter's name alone.
    (
        "postgresql://db.example/ledger?user=bank&password=k9",
        "user='bank' host='db.example' dbname='ledger'",
    ),
    (
        "postgresql://bank@db.example/ledger?password=k9&sslmode=require",
        "user='bank' host='db.example' dbname='ledger'",
    ),
    (
        "postgresql://bank:k9@[::1]:5433/ledger",
        "user='bank' host='::1' port='5433' dbname='ledger'",
    ),
]


@pytest.mark.parametrize(("url", "parts"), READ_WHOLE)
def test_a_url_libpq_reads_whole_is_shown(url: str, parts: str) -> None:
    assert shown_ledger(url).startswith(f"PostgreSQL {parts}")


def test_a_query_parameters_name_is_no_secret() -> None:
    # libpq names no parameter it reads after a query's password, only refuses an unknown
    # one: "host" and "port" taken for secrets would withhold every reason naming a host.
    url = "postgresql://db.example/ledger?password=k9&port=5433&host=db.example"
    secrets = connect_secrets(url, _NO_ERROR)
    assert {"k9", "5433", "db.example"} <= secrets
    assert not {"port", "host"} & secrets


def test_a_urls_user_name_is_no_secret() -> None:
    url = "postgresql://bank:k9@Xv7Lq2?application_name=a@db.example/ledger"
    assert "bank" not in connect_secrets(url, _NO_ERROR)


def test_a_refusal_of_a_url_read_whole_names_its_reason() -> None:
    # The query's password followed by another parameter: only its value is withheld.
    url = "postgresql://bank@nowhere.invalid/ledger?password=k9&sslmode=disable"
    with pytest.raises(StoreUnavailable) as raised:
        PostgresLedgerStore(url)
    assert "failed to resolve host 'nowhere.invalid'" in str(raised.value)
