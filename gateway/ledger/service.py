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
  It reads only what has arrived (``FrameReader``) and takes up the rest of a
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

What an operation may be: a frame larger than its kind's bound (``wire.OPERATION_BOUNDS``)
is skipped as its bytes come, never held; one that nests deeper, calls anything but a
ledger class, fills in what it did not make or puts too many keys into sets and dicts is
refused as its opcodes are read, before anything is built from it (``wire.nesting``).
Either is answered with the refusal, written at once (a worker that does not read its
answers has its connection closed), and the connection serves on. When ``accept`` fails
for want of descriptors (EMFILE), the loop stops watching the listener for a pause that
doubles up to a second, says so once, and takes the waiting connections once descriptors
are freed: the listener stays readable all the while, and a loop that tried again at
once would spin.

Who may connect: the socket lives in a directory only the bank's user can enter, and a
connection from another user id (``SO_PEERCRED``) is closed at once, as is one beyond
the service's limit of connections (``max_connections``: the ledger process sizes it to
the bank's workers and threads).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import select
import socket
import struct
import threading
import time
from collections.abc import Mapping
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
# How long the service stops taking connections when ``accept`` fails for want of
# descriptors or memory (EMFILE, ENFILE, ENOBUFS, ENOMEM): doubled at each failure in a
# row, up to the most, so it comes back within that once descriptors are freed.
ACCEPT_PAUSE_SECONDS = 0.05
ACCEPT_PAUSE_MOST_SECONDS = 1.0
# What ``accept`` may say of one connection (it went before it was taken): no pause.
_ONE_CONNECTIONS = frozenset({errno.ECONNABORTED, errno.EPROTO, errno.EAGAIN, errno.EINTR})
# How long an answer may wait for a worker that does not read it, on the writer or a
# reader. (The loop never waits: it takes what has arrived of a frame and comes back for
# the rest, and a refusal it answers is written at once or the connection closed.)
PEER_TIMEOUT_SECONDS = 30.0
# Read-only operations run beside the writer on the store's read connections.
READ_THREADS = 4
# Largest single read of a frame's bytes: an operation comes in one read.
READ_CHUNK_BYTES = 64 * 1024
_CREDENTIALS = struct.Struct("3i")  # struct ucred: pid, uid, gid
_ARMED = select.EPOLLIN | select.EPOLLONESHOT


class FrameReader:
    """Takes one frame off a non-blocking socket as its bytes arrive, never waiting for
    the rest: the ledger service's loop serves every worker, and a worker stopped in the
    middle of a frame must hold up no other. A frame of a kind ``bounds`` does not name,
    or larger than its kind's bound, is skipped as it comes (never held), then refused."""

    __slots__ = ("_bounds", "_header", "_part", "_skip")

    def __init__(self, bounds: Mapping[int, wire.Bounds]) -> None:
        """Expect a frame's header; take frames of the kinds ``bounds`` names."""
        self._bounds = bounds
        self._header: tuple[int, int, int] | None = None  # payload length, kind, number
        self._part = bytearray()
        self._skip: int | None = None  # a refused payload's bytes still to come

    def read(self, fd: int) -> tuple[int, int, bytes] | None:
        """Read what has arrived on ``fd`` (non-blocking): the frame (kind, operation
        number, payload) once it is whole, None while some of it is still to come;
        FrameRefused once the last byte of a refused frame is read; WireError if the
        connection closed or the frame is over the limit of any frame."""
        while True:
            if self._header is None:
                wanted = wire.HEADER.size - len(self._part)
            elif self._skip is not None:
                wanted = self._skip
            else:
                wanted = self._header[0] - len(self._part)
            if wanted > 0:
                try:
                    # Read at most what was announced and at most one chunk at a time:
                    # memory follows the bytes that came, not the length a header claims.
                    chunk = os.read(fd, min(wanted, READ_CHUNK_BYTES))
                except BlockingIOError:
                    return None
                if not chunk:
                    raise wire.WireError("the ledger connection closed")
                if self._skip is not None:
                    self._skip -= len(chunk)
                else:
                    self._part += chunk
                continue
            if self._header is None:
                size, kind, number = self._header = wire.HEADER.unpack(self._part)
                self._part = bytearray()
                if size > wire.MAX_FRAME_BYTES:
                    raise wire.WireError(f"a ledger frame of {size} bytes is over the limit")
                bound = self._bounds.get(kind)
                if bound is None or size > bound.most_bytes:
                    self._skip = size
                continue
            size, kind, number = self._header
            payload, refused = bytes(self._part), self._skip is not None
            self._header, self._part, self._skip = None, bytearray(), None
            if not refused:
                return kind, number, payload
            bound = self._bounds.get(kind)
            if bound is None:
                message = f"a frame of kind {kind} where an operation belongs"
            else:
                message = (
                    f"a ledger {wire.KIND_NAMES.get(kind, kind)} frame of {size} bytes, over"
                    f" the {bound.most_bytes} an operation of its kind may be: nothing of it"
                    " was read or applied"
                )
            raise wire.FrameRefused(message, kind, number)


class _Peer:
    """One worker connection: its socket, the number of its latest operation, and what
    has arrived of its next frame."""

    __slots__ = ("frame", "number", "sock")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.number = 0  # none yet: the first operation is number 1
        self.frame = FrameReader(wire.OPERATION_BOUNDS)


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
        # While ``accept`` fails for want of descriptors: since when, the pause, its end.
        self._short_since: float | None = None
        self._accept_pause = 0.0
        self._accept_again_at: float | None = None
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
            again_at = self._accept_again_at
            wait = -1.0 if again_at is None else max(0.0, again_at - time.monotonic())
            events = self._epoll.poll(wait)
            if again_at is not None and time.monotonic() >= again_at:
                self._accept_again_at = None
                self._epoll.modify(listener, select.EPOLLIN)  # the pause is over: try again
            for fd, _ in events:
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
        except OSError as exc:
            if exc.errno not in _ONE_CONNECTIONS:
                self._pause_accepting(exc)
            return
        if self._short_since is not None:
            log.warning(
                "ledger service: takes connections again, after %.1f s without",
                time.monotonic() - self._short_since,
            )
            self._short_since = None
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

    def _pause_accepting(self, exc: OSError) -> None:
        """Stop watching the listener for a while: the connection stays in its queue, and
        a listener still readable would wake the loop at once, again and again, for as
        long as descriptors are short. Said once, not at each try."""
        now = time.monotonic()
        if self._short_since is None:
            self._short_since, self._accept_pause = now, ACCEPT_PAUSE_SECONDS
            log.error(
                "ledger service: cannot take connections (%s); tries again until"
                " descriptors are freed",
                os.strerror(exc.errno) if exc.errno else type(exc).__name__,
            )
        else:
            self._accept_pause = min(2 * self._accept_pause, ACCEPT_PAUSE_MOST_SECONDS)
        self._accept_again_at = now + self._accept_pause
        self._epoll.modify(self._listener.fileno(), 0)

    def _take_operation(self, peer: _Peer) -> None:
        """Read what has arrived of an operation; once it is whole, hand it on (the
        answer re-arms the connection), else wait for the rest. A frame refused as it
        was read, or as its opcodes are read (``wire.load_operation``), is answered with
        the refusal: nothing was built from it."""
        refused: wire.FrameRefused | None = None
        try:
            frame = peer.frame.read(peer.sock.fileno())
            if frame is None:
                self._epoll.modify(peer.sock.fileno(), _ARMED)
                return
        except wire.FrameRefused as exc:  # read whole and skipped: in step for the next
            frame, refused = (exc.kind, exc.number, b""), exc
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
            if refused is not None:
                raise refused
            if kind not in (wire.EXECUTE, wire.READ):
                raise wire.WireError(f"a frame of kind {kind} where an operation belongs")
            operation = wire.load_operation(kind, payload)
            if not callable(operation):
                raise wire.WireError("an operation that is not a function")
            if kind == wire.EXECUTE:
                self._store.submit(
                    operation, lambda result, error: self._answer(peer, result, error)
                )
            else:
                self._readers.submit(self._read, peer, operation)
        except Exception as exc:  # noqa: BLE001  every failure is the caller's answer
            self._answer(peer, None, exc, at_once=True)

    def _read(self, peer: _Peer, query: Any) -> None:
        try:
            result = self._store.read(query)
        except Exception as exc:  # noqa: BLE001  the caller's answer
            self._answer(peer, None, exc)
            return
        self._answer(peer, result, None)

    def _answer(
        self, peer: _Peer, result: object, error: BaseException | None, *, at_once: bool = False
    ) -> None:
        """Send the outcome of one operation and wait for the next (any thread).

        ``at_once`` on the loop (a refusal): the loop serves every worker, so it never
        waits for a worker to read. An answer that cannot be written whole at once (a
        worker that sends frames and reads none fills its socket) closes the connection."""
        try:
            if error is None:
                try:
                    reply, body = wire.RESULT, wire.dump_value(result)
                except Exception as exc:  # noqa: BLE001  a result that cannot travel
                    error = exc
            if error is not None:
                reply, body = wire.ERROR, wire.dump_value(wire.shippable_error(error))
            if at_once:
                frame = wire.HEADER.pack(len(body), reply, peer.number) + body
                # The descriptor is non-blocking (timeout mode): a write never waits.
                if os.write(peer.sock.fileno(), frame) != len(frame):
                    raise OSError(errno.EAGAIN, "an answer the worker does not read")
            else:
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
