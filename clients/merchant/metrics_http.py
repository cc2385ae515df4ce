"""The merchant's metrics page over HTTP: prometheus_client's WSGI application, on a
server of our own that bounds what a peer's connections may hold.

prometheus_client's ``start_http_server`` starts a thread for every connection it
accepts and reads each with no timeout: a peer that opened connections and sent nothing
held a thread each, for as long as it kept them open, so the merchant's threads (and the
memory of their stacks) grew with every connection it opened. Here at most
``PAGE_CONNECTIONS`` connections are answered at once, each on a thread of its own; one
that comes while they are all taken is closed at once, unread (a scraper asks again at its
next interval); and each is shut ``PAGE_SECONDS`` after it was accepted, whatever it has
sent: a read timeout alone bounds each read, and a peer that trickles its request a byte at
a time would reset it forever. A peer that keeps every place taken keeps the page from
Prometheus, but never grows the merchant: the page is served on loopback by default
(``server.metrics_host``), for a scraper the operator runs.

The application is prometheus_client's own (``make_wsgi_app``), so the page, its content
negotiation and compression are what ``start_http_server`` served. prometheus_client is
imported only in ``serve_page`` (``clients.merchant.metrics`` says why).
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from collections.abc import Callable
from socketserver import ThreadingMixIn
from typing import TYPE_CHECKING, Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

if TYPE_CHECKING:
    from prometheus_client.registry import Collector

log = logging.getLogger("setpay.merchant.metrics")

# Connections answered at once. Prometheus scrapes a target one request at a time, an HA
# pair of them two; the rest is room for an operator reading it by hand.
PAGE_CONNECTIONS = 4
# How long a connection is kept from its accept: the request read, the page made and sent.
# Making it reads merchant.db, which may wait up to the store's busy timeout (5 s) behind
# a writer; Prometheus's own default scrape timeout is 10 s, past which it gave up anyway.
PAGE_SECONDS = 10.0
# How often the serving loop looks for connections past PAGE_SECONDS (and for a shutdown).
_POLL_SECONDS = 0.5


class _QuietHandler(WSGIRequestHandler):
    """A request handler that logs nothing (as prometheus_client's does not) and reads and
    writes with a timeout: no read or write waits past PAGE_SECONDS."""

    timeout = PAGE_SECONDS

    def log_message(self, format: str, *args: Any) -> None:
        """Log nothing: a line per scrape, with the peer's address and request line."""


class PageServer(ThreadingMixIn, WSGIServer):
    """A WSGI server that answers at most ``PAGE_CONNECTIONS`` connections at once, each
    for ``PAGE_SECONDS`` from its accept at most (module docstring)."""

    daemon_threads = True
    # Its close does not wait for the threads answering: each ends within PAGE_SECONDS.
    block_on_close = False

    def __init__(self, address: tuple[str, int], family: int) -> None:
        self.address_family = family
        super().__init__(address, _QuietHandler)
        # Each connection being answered, with the moment it is to be shut; under the lock,
        # which a shut (``service_actions``) holds too: a connection is forgotten under it
        # before it is closed, so no shut ever reaches a socket closed (or its number
        # reused by the next accept).
        self._lock = threading.Lock()
        self._answering: dict[socket.socket, float] = {}

    def process_request(self, request: Any, client_address: Any) -> None:
        """Answer ``request`` on a thread of its own if a place is free; else close it."""
        with self._lock:
            full = len(self._answering) >= PAGE_CONNECTIONS
            if not full:
                self._answering[request] = time.monotonic() + PAGE_SECONDS
        if full:
            log.debug("metrics page: %d connections answered already, one closed", PAGE_CONNECTIONS)
            super().shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:  # no thread started: the place is free again
            self.shutdown_request(request)
            raise

    def shutdown_request(self, request: Any) -> None:
        """Forget ``request``, freeing its place, then close it."""
        with self._lock:
            self._answering.pop(request, None)
        super().shutdown_request(request)

    def service_actions(self) -> None:
        """Shut every connection past its time: its thread's read or write ends at once."""
        now = time.monotonic()
        with self._lock:
            for connection, deadline in self._answering.items():
                if deadline <= now:
                    with contextlib.suppress(OSError):  # its peer has gone already
                        connection.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A connection that failed (timed out, shut, reset): one line, and no traceback on
        stderr, which is where socketserver prints one."""
        log.debug("metrics page: a connection ended without its page", exc_info=True)


def serve_page(registry: Collector, host: str, port: int) -> tuple[PageServer, threading.Thread]:
    """Serve ``registry``'s page on ``host``:``port`` (0: a port the OS picks) from a
    daemon thread, as ``prometheus_client.start_http_server`` did; the server and its
    thread. ``OSError`` when the address cannot be bound."""
    from prometheus_client.exposition import make_wsgi_app  # noqa: PLC0415 - module doc

    address = host.strip("[]")
    family, _, _, _, sockaddr = socket.getaddrinfo(
        address, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    server = PageServer((str(sockaddr[0]), port), family)
    app: Callable[..., Any] = make_wsgi_app(registry)
    server.set_app(app)
    thread = threading.Thread(
        target=server.serve_forever, args=(_POLL_SECONDS,), name="metrics-page", daemon=True
    )
    thread.start()
    return server, thread
