"""The ledger service: one process owns the SQLite ledger and commits for every worker.

With a writer per worker, each worker runs its own group-commit thread, and the workers
take turns at SQLite's write lock (``write_lock``). Each commit then carries only one
worker's requests, and the writer thread competes with its worker's request threads for
that process's interpreter. The service moves the writer into a process of its own: the
workers send their operations over a Unix socket (``wire``), one group carries the work
of every worker, and no write turn is passed between processes.

Two threads do the work, so that an operation costs few thread hand-overs:

- the *loop* waits on every connection at once (epoll). For each operation that arrives
  it reads the frame, unpickles it and queues it for the store's writer without waiting
  (``SqliteLedgerStore.submit``); a read-only operation goes to a small pool of readers.
  It reads only what has arrived (``wire.FrameReader``) and takes up the rest of a
  frame when it comes: a worker stopped mid-frame holds up no other;
- the store's *writer* applies the queued operations as one group, commits, and then
  sends each connection its answer itself (``wire.RESULT`` or ``wire.ERROR``).

A connection carries one operation at a time (the worker opens one per request thread,
``remote``). Its descriptor is armed for one frame (EPOLLONESHOT) and re-armed only once
the answer is sent, so a connection never has two operations under way and its answers
leave in the order its operations came. Operations on a connection are numbered 1, 2,
3, ... (``wire``): one that arrives out of turn closes the connection. An operation runs
ledger code only, start to end: nothing in it calls back into the worker (a response is
built there after the decision is committed, ``gateway.ledger.idempotency``).

Who may connect: the socket lives in a directory only the bank's user can enter, and a
connection from another user id (``SO_PEERCRED``) is closed at once, as is one beyond
the service's limit of connections (``max_connections``: the ledger process sizes it to
the bank's workers and threads).
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import socket
import struct
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from gateway.ledger import wire
from gateway.ledger.sqlite import SqliteLedgerStore

log = logging.getLogger("setpay.ledger")

# Connections the service keeps at once unless told more (``LedgerService``): the ledger
# process sizes it to its bank's workers and their threads (``gateway.ledger_process``),
# since a worker holds one for each of its request threads for as long as it lives.
MAX_CONNECTIONS = 256
# How often the service says it refuses connections for want of room (at most).
ROOM_LINE_SECONDS = 60.0
# How long an answer may wait for a worker that does not read it. (Reads never wait: the
# loop takes what has arrived of a frame and comes back for the rest.)
PEER_TIMEOUT_SECONDS = 30.0
# Read-only operations run beside the writer on the store's read connections.
READ_THREADS = 4
_CREDENTIALS = struct.Struct("3i")  # struct ucred: pid, uid, gid
_ARMED = select.EPOLLIN | select.EPOLLONESHOT


class _Peer:
    """One worker connection: its socket, the number of its latest operation, and what
    has arrived of its next frame."""

    __slots__ = ("frame", "number", "sock")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.number = 0  # none yet: the first operation is number 1
        self.frame = wire.FrameReader()


class LedgerService:
    """Serves ``store`` on the Unix socket ``path`` until closed."""

    def __init__(
        self, store: SqliteLedgerStore, path: str, *, max_connections: int = MAX_CONNECTIONS
    ) -> None:
        """Listen on ``path`` (its directory must exist and be private to this user);
        hold up to ``max_connections`` at once, and close any connection beyond them as
        it comes (ValueError if fewer than 1)."""
        if isinstance(max_connections, bool) or not isinstance(max_connections, int):
            raise ValueError("the ledger service's connection limit must be a whole number")
        if max_connections < 1:
            raise ValueError("the ledger service must take at least 1 connection")
        self._store = store
        self._max_connections = max_connections
        # Connections refused for want of room since the last line said so, and when the
        # next line may say so: each request on a thread past the limit dials again.
        self._refused_for_room = 0
        self._next_room_line = 0.0
        self._path = path
        self._lock = threading.Lock()
        self._connections: dict[int, _Peer] = {}
        self._closed = False
        self._readers = ThreadPoolExecutor(READ_THREADS, thread_name_prefix="ledger-read")
        self._epoll = select.epoll()
        self._wake_r, self._wake_w = os.pipe()
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self._listener.bind(path)
            os.chmod(path, 0o600)
            self._listener.listen(min(max_connections, socket.SOMAXCONN))
            self._epoll.register(self._listener.fileno(), select.EPOLLIN)
            self._epoll.register(self._wake_r, select.EPOLLIN)
        except OSError:
            self._release(unlink=False)  # the path may be another service's
            raise
        self._loop_thread = threading.Thread(target=self._loop, name="ledger-loop", daemon=True)
        self._loop_thread.start()

    @property
    def connections(self) -> int:
        """Connections open now."""
        return len(self._connections)

    # -- the loop

    def _loop(self) -> None:
        listener = self._listener.fileno()
        while True:
            for fd, _ in self._epoll.poll():
                if fd == self._wake_r:
                    return  # closing
                peer = None if fd == listener else self._connections.get(fd)
                try:
                    if fd == listener:
                        self._accept()
                    elif peer is not None:
                        self._take_operation(peer)
                except Exception as exc:  # noqa: BLE001  one connection's fault, not the loop's
                    # The loop serves every worker: were it to stop, the process would live
                    # on and every operation wait out its timeout. The fault closes only
                    # the connection it came from (its type is logged, never a value).
                    log.error("ledger service: %s on a connection; closed", type(exc).__name__)
                    if peer is not None:
                        self._drop(peer)

    def _accept(self) -> None:
        try:
            sock, _ = self._listener.accept()
        except OSError:
            return
        try:
            uid = _CREDENTIALS.unpack(
                sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _CREDENTIALS.size)
            )[1]
            if uid != os.getuid():
                log.warning("ledger service: refused a connection (uid %d)", uid)
                sock.close()
                return
            if len(self._connections) >= self._max_connections:
                # Its worker answers UNAVAILABLE, and dials again on its next operation:
                # said once a minute at most, with the count since.
                self._refused_for_room += 1
                now = time.monotonic()
                if now >= self._next_room_line:
                    log.warning(
                        "ledger service: refused %d connection(s): %d open, the most it holds",
                        self._refused_for_room,
                        self._max_connections,
                    )
                    self._refused_for_room, self._next_room_line = 0, now + ROOM_LINE_SECONDS
                sock.close()
                return
            # Timeout mode makes the descriptor non-blocking (as Python documents it): the
            # loop's reads return at once, the writer's sends wait up to the timeout.
            sock.settimeout(PEER_TIMEOUT_SECONDS)
            peer = _Peer(sock)
            with self._lock:
                self._connections[sock.fileno()] = peer
            self._epoll.register(sock.fileno(), _ARMED)
        except BaseException:
            with self._lock:
                self._connections.pop(sock.fileno(), None)
            sock.close()
            raise

    def _take_operation(self, peer: _Peer) -> None:
        """Read what has arrived of an operation; once it is whole, hand it on (the
        answer re-arms the connection), else wait for the rest."""
        try:
            frame = peer.frame.read(peer.sock.fileno())
            if frame is None:
                self._epoll.modify(peer.sock.fileno(), _ARMED)
                return
        except (wire.WireError, OSError):
            self._drop(peer)  # closed by the worker, or not speaking the wire
            return
        kind, number, payload = frame
        if number != wire.next_number(peer.number):
            log.warning("ledger service: an operation out of turn; connection closed")
            self._drop(peer)
            return
        peer.number = number
        try:
            if kind not in (wire.EXECUTE, wire.READ):
                raise wire.WireError(f"a frame of kind {kind} where an operation belongs")
            operation = wire.load(payload)
            if not callable(operation):
                raise wire.WireError("an operation that is not a function")
            if kind == wire.EXECUTE:
                self._store.submit(
                    operation, lambda result, error: self._answer(peer, result, error)
                )
            else:
                self._readers.submit(self._read, peer, operation)
        except Exception as exc:  # noqa: BLE001  every failure is the caller's answer
            self._answer(peer, None, exc)

    def _read(self, peer: _Peer, query: Any) -> None:
        try:
            result = self._store.read(query)
        except Exception as exc:  # noqa: BLE001  the caller's answer
            self._answer(peer, None, exc)
            return
        self._answer(peer, result, None)

    def _answer(self, peer: _Peer, result: object, error: BaseException | None) -> None:
        """Send the outcome of one operation and wait for the next (any thread)."""
        try:
            if error is None:
                try:
                    reply, body = wire.RESULT, wire.dump_value(result)
                except Exception as exc:  # noqa: BLE001  a result that cannot travel
                    error = exc
            if error is not None:
                reply, body = wire.ERROR, wire.dump_value(wire.shippable_error(error))
            wire.send_frame(peer.sock, reply, peer.number, body)
            self._epoll.modify(peer.sock.fileno(), _ARMED)
        except (OSError, ValueError, wire.WireError):
            self._drop(peer)  # the worker went away

    def _drop(self, peer: _Peer) -> None:
        sock = peer.sock
        with self._lock:
            if self._connections.get(sock.fileno()) is not peer:
                return
            del self._connections[sock.fileno()]
        with contextlib.suppress(OSError, ValueError):
            self._epoll.unregister(sock.fileno())
        sock.close()

    # -- stopping

    def close(self) -> None:
        """Stop taking operations, commit what is queued, close every connection."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        os.write(self._wake_w, b"x")
        self._loop_thread.join()
        self._readers.shutdown(wait=True)
        try:
            self._store.close()  # the writer commits and answers what is queued
        finally:
            self._release(unlink=True)

    def _release(self, *, unlink: bool) -> None:
        with self._lock:
            connections = list(self._connections.values())
            self._connections.clear()
        for peer in connections:
            peer.sock.close()
        self._listener.close()
        if unlink:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._path)
        self._epoll.close()
        os.close(self._wake_r)
        os.close(self._wake_w)
