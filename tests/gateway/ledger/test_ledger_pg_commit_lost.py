"""A COMMIT that reaches PostgreSQL, whose answer never comes back.

The server commits; the store sees only a lost connection. It cannot know the outcome,
so it must not answer as if nothing was decided, nor try the operation again itself:
it says UNAVAILABLE, and the requester's retry with the same RRPID is answered from
what was committed. A proxy in front of the test cluster's socket loses the answer.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from gateway.ledger import (
    Authorized,
    Ledger,
    LedgerKeys,
    Outcome,
    PostgresLedgerStore,
    StoreUnavailable,
)
from tests.gateway.ledger.ledger_support import EUR, EXPIRY, MERCHANT, PAN_A, Bank, PgCluster

# The frontend's COMMIT as psycopg sends it: a simple Query message, its length counting
# itself and the terminating NUL.
COMMIT_QUERY = b"Q" + (4 + len(b"COMMIT") + 1).to_bytes(4, "big") + b"COMMIT\x00"
# What one read of a socket takes at most; PostgreSQL's messages here are far shorter.
CHUNK_BYTES = 65536
# How long the test waits for the proxy to have swallowed the server's answer.
ANSWER_WAIT_SECONDS = 30.0


class CommitAnswerLost:
    """A proxy to the cluster's socket; once armed, it passes the next COMMIT to the
    server, swallows the server's answer and closes both sides of that connection."""

    def __init__(self, cluster: PgCluster) -> None:
        self._cluster = cluster
        self.directory = Path(tempfile.mkdtemp(prefix="pg-proxy-"))  # short: a socket path
        self._listener = socket.socket(socket.AF_UNIX)
        self._listener.bind(str(self.directory / f".s.PGSQL.{cluster.port}"))
        self._listener.listen()
        self._armed = threading.Event()
        self.swallowed = threading.Event()
        """Set once the server answered the armed COMMIT: it committed."""
        self._sockets: list[socket.socket] = [self._listener]
        threading.Thread(target=self._accept, daemon=True).start()

    def route(self, conninfo: str) -> str:
        """``conninfo`` of the cluster, through this proxy."""
        return conninfo.replace(f"host={self._cluster.root} ", f"host={self.directory} ")

    def arm(self) -> None:
        self._armed.set()

    def close(self) -> None:
        for sock in self._sockets:
            with contextlib.suppress(OSError):
                sock.close()
        shutil.rmtree(self.directory, ignore_errors=True)

    def _accept(self) -> None:
        upstream_path = str(self._cluster.root / f".s.PGSQL.{self._cluster.port}")
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # closed
            server = socket.socket(socket.AF_UNIX)
            server.connect(upstream_path)
            self._sockets += [client, server]
            lose = threading.Event()
            threading.Thread(
                target=self._to_server, args=(client, server, lose), daemon=True
            ).start()
            threading.Thread(
                target=self._to_client, args=(server, client, lose), daemon=True
            ).start()

    def _to_server(
        self, client: socket.socket, server: socket.socket, lose: threading.Event
    ) -> None:
        with contextlib.suppress(OSError):
            while data := client.recv(CHUNK_BYTES):
                if COMMIT_QUERY in data and self._armed.is_set():
                    self._armed.clear()
                    lose.set()  # before the server can answer
                server.sendall(data)

    def _to_client(
        self, server: socket.socket, client: socket.socket, lose: threading.Event
    ) -> None:
        with contextlib.suppress(OSError):
            while data := server.recv(CHUNK_BYTES):
                if lose.is_set():
                    # The protocol is one query, then its answer: this is COMMIT's.
                    self.swallowed.set()
                    for sock in (client, server):
                        sock.shutdown(socket.SHUT_RDWR)
                    return
                client.sendall(data)


@pytest.fixture
def proxy(pg_cluster: PgCluster) -> Iterator[CommitAnswerLost]:
    proxy = CommitAnswerLost(pg_cluster)
    try:
        yield proxy
    finally:
        proxy.close()


def test_a_lost_commit_answer_is_unavailable_and_the_retry_gets_what_was_committed(
    pg_cluster: PgCluster, proxy: CommitAnswerLost, keys: LedgerKeys
) -> None:
    conninfo = pg_cluster.new_schema()
    ledger = Ledger(PostgresLedgerStore(proxy.route(conninfo)), keys)
    try:
        ledger.open_merchant_account(MERCHANT, EUR)
        card = ledger.open_card_account(PAN_A, EXPIRY, 10_000, EUR)
        bank = Bank(ledger)

        def send() -> Outcome:  # the same request every time, as a merchant resends it
            return bank.authorize(amount=6000, rrpid=b"rrpid-1", digest=b"digest-1", xid=b"xid-1")

        proxy.arm()
        with pytest.raises(StoreUnavailable, match="PostgreSQL is unavailable"):
            send()
        assert proxy.swallowed.wait(ANSWER_WAIT_SECONDS)
        assert bank.outcomes == []  # nothing was answered
        with psycopg.connect(conninfo) as conn:
            holds = conn.execute("SELECT id, amount FROM holds").fetchall()
        assert [amount for _, amount in holds] == [6000]  # and yet it was decided

        retry = send()
        assert isinstance(retry, Authorized)
        assert (retry.hold_id, retry.amount) == holds[0]
        with psycopg.connect(conninfo) as conn:
            assert conn.execute("SELECT id, amount FROM holds").fetchall() == holds
        after = ledger.card_account(card.account_id)
        assert (after.pending, after.available) == (6000, 4000)
        ledger.check_balanced()
    finally:
        ledger.close()
