"""The PostgreSQL store behind a real PgBouncer in transaction mode, as OPERATIONS.md allows.

There consecutive transactions of one client connection run on different server
sessions. A statement psycopg prepared on the server (by default once it has run five
times on a connection) is then missing on the next one (SQLSTATE 26000) or another
client's of the same name is there (42P05): the operation fails, as a signed refusal or,
with the decision committed and its answer not stored, as AnswerNotStored. Two stores
(two gateway hosts) share the pooler here, their threads running the same operations
more than enough times on each of their connections. Prepared statements stay an opt-in
(``PostgresStoreConfig.prepare_threshold``, a bank's ``[ledger] prepare_statements``) for
a direct connection.

PgBouncer is the Debian ``pgbouncer`` package (``make system-deps``): missing, the test
FAILS, it never skips.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from gateway.config import BankConfig
from gateway.issuer import open_store
from gateway.ledger import (
    Authorized,
    CaptureItem,
    Ledger,
    LedgerKeys,
    LedgerStore,
    Outcome,
    Posted,
    PostgresLedgerStore,
    PostgresStoreConfig,
    PostingOutcome,
)
from tests.gateway.ledger.ledger_support import (
    EUR,
    EXPIRY,
    MERCHANT,
    PAN_A,
    PAN_B,
    FakeClock,
    PgCluster,
    postgres_backend,
)

# Where Debian installs the binary (not on a non-root PATH).
DEBIAN_PGBOUNCER = Path("/usr/sbin/pgbouncer")
# The pooler listens on a Unix socket in its own private directory only, where the port
# just names the socket file (as the cluster's ``CLUSTER_PORT``): nothing can take it.
POOLER_PORT = 6432
# Server sessions per database and user: several, so that a client's next transaction
# often lands on another one; fewer than the clients' connections, so they are shared.
SERVER_SESSIONS = 3
# Two gateway hosts, each with this many threads, each thread this many rounds of an
# authorization then a capture of its hold: every connection of a store's pool runs each
# statement well past psycopg's default threshold of five.
HOSTS = 2
THREADS_PER_HOST = 4
ROUNDS = 12
STARTUP_SECONDS = 10.0


def pgbouncer_binary() -> Path:
    """The pgbouncer program, or fail loudly."""
    on_path = shutil.which("pgbouncer")
    if on_path:
        return Path(on_path)
    if DEBIAN_PGBOUNCER.is_file():
        return DEBIAN_PGBOUNCER
    pytest.fail(
        "pgbouncer not found: install the Debian 'pgbouncer' package (make system-deps)",
        pytrace=False,
    )


@contextlib.contextmanager
def pgbouncer(cluster: PgCluster, dbname: str) -> Iterator[str]:
    """A PgBouncer in transaction mode in front of ``dbname``; yields its conninfo.

    Its directory (configuration, socket, log) is made as the cluster's is, readable by
    the user it runs as (``postgres`` when the tests run as root: it refuses root)."""
    binary = pgbouncer_binary()
    root = Path(tempfile.mkdtemp(prefix="setpay-pgbouncer-"))
    if cluster.run_as:
        owner = pwd.getpwnam("postgres")
        os.chown(root, owner.pw_uid, owner.pw_gid)
    (root / "users.txt").write_text('"ledger" ""\n')
    config = root / "pgbouncer.ini"
    config.write_text(
        "[databases]\n"
        f"{dbname} = host={cluster.root} port={cluster.port} dbname={dbname} user=ledger\n"
        "[pgbouncer]\n"
        "listen_addr =\n"
        f"unix_socket_dir = {root}\n"
        f"listen_port = {POOLER_PORT}\n"
        "auth_type = trust\n"
        f"auth_file = {root / 'users.txt'}\n"
        "pool_mode = transaction\n"
        f"default_pool_size = {SERVER_SESSIONS}\n"
        "max_client_conn = 100\n"
        f"logfile = {root / 'pgbouncer.log'}\n"
    )
    log = root / "pgbouncer.log"
    process = subprocess.Popen(
        [*cluster.run_as, str(binary), str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    try:
        socket_file = root / f".s.PGSQL.{POOLER_PORT}"
        deadline = time.monotonic() + STARTUP_SECONDS
        while not socket_file.exists():
            if process.poll() is not None or time.monotonic() > deadline:
                said = log.read_text(errors="replace") if log.exists() else ""
                pytest.fail(f"pgbouncer did not start (exit {process.poll()}):\n{said}")
            time.sleep(0.02)
        yield f"host={root} port={POOLER_PORT} user=ledger dbname={dbname}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def pooled_database(pg_cluster: PgCluster) -> Iterator[str]:
    """A database of its own (no schema option: PgBouncer does not pass ``options``)."""
    name = f"ledger_pooled_{os.urandom(4).hex()}"
    admin = pg_cluster.conninfo("postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"'.encode())
    yield name
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)'.encode())


def test_two_hosts_through_a_transaction_pooler_answer_every_operation(
    pg_cluster: PgCluster, pooled_database: str
) -> None:
    keys = LedgerKeys.generate()
    clock = FakeClock()
    with pgbouncer(pg_cluster, pooled_database) as conninfo:
        hosts = [Ledger(PostgresLedgerStore(conninfo), keys, clock=clock) for _ in range(HOSTS)]
        try:
            hosts[0].open_merchant_account(MERCHANT, EUR)
            for pan in (PAN_A, PAN_B):
                hosts[0].open_card_account(pan, EXPIRY, 10**9, EUR)
            approved: list[Authorized] = []
            captured: list[Posted] = []
            failures: Counter[str] = Counter()
            lock = threading.Lock()

            def worker(w: int) -> None:
                ledger = hosts[w % HOSTS]
                for r in range(ROUNDS):
                    outcome: list[Outcome] = []

                    def respond(result: Outcome, into: list[Outcome] = outcome) -> bytes:
                        into.append(result)
                        return repr(result).encode()

                    unique = f"{w}-{r}-{os.urandom(6).hex()}".encode()
                    try:
                        ledger.authorize(
                            pan=(PAN_A, PAN_B)[w % 2],
                            pan_expiry=EXPIRY,
                            amount=100,
                            currency=EUR,
                            merchant_id=MERCHANT,
                            xid=b"xid-" + unique,
                            pi_digest=b"pi-" + unique,
                            rrpid=b"auth-" + unique,
                            request_digest=b"digest-" + unique,
                            respond=respond,
                        )
                        authorized = outcome[-1]
                        assert isinstance(authorized, Authorized), authorized
                        with lock:
                            approved.append(authorized)
                        ledger.capture(
                            merchant_id=MERCHANT,
                            items=[CaptureItem(authorized.hold_id, 60, EUR)],
                            rrpid=b"capture-" + unique,
                            request_digest=b"digest-" + unique,
                            respond=respond,
                        )
                        posting = outcome[-1]
                        assert isinstance(posting, PostingOutcome), posting
                        assert isinstance(posting.items[0], Posted), posting
                        with lock:
                            captured.append(posting.items[0])
                    except Exception as exc:  # every failure is counted, by kind
                        with lock:
                            failures[f"{exc!r} <- {exc.__cause__!r}"] += 1

            threads = [
                threading.Thread(target=worker, args=(w,)) for w in range(HOSTS * THREADS_PER_HOST)
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        finally:
            for host in hosts:
                host.close()
    operations = HOSTS * THREADS_PER_HOST * ROUNDS
    assert not failures, f"{failures.total()} failed: {failures.most_common(4)}"
    assert (len(approved), len(captured)) == (operations, operations)
    # Read past the pooler: every hold the ledger placed was answered, none more.
    direct = postgres_backend(pg_cluster.conninfo(pooled_database))
    holds = direct.raw_query("SELECT COUNT(*), SUM(captured) FROM holds")
    assert holds == [(len(approved), 60 * len(captured))]
    audit = Ledger(direct.open_store(), keys, clock=clock)
    try:
        audit.check_balanced()
    finally:
        audit.close()


def _prepared(store: LedgerStore) -> list[str]:
    """The statements prepared in the session of the connection the store uses next, after
    it ran its reads there more times than any threshold (one thread: the same one)."""
    names: list[str] = []
    for _ in range(8):
        names = [
            str(row["name"])
            for row in store.read(lambda tx: tx.all("SELECT name FROM pg_prepared_statements"))
        ]
    return names


def test_the_store_prepares_statements_only_when_configured(pg_cluster: PgCluster) -> None:
    conninfo = pg_cluster.new_schema()
    default = PostgresLedgerStore(conninfo)
    opted_in = PostgresLedgerStore(conninfo, PostgresStoreConfig(prepare_threshold=2))
    try:
        assert _prepared(default) == []
        assert _prepared(opted_in) != []  # a direct connection's choice, never a pooler's
    finally:
        default.close()
        opted_in.close()


@pytest.mark.parametrize("prepare", [False, True])
def test_a_bank_prepares_statements_only_with_its_setting(
    pg_cluster: PgCluster, tmp_path: Path, prepare: bool
) -> None:
    url = pg_cluster.ledger_url(f"bank_prepares_{os.urandom(4).hex()}")
    config = BankConfig(
        base_dir=tmp_path, insecure=True, ledger=url, ledger_prepare_statements=prepare
    )
    with open_store(config) as store:
        assert (_prepared(store) != []) == prepare
