"""The ledger away (``StoreAway``) told from a ledger that lasts unavailable.

A worker's replacement that meets the ledger away as it starts is started again
(``gateway.child.PASSING_FAULTS``); one that meets any other StoreUnavailable stops the
bank. Every StoreUnavailable once passed: a damaged ledger file, a file that cannot be
created, a password PostgreSQL refuses had a replacement retried for ever, every half
minute at most, while the bank said so once and went on. So the stores sort them where
they translate a fault: away is the ledger process's connection refused, reset, ended
or timed out, and the PostgreSQL server refusing no one but not answering, shutting
down or starting; the rest stays StoreUnavailable.
"""

from __future__ import annotations

import contextlib
import socket
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import errors as pg_errors

from gateway.child import fault_line, passes
from gateway.ledger import (
    PostgresLedgerStore,
    RemoteLedgerStore,
    SqliteLedgerStore,
    StoreAway,
    StoreUnavailable,
    books,
    wire,
)
from gateway.ledger import postgres as pg_store
from gateway.ledger.postgres_refusals import connect_refused, server_away
from tests.gateway.ledger.ledger_support import TEST_DATABASE, PgCluster

# A service's answer to the one connection it takes: given the connection, it reads the
# operation (or not) and answers (or not).
Answer = Callable[[socket.socket], None]


@contextlib.contextmanager
def _service(answer: Answer) -> Iterator[str]:
    """A stand-in ledger service answering each connection with ``answer``; its socket."""
    directory = Path(tempfile.mkdtemp(prefix="away-"))  # short: a socket path
    path = str(directory / "ledger.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen()
    listener.settimeout(0.05)
    done = threading.Event()

    def serve() -> None:
        while not done.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(10)
                answer(conn)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield path
    finally:
        done.set()
        thread.join(10)
        listener.close()
        Path(path).unlink(missing_ok=True)
        directory.rmdir()


def _operation(conn: socket.socket) -> int:
    """Read one operation's frame off ``conn``; its number."""
    size, _, number = wire.HEADER.unpack(_exactly(conn, wire.HEADER.size))
    _exactly(conn, size)
    return int(number)


def _exactly(conn: socket.socket, size: int) -> bytes:
    got = b""
    while len(got) < size:
        part = conn.recv(size - len(got))
        assert part, "the worker's side closed"
        got += part
    return got


def _read_through(answer: Answer) -> StoreUnavailable:
    """What a read through a service answering ``answer`` fails with."""
    with _service(answer) as path:
        store = RemoteLedgerStore(path)
        try:
            with pytest.raises(StoreUnavailable) as raised:
                store.read(books.totals)
        finally:
            store.close()
    return raised.value


def test_no_ledger_process_listening_is_the_ledger_away(tmp_path: Path) -> None:
    with pytest.raises(StoreAway, match="the ledger service does not answer"):
        RemoteLedgerStore(str(tmp_path / "ledger.sock"))  # killed: its socket gone
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as left:
        left.bind(str(tmp_path / "left.sock"))  # its socket left, no one listening
        with pytest.raises(StoreAway, match="Connection refused"):
            RemoteLedgerStore(str(tmp_path / "left.sock"))


def test_a_ledger_process_dying_before_it_answers_is_the_ledger_away() -> None:
    def hang_up(conn: socket.socket) -> None:
        _operation(conn)  # killed with the operation read, never answered

    ended = _read_through(hang_up)
    assert isinstance(ended, StoreAway) and isinstance(ended, wire.ConnectionEnded)

    def reset(conn: socket.socket) -> None:
        conn.recv(1)  # killed with the operation unread: the worker's side is reset

    assert isinstance(_read_through(reset), StoreAway)


def test_a_ledger_process_answering_its_database_unavailable_is_not_away() -> None:
    """The ledger process serves, its SQLite file damaged: the operator's to mend."""
    damaged = StoreUnavailable("SQLite is unavailable (SQLITE_CORRUPT)")

    def answer(conn: socket.socket) -> None:
        number = _operation(conn)
        wire.send_frame(conn, wire.ERROR, number, wire.dump_value(damaged))
        conn.recv(1)  # until the worker's side closes

    said = _read_through(answer)
    assert not isinstance(said, StoreAway)
    assert str(said) == str(damaged)


def test_a_frame_out_of_step_is_not_away() -> None:
    def answer(conn: socket.socket) -> None:
        number = _operation(conn)
        wire.send_frame(conn, wire.RESULT, number + 1, wire.dump_value(None))
        conn.recv(1)

    assert not isinstance(_read_through(answer), StoreAway)


def test_a_damaged_sqlite_ledger_or_one_that_cannot_be_made_is_not_away(tmp_path: Path) -> None:
    no_database = tmp_path / "ledger.db"
    no_database.write_bytes(b"\x00not a database" * 4096)
    with pytest.raises(StoreUnavailable, match="SQLITE_NOTADB") as raised:
        SqliteLedgerStore(str(no_database))
    assert not isinstance(raised.value, StoreAway)
    with pytest.raises(StoreUnavailable, match="cannot create or narrow") as raised:
        SqliteLedgerStore(str(tmp_path / "not-mounted" / "ledger.db"))
    assert not isinstance(raised.value, StoreAway)


# What psycopg said, here, of a connection libpq could not open (the socket's directory
# shortened), for a server away and for one refusing the connection.
SOCKET = 'connection to server on socket "/run/pg/.s.PGSQL.5432" failed: '
REFUSED_TCP = (
    'connection to server at "127.0.0.1", port 1 failed: Connection refused\n\tIs the server'
    " running on that host and accepting TCP/IP connections?"
)
SEVERAL = "\nMultiple connection attempts failed. All failures were:\n"
STANDBY_TCP = 'connection to server at "10.0.0.2", port 5432 failed: '
AWAY_CONNECTING = {
    "no-socket": f"connection is bad: {SOCKET}No such file or directory\n\tIs the server"
    " running locally and accepting connections on that socket?",
    "connection-refused": f"connection failed: {REFUSED_TCP}",
    "shutting-down": f"connection failed: {SOCKET}FATAL:  the database system is shutting down",
    "starting-up": f"connection failed: {SOCKET}FATAL:  the database system is starting up",
    "name-service-failing": "failed to resolve host 'db.example': [Errno -3] Temporary failure"
    " in name resolution",
    "every-host-away": f"connection failed: {REFUSED_TCP}{SEVERAL}- host: '/run/pg', port:"
    f" '5432', hostaddr: None: connection failed: {SOCKET}FATAL:  the database system is"
    f" starting up\n- host: '127.0.0.1', port: '1', hostaddr: '127.0.0.1': connection failed:"
    f" {REFUSED_TCP}",
    # A failover seen through a multi-host string with target_session_attrs: the old
    # primary gone, the new one not yet promoted (libpq's words for read-write and for
    # primary).
    "failover-read-only": f"connection failed: {REFUSED_TCP}{SEVERAL}- host: '10.0.0.1',"
    f" port: '5432', hostaddr: '10.0.0.1': connection failed: {REFUSED_TCP}\n- host:"
    f" '10.0.0.2', port: '5432', hostaddr: '10.0.0.2': connection failed: {STANDBY_TCP}session"
    " is read-only",
    "failover-hot-standby": f"connection failed: {REFUSED_TCP}{SEVERAL}- host: '10.0.0.1',"
    f" port: '5432', hostaddr: '10.0.0.1': connection failed: {REFUSED_TCP}\n- host:"
    f" '10.0.0.2', port: '5432', hostaddr: '10.0.0.2': connection failed: {STANDBY_TCP}server"
    " is in hot standby mode",
    "one-host-not-yet-primary": f"connection failed: {SOCKET}session is read-only",
}
REFUSED_CONNECTING = {
    "password": f'connection failed: {SOCKET}FATAL:  password authentication failed for user "t"',
    "no-database": f'connection failed: {SOCKET}FATAL:  database "nosuch" does not exist',
    "no-role": f'connection failed: {SOCKET}FATAL:  role "nosuchrole" does not exist',
    "no-password-given": f"connection failed: {SOCKET}fe_sendauth: no password supplied",
    "unknown-host": "failed to resolve host 'no.such.host.invalid': [Errno -2] Name or service"
    " not known",
    # One host away, the other refusing: the refusal lasts.
    "one-host-refusing": f"connection failed: {REFUSED_TCP}{SEVERAL}- host: '/run/pg', port:"
    f" '5432', hostaddr: None: connection failed: {SOCKET}FATAL:  role \"nosuchrole\" does"
    f" not exist\n- host: '127.0.0.1', port: '1', hostaddr: '127.0.0.1': connection failed:"
    f" {REFUSED_TCP}",
}


@pytest.mark.parametrize("said", AWAY_CONNECTING.values(), ids=AWAY_CONNECTING.keys())
def test_a_connection_to_a_server_away_is_the_ledger_away(said: str) -> None:
    assert server_away(psycopg.OperationalError(said))
    assert isinstance(connect_refused(psycopg.OperationalError(said), ()), StoreAway)


@pytest.mark.parametrize("said", REFUSED_CONNECTING.values(), ids=REFUSED_CONNECTING.keys())
def test_a_connection_the_server_refuses_lasts(said: str) -> None:
    assert not server_away(psycopg.OperationalError(said))
    assert type(connect_refused(psycopg.OperationalError(said), ())) is StoreUnavailable


def test_psycopgs_connect_timeout_is_the_server_away() -> None:
    assert server_away(pg_errors.ConnectionTimeout("connection timeout expired"))


def test_a_timeout_on_the_last_host_says_nothing_of_a_refusal_on_another() -> None:
    """psycopg gives a failure of several hosts the last attempt's type: the last host
    timing out made a role an earlier host refused "away", retried for ever."""
    said = (
        f"connection timeout expired{SEVERAL}- host: '/run/pg', port: '5432', hostaddr:"
        f' None: connection failed: {SOCKET}FATAL:  role "nosuchrole" does not exist\n-'
        " host: '127.0.0.1', port: '5432', hostaddr: '127.0.0.1': connection timeout expired"
    )
    refused = pg_errors.ConnectionTimeout(said)
    assert not server_away(refused)
    assert type(connect_refused(refused, ())) is StoreUnavailable
    every_host_away = pg_errors.ConnectionTimeout(said.replace(
        'FATAL:  role \"nosuchrole\" does not exist', "Connection refused"
    ))  # fmt: skip
    assert server_away(every_host_away)


@pytest.mark.parametrize(
    ("error", "away"),
    [
        (pg_errors.AdminShutdown("terminating connection due to administrator command"), True),
        (pg_errors.CannotConnectNow("the database system is starting up"), True),
        (pg_errors.ConnectionFailure("connection failure"), True),
        (psycopg.OperationalError("consuming input failed: server closed the connection"), True),
        (pg_errors.DataCorrupted("invalid page in block 0"), False),
        (pg_errors.DiskFull("could not extend file"), False),
        (pg_errors.TooManyConnections("sorry, too many clients already"), False),
        (pg_errors.ProtocolViolation("unexpected message type"), False),
        (pg_errors.SqlserverRejectedEstablishmentOfSqlconnection("rejected"), False),
        (psycopg.OperationalError("the connection is closed"), False),
        (pg_errors.ReadOnlySqlTransaction("cannot execute INSERT"), False),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, Exception) else str(value),
)
def test_an_outage_of_a_connection_open_is_away_only_for_the_server_gone(
    error: psycopg.Error, away: bool
) -> None:
    translated = pg_store.translate_error(error)
    assert isinstance(translated, StoreUnavailable)
    assert isinstance(translated, StoreAway) is away


def test_a_session_the_server_ends_is_the_ledger_away(pg_cluster: PgCluster) -> None:
    conninfo = pg_cluster.conninfo(TEST_DATABASE)
    with psycopg.connect(conninfo, autocommit=True) as ended, psycopg.connect(conninfo) as other:
        other.execute("SELECT pg_terminate_backend(%s)", [ended.info.backend_pid])
        with pytest.raises(psycopg.OperationalError) as raised:
            ended.execute("SELECT 1")
    assert isinstance(pg_store.translate_error(raised.value), StoreAway)


def test_a_database_not_there_is_not_away(pg_cluster: PgCluster) -> None:
    with pytest.raises(StoreUnavailable, match="does not exist") as raised:
        PostgresLedgerStore(pg_cluster.conninfo("no_such_ledger"))
    assert not isinstance(raised.value, StoreAway)
    nowhere = f"host={pg_cluster.root / 'nowhere'} port={pg_cluster.port} user=ledger"
    with pytest.raises(StoreAway, match="No such file or directory"):
        PostgresLedgerStore(nowhere + f" dbname={TEST_DATABASE}")


@pytest.mark.parametrize("hosts", [1, 2], ids=["one-host", "old-primary-down"])
def test_a_host_not_yet_the_primary_target_session_attrs_asks_for_is_away(
    pg_cluster: PgCluster, hosts: int
) -> None:
    """A failover seen through ``target_session_attrs=read-write``: libpq's "session is
    read-only" (here of a real server whose sessions are read-only, as a standby's are),
    beside the old primary refusing connections or alone, was taken for lasting, and a
    replacement starting then stopped the bank, its other worker serving, though the new
    primary is promoted within seconds."""
    host, port = str(pg_cluster.root), str(pg_cluster.port)
    if hosts == 2:
        host, port = f"127.0.0.1,{host}", f"1,{port}"  # nothing listens on port 1
    conninfo = (
        f"host={host} port={port} user=ledger dbname={TEST_DATABASE}"
        " options='-c default_transaction_read_only=on' target_session_attrs=read-write"
    )
    with pytest.raises(StoreAway, match="session is read-only") as raised:
        PostgresLedgerStore(conninfo)
    assert passes(fault_line(raised.value))
    if hosts == 2:
        assert "Connection refused" in str(raised.value.__cause__)
