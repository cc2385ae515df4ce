"""Helpers for the ledger tests: test cards, a clock, a gateway-like driver, PostgreSQL.

The PostgreSQL cluster is real: initdb and pg_ctl from the Debian ``postgresql`` package,
run as the ``postgres`` user when the tests run as root (initdb refuses root), listening
only on a Unix socket in a private temporary directory. Missing binaries FAIL the tests:
they never skip.
"""

from __future__ import annotations

import contextlib
import itertools
import multiprocessing
import os
import pwd
import shutil
import signal
import socket
import sqlite3
import subprocess
import tempfile
import urllib.parse
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path

import psycopg
import pytest

from gateway.cpu_turn import CpuTurn
from gateway.ledger import (
    CommitObserver,
    Ledger,
    LedgerStore,
    Outcome,
    PostgresLedgerStore,
    RemoteLedgerStore,
    SqliteLedgerStore,
    wire,
)
from gateway.ledger.service import LedgerService
from gateway.ledger.store import Transaction
from tests.cards import MASTERCARD, VISA, VISA_2

# Where Debian puts the server binaries (one directory per major version).
DEBIAN_PG_ROOT = Path("/usr/lib/postgresql")
# A start or stop of the throwaway cluster that takes longer than this is a failure.
PG_CTL_TIMEOUT_SECONDS = 60
# The throwaway cluster's port, always this one. The cluster listens on no TCP address
# (listen_addresses is empty), only on a Unix socket in its own private directory, where
# the port just names the socket file: no other process can take it there, and clusters
# of several sessions run side by side. A "free" TCP port picked and let go before the
# start would be a race for a port the server never binds.
CLUSTER_PORT = 5432
# The database of the throwaway cluster that holds one schema per test.
TEST_DATABASE = "ledger_tests"
# A moment well inside card validity for the test cards (expiry 2030-12): 2025-10-09.
START_MS = 1_760_000_000_000


def find_pg_bindir() -> Path:
    """The directory holding initdb and pg_ctl, or fail loudly."""
    configured = os.environ.get("SETPAY_PG_BINDIR")
    candidates: list[Path] = [Path(configured)] if configured else []
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(Path(on_path).parent)
    if DEBIAN_PG_ROOT.is_dir():
        versions = sorted(
            (p for p in DEBIAN_PG_ROOT.iterdir() if p.name.isdigit()),
            key=lambda p: int(p.name),
            reverse=True,
        )
        candidates.extend(p / "bin" for p in versions)
    for candidate in candidates:
        if (candidate / "initdb").is_file() and (candidate / "pg_ctl").is_file():
            return candidate
    pytest.fail(
        "PostgreSQL server binaries (initdb, pg_ctl) not found: install the Debian"
        " 'postgresql' package or set SETPAY_PG_BINDIR",
        pytrace=False,
    )


@dataclass
class PgCluster:
    """A running throwaway PostgreSQL cluster reachable on a Unix socket."""

    bindir: Path
    root: Path
    port: int
    run_as: list[str]
    _names: Iterator[int] = field(default_factory=itertools.count)

    @property
    def data(self) -> Path:
        return self.root / "data"

    def conninfo(
        self, dbname: str, schema: str | None = None, settings: Mapping[str, str] | None = None
    ) -> str:
        """A libpq connection string; ``settings`` are server settings for its sessions."""
        info = f"host={self.root} port={self.port} user=ledger dbname={dbname}"
        options = {} if schema is None else {"search_path": schema}
        options.update(settings or {})
        if not options:
            return info
        return info + " options='" + " ".join(f"-c {k}={v}" for k, v in options.items()) + "'"

    def pg_ctl(self, *args: str) -> None:
        subprocess.run(
            [*self.run_as, str(self.bindir / "pg_ctl"), "-D", str(self.data), *args],
            check=True,
            capture_output=True,
            timeout=PG_CTL_TIMEOUT_SECONDS,
        )

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        options = f"-k {self.root} -p {self.port} -c listen_addresses='' -c fsync=on"
        self.pg_ctl("-l", str(self.root / "server.log"), "-w", "-o", options, "start")

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``fast``: its sessions are told, as in a restart or failover)."""
        self.pg_ctl("-m", mode, "-w", "stop")

    def new_schema(self, settings: Mapping[str, str] | None = None) -> str:
        """A conninfo whose tables land in a fresh, empty schema of the test database
        (its sessions with ``settings``, server settings the superuser may set).

        A schema per test is as isolated as a database per test, and ten times cheaper
        (CREATE DATABASE with fsync on costs ~0.3 s here).
        """
        name = f"ledger_test_{next(self._names)}"
        with psycopg.connect(self.conninfo(TEST_DATABASE), autocommit=True) as conn:
            conn.execute(f'CREATE SCHEMA "{name}"'.encode())
        return self.conninfo(TEST_DATABASE, name, settings)

    def ledger_url(self, schema: str) -> str:
        """Make the empty schema ``schema`` in the test database: the URL a bank's
        ``SETPAY_LEDGER`` names a ledger there by."""
        with psycopg.connect(self.conninfo(TEST_DATABASE), autocommit=True) as conn:
            conn.execute(f'CREATE SCHEMA "{schema}"'.encode())
        query = urllib.parse.urlencode(
            {"host": str(self.root), "port": self.port, "options": f"-c search_path={schema}"},
            quote_via=urllib.parse.quote,  # %20 for a space: libpq reads no "+" as one
        )
        return f"postgresql://ledger@/{TEST_DATABASE}?{query}"


@contextlib.contextmanager
def throwaway_pg_cluster() -> Iterator[PgCluster]:
    """A PostgreSQL cluster started in a temporary directory, with ``TEST_DATABASE``;
    stopped and removed when the block ends."""
    bindir = find_pg_bindir()
    root = Path(tempfile.mkdtemp(prefix="setpay-pg-"))
    run_as: list[str] = []
    if os.geteuid() == 0:
        owner = pwd.getpwnam("postgres")
        os.chown(root, owner.pw_uid, owner.pw_gid)
        run_as = ["runuser", "-u", "postgres", "--"]
    cluster = PgCluster(bindir=bindir, root=root, port=CLUSTER_PORT, run_as=run_as)
    try:
        subprocess.run(
            [
                *run_as,
                str(bindir / "initdb"),
                "-D",
                str(cluster.data),
                "-U",
                "ledger",
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",  # the cluster's own bootstrap; the server itself runs with fsync on
            ],
            check=True,
            capture_output=True,
            timeout=PG_CTL_TIMEOUT_SECONDS,
        )
        cluster.start()
        with psycopg.connect(cluster.conninfo("postgres"), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{TEST_DATABASE}"'.encode())
    except subprocess.CalledProcessError as exc:
        shutil.rmtree(root, ignore_errors=True)
        pytest.fail(f"could not start PostgreSQL: {exc.stderr.decode(errors='replace')}")
    try:
        yield cluster
    finally:
        try:
            # A test may have left it stopped: pg_ctl then says so, and nothing is to stop.
            if (cluster.data / "postmaster.pid").exists():
                cluster.stop("immediate")
        finally:
            shutil.rmtree(root, ignore_errors=True)


# Test card numbers (the card brands' published test numbers, ``tests.cards``).
PAN_A = VISA
PAN_B = MASTERCARD
PAN_C = VISA_2
EXPIRY = "203012"
EUR = 978
USD = 840
MERCHANT = "merchant-1"


def luhn_pan(body: str) -> str:
    """``body`` plus its Luhn check digit."""
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch)
        if i % 2 == 0:
            d *= 2
            d -= 9 if d > 9 else 0
        total += d
    return body + str((10 - total % 10) % 10)


class FakeClock:
    """An injectable clock in Unix milliseconds that moves only when told."""

    def __init__(self, now_ms: int = START_MS) -> None:
        self.now_ms = now_ms

    def __call__(self) -> int:
        return self.now_ms

    def advance(self, ms: int) -> None:
        self.now_ms += ms


@dataclass
class Backend:
    """One store implementation under test, and raw access to its database."""

    name: str
    open_store: Callable[..., LedgerStore]
    """Open a store on this backend's database; takes an optional ``observer``."""
    raw_execute: Callable[[str], None]
    files: Callable[[], list[Path]]
    raw_query: Callable[[str], list[tuple[object, ...]]]
    """Every row of a query, read over a connection of its own."""


def sqlite_backend(path: Path) -> Backend:
    def raw(sql: str) -> None:
        conn = sqlite3.connect(path)
        try:
            conn.execute(sql)
            conn.commit()
        finally:
            conn.close()

    def query(sql: str) -> list[tuple[object, ...]]:
        conn = sqlite3.connect(path)
        try:
            return list(conn.execute(sql))
        finally:
            conn.close()

    return Backend(
        name="sqlite",
        open_store=lambda observer=None: SqliteLedgerStore(path, observer=observer),
        raw_execute=raw,
        files=lambda: sorted(path.parent.glob(path.name + "*")),
        raw_query=query,
    )


class ServedSqliteStore(RemoteLedgerStore):
    """A SQLite store served by a ``LedgerService`` in this process, used over its socket:
    the wire, the service and the remote store under the same tests as the others.

    The remote side gets a turn to compute of its own, as in the bank, where the service
    is another process with its own turn.
    """

    def __init__(self, path: Path, observer: CommitObserver | None = None) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="ledger-"))  # short: a socket path
        self.socket_path = str(self.directory / "ledger.sock")
        self.service = LedgerService(SqliteLedgerStore(path, observer=observer), self.socket_path)
        try:
            super().__init__(self.socket_path, cpu=CpuTurn())
        except BaseException:
            self.service.close()
            raise

    def close(self) -> None:
        try:
            super().close()
            self.service.close()
        finally:
            shutil.rmtree(self.directory, ignore_errors=True)


def exchange(
    path: str, kind: int, payload: bytes, number: int = 1, timeout: float = 60
) -> tuple[int, object]:
    """Send one frame of ``kind`` over a connection of its own; the answer's kind and
    what it carries (the frames a worker would never send, straight to the service)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(path)
        wire.send_frame(sock, kind, number, payload)
        reply, body = wire.receive_answer(sock, number)
        return reply, wire.load(body)


def text_op(text: str) -> bytes:
    """``text`` as a pickle's SHORT_BINUNICODE, for frames written out by hand."""
    return b"\x8c" + bytes([len(text)]) + text.encode()


@dataclass
class ServiceChild:
    """A ledger service in a spawned process of its own, as the bank's ledger process."""

    path: str
    process: BaseProcess
    control: Connection

    def stop(self) -> int | None:
        """Ask the service to close; how the process exited."""
        self.control.send("stop")
        self.process.join(30)
        return self.process.exitcode


def _serve_in_child(db: str, path: str, control: Connection) -> None:
    service = LedgerService(SqliteLedgerStore(db), path)
    control.send("serving")
    control.recv()
    service.close()


@contextlib.contextmanager
def service_in_a_child(db: Path) -> Iterator[ServiceChild]:
    """Serve ``db`` from a spawned process, for frames that could crash the process; once
    it says it serves. Killed afterwards if still alive (a test that fails midway)."""
    directory = Path(tempfile.mkdtemp(prefix="ledger-"))  # short: a socket path
    path = str(directory / "ledger.sock")
    context = multiprocessing.get_context("spawn")
    control, child_end = context.Pipe()
    child = context.Process(target=_serve_in_child, args=(str(db), path, child_end))
    child.start()
    child_end.close()
    try:
        assert control.recv() == "serving"
        yield ServiceChild(path, child, control)
    finally:
        if child.is_alive() and child.pid is not None:
            os.kill(child.pid, signal.SIGKILL)
        child.join()
        shutil.rmtree(directory, ignore_errors=True)


def served_sqlite_backend(path: Path) -> Backend:
    """The SQLite database of ``sqlite_backend``, reached through a ledger service."""
    plain = sqlite_backend(path)
    return Backend(
        name="sqlite-service",
        open_store=lambda observer=None: ServedSqliteStore(path, observer),
        raw_execute=plain.raw_execute,
        files=plain.files,
        raw_query=plain.raw_query,
    )


def postgres_backend(conninfo: str) -> Backend:
    def raw(sql: str) -> None:
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute(sql.encode())

    def query(sql: str) -> list[tuple[object, ...]]:
        with psycopg.connect(conninfo, autocommit=True) as conn:
            return list(conn.execute(sql.encode()).fetchall())

    return Backend(
        name="postgres",
        open_store=lambda observer=None: PostgresLedgerStore(conninfo, observer=observer),
        raw_execute=raw,
        files=lambda: [],
        raw_query=query,
    )


class Bank:
    """Drives a ledger the way the gateway does, recording every outcome it responds to."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self.outcomes: list[Outcome] = []
        self._ids = itertools.count(1)

    def respond(self, outcome: Outcome) -> bytes:
        """Record the outcome; answer unique bytes, so a recomputed answer would differ."""
        self.outcomes.append(outcome)
        return repr(outcome).encode() + b"|" + os.urandom(16)

    def fresh(self, label: str) -> bytes:
        # Random too, so two drivers on one database never mint the same RRPID.
        return f"{label}-{next(self._ids)}-{os.urandom(6).hex()}".encode()

    def last(self) -> Outcome:
        return self.outcomes[-1]

    def authorize(
        self,
        pan: str = PAN_A,
        amount: int = 1000,
        *,
        currency: int = EUR,
        merchant: str = MERCHANT,
        pan_expiry: str = EXPIRY,
        xid: bytes | None = None,
        rrpid: bytes | None = None,
        digest: bytes | None = None,
        capture_now: bool = False,
        expires_at_ms: int | None = None,
    ) -> Outcome:
        """Authorize and return the outcome the ledger responded to."""
        self.ledger.authorize(
            pan=pan,
            pan_expiry=pan_expiry,
            amount=amount,
            currency=currency,
            merchant_id=merchant,
            xid=xid or self.fresh("xid"),
            pi_digest=self.fresh("pi"),
            rrpid=rrpid or self.fresh("rrpid"),
            request_digest=digest or self.fresh("digest"),
            respond=self.respond,
            capture_now=capture_now,
            hold_expires_at_ms=expires_at_ms,
        )
        return self.last()

    def call(self, method: Callable[..., bytes], /, *args: object, **kwargs: object) -> Outcome:
        """Any other money operation, with a fresh RRPID and digest unless given."""
        kwargs.setdefault("rrpid", self.fresh("rrpid"))
        kwargs.setdefault("request_digest", self.fresh("digest"))
        method(*args, respond=self.respond, **kwargs)
        return self.last()


def insert_probe(value: int) -> Callable[[Transaction], int]:
    """An operation that inserts ``value`` into the ``probe`` table and returns it."""

    def work(tx: Transaction) -> int:
        tx.run("INSERT INTO probe (value) VALUES (?)", value)
        return value

    return work


def probe_values(path: Path) -> list[int]:
    """The ``probe`` table's values, sorted, read over a connection of its own."""
    conn = sqlite3.connect(path)
    try:
        return sorted(v for (v,) in conn.execute("SELECT value FROM probe"))
    finally:
        conn.close()
