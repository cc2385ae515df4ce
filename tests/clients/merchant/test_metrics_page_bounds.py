"""The merchant's metrics page bounds what a peer's connections hold: at most
``PAGE_CONNECTIONS`` answered at once, a connection past them closed unread, and each shut
``PAGE_SECONDS`` after its accept even while it trickles its request. Before, the page was
prometheus_client's ``start_http_server``: a thread for every connection, each reading
with no timeout, so idle connections grew the merchant's threads without bound.

A real page on loopback port 0 (``metrics.start``), over a real store."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from clients.merchant import metrics, metrics_http
from clients.merchant.metrics_http import PAGE_CONNECTIONS
from clients.merchant.store import MerchantStore
from tests.clients.merchant.metrics_support import samples_of, scrape_text

# Idle connections a peer opens: far more than the page answers at once.
IDLE = 40
# Connections are shut this long after their accept here (the module's is 10 s).
SHORT_SECONDS = 1.0
# Every wait is bounded; a prompt answer takes milliseconds, a loaded CI machine far more.
WAIT_SECONDS = 10.0


@pytest.fixture
def page(store: MerchantStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[int]:
    monkeypatch.setattr(metrics_http, "PAGE_SECONDS", SHORT_SECONDS)
    endpoint = metrics.start(tmp_path / "merchant.db", "127.0.0.1", 0)
    try:
        yield endpoint.port
    finally:
        endpoint.close()


def _until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.02)


def _closed_by_peer(connection: socket.socket) -> bool:
    """Whether the page has closed (or shut) ``connection``: a read sees its end."""
    connection.settimeout(WAIT_SECONDS)
    try:
        return connection.recv(1) == b""
    except ConnectionResetError:
        return True


class _PageThreads:
    """The threads the page answers connections on, each counted from its start until it
    lets its connection go (``shutdown_request``, which frees its place): the most at once,
    as often as a look every few ms sees them, from before the first connection on.

    Not the process's thread count at one moment: under load a peer's connections are
    accepted over seconds (the listen backlog overflows and the kernel drops SYNs, each
    retried a second later), so places are freed and taken again while it connects; a
    thread that has let its connection go still runs its last lines as the next starts;
    and threads that other tests left end, or start, meanwhile."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self._lock = threading.Lock()
        self.started: list[threading.Thread] = []
        self._let_go: set[threading.Thread] = set()
        self.most = 0
        self._stop = threading.Event()
        answer = metrics_http.PageServer.process_request_thread
        shut = metrics_http.PageServer.shutdown_request

        def answering(server: metrics_http.PageServer, request: Any, address: Any) -> None:
            with self._lock:
                self.started.append(threading.current_thread())
            answer(server, request, address)

        def let_go(server: metrics_http.PageServer, request: Any) -> None:
            with self._lock:
                self._let_go.add(threading.current_thread())
            shut(server, request)

        monkeypatch.setattr(metrics_http.PageServer, "process_request_thread", answering)
        monkeypatch.setattr(metrics_http.PageServer, "shutdown_request", let_go)
        self._looks = threading.Thread(target=self._look, daemon=True)
        self._looks.start()

    def holding(self) -> int:
        """Threads answering a connection now."""
        with self._lock:
            return sum(1 for t in self.started if t.is_alive() and t not in self._let_go)

    def _look(self) -> None:
        while not self._stop.wait(0.005):
            self.most = max(self.most, self.holding())

    def stop(self) -> None:
        self._stop.set()
        self._looks.join(WAIT_SECONDS)


def test_idle_connections_hold_a_few_threads_at_most_and_are_shut_in_time(
    page: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    threads = _PageThreads(monkeypatch)
    idle: list[socket.socket] = []
    try:
        idle.extend(socket.create_connection(("127.0.0.1", page)) for _ in range(IDLE))
        # Each is closed: those past the places at once, those answered once their time
        # is up. Then the page answers again.
        assert all(_closed_by_peer(connection) for connection in idle)
        threads.stop()
        assert threads.most <= PAGE_CONNECTIONS, f"{threads.most} threads answered at once"
        assert threads.started, "no connection was answered"
        _until(lambda: not any(t.is_alive() for t in threads.started), "the page's threads ended")
        assert samples_of(scrape_text(page))
    finally:
        threads.stop()
        for connection in idle:
            connection.close()


def test_a_trickled_request_is_shut_at_its_time_however_it_keeps_sending(page: int) -> None:
    connection = socket.create_connection(("127.0.0.1", page))
    started = time.monotonic()
    try:
        shut = False
        request = b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 60
        for byte in request:
            try:
                connection.sendall(bytes([byte]))
            except OSError:
                shut = True
                break
            time.sleep(SHORT_SECONDS / 20)
        assert shut or _closed_by_peer(connection)
        took = time.monotonic() - started
        assert took < SHORT_SECONDS + 1.5, f"the trickle was kept {took:.1f} s"
    finally:
        connection.close()
