"""The ledger service's connections: ``accept`` short of descriptors, and the connections
of a worker's request threads that end.

Out of descriptors (EMFILE), ``accept`` fails and leaves the connection in the
listener's queue: the listener stays readable, and a loop that only tried again spun,
one core busy for as long as descriptors were short. It pauses now, says so once, and
takes the connection once descriptors are free. A worker kept the connection of each
request thread that ever dialled, for its life: one whose threads come and go filled
the service's room. A thread's connection is closed when the thread ends.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import logging
import os
import socket
import threading
import time

import pytest

from gateway.ledger import idempotency, wire
from gateway.ledger import service as ledger_service
from tests.gateway.ledger.ledger_support import ServedSqliteStore

# How long descriptors stay short in the test: some ten pauses' worth at the first pause.
SHORT_SECONDS = 1.0
# Tries of ``accept`` a back-off makes in that time (0.05, 0.1, 0.2, 0.4, 0.8 s...): a
# spinning loop makes them by the hundred thousand.
MOST_TRIES = 8
# Threads that come, make one operation, and go.
THREADS = 20
# How often (every 10 ms) to look whether the service has seen connections close: 30 s.
DROP_POLLS = 3000


def _query() -> functools.partial[bytes | None]:
    return functools.partial(idempotency.stored_response, rrpid=b"r", request_digest=b"d")


def test_accept_short_of_descriptors_pauses_says_so_once_and_takes_the_connection_after(
    served: ServedSqliteStore, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    assert served.read(_query()) is None  # the store's own connection is taken
    real_accept = socket.socket.accept
    short = threading.Event()
    short.set()
    tries = []

    def accept(sock: socket.socket) -> tuple[socket.socket, object]:
        if threading.current_thread().name == "ledger-loop" and short.is_set():
            tries.append(1)
            raise OSError(errno.EMFILE, os.strerror(errno.EMFILE))
        return real_accept(sock)

    monkeypatch.setattr(socket.socket, "accept", accept)
    caplog.set_level(logging.WARNING, logger="setpay.ledger")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as waiting:
        waiting.settimeout(30)
        waiting.connect(served.socket_path)  # queued: the service cannot take it yet
        threading.Event().wait(SHORT_SECONDS)
        assert 1 <= len(tries) <= MOST_TRIES
        said = [r.getMessage() for r in caplog.records if r.name == "setpay.ledger"]
        assert said == ["ledger service: cannot take connections (Too many open files);"
                        " tries again until descriptors are freed"]  # fmt: skip
        assert served.read(_query()) is None  # the connections it holds are served
        short.clear()  # descriptors are freed
        wire.send_frame(waiting, wire.READ, 1, wire.dump_operation(_query()))
        assert wire.receive_answer(waiting, 1) == (wire.RESULT, wire.dump_value(None))
    said = [r.getMessage() for r in caplog.records if r.name == "setpay.ledger"]
    assert len(said) == 2 and said[1].startswith("ledger service: takes connections again")


def test_a_pause_is_not_made_for_a_connection_that_went_before_it_was_taken(
    served: ServedSqliteStore, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    real_accept = socket.socket.accept
    gone = [errno.ECONNABORTED]

    def accept(sock: socket.socket) -> tuple[socket.socket, object]:
        if threading.current_thread().name == "ledger-loop" and gone:
            raise OSError(gone.pop(), "gone")
        return real_accept(sock)

    monkeypatch.setattr(socket.socket, "accept", accept)
    caplog.set_level(logging.WARNING, logger="setpay.ledger")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as first:
        first.settimeout(30)
        first.connect(served.socket_path)
        wire.send_frame(first, wire.READ, 1, wire.dump_operation(_query()))
        assert wire.receive_answer(first, 1) == (wire.RESULT, wire.dump_value(None))
    assert not gone
    assert not [r for r in caplog.records if r.name == "setpay.ledger"]  # no pause said


def test_a_request_threads_connection_is_closed_when_the_thread_ends(
    served: ServedSqliteStore,
) -> None:
    def one_request() -> None:
        assert served.read(_query()) is None

    for _ in range(THREADS):
        thread = threading.Thread(target=one_request)
        thread.start()
        thread.join()
    waited = threading.Event()
    for _ in range(DROP_POLLS):  # the service sees the hang-ups on its loop, in its time
        if served.service.connections == 1:
            break
        waited.wait(0.01)
    assert served.service.connections == 1  # the main thread's only
    # A thread that lives on keeps its own, and the store serves on.
    assert served.read(_query()) is None
    assert served.service.connections == 1


def test_the_pause_doubles_up_to_a_second_and_no_further(served: ServedSqliteStore) -> None:
    assert served.read(_query()) is None  # its connection taken: no accept pending
    short = OSError(errno.EMFILE, os.strerror(errno.EMFILE))
    service = served.service
    pauses = []
    for _ in range(8):
        service._pause_accepting(short)
        pauses.append(service._accept_pause)
    assert pauses == [0.05, 0.1, 0.2, 0.4, 0.8, 1.0, 1.0, 1.0]
    assert service._accept_again_at is not None
    assert service._accept_again_at - time.monotonic() <= ledger_service.ACCEPT_PAUSE_MOST_SECONDS
    # The pause ends: connections are taken again.
    assert served.read(_query()) is None
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as late:
        late.settimeout(30)
        late.connect(served.socket_path)
        wire.send_frame(late, wire.READ, 1, wire.dump_operation(_query()))
        assert wire.receive_answer(late, 1) == (wire.RESULT, wire.dump_value(None))


# Refused frames a worker that reads no answers sends: their answers fill its socket.
UNREAD_FRAMES = 20_000
# How long the others' operations may wait meanwhile (the old loop waited out the whole
# PEER_TIMEOUT_SECONDS for the answer, shortened here to TEST_PEER_TIMEOUT).
MOST_OTHER_WAIT_SECONDS = 1.0
TEST_PEER_TIMEOUT = 5.0


def test_a_worker_that_reads_no_answers_holds_up_no_other(
    served: ServedSqliteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ledger_service, "PEER_TIMEOUT_SECONDS", TEST_PEER_TIMEOUT)
    assert served.read(_query()) is None
    frames = b"".join(
        wire.HEADER.pack(1, wire.EXECUTE, n) + b"x" for n in range(1, UNREAD_FRAMES + 1)
    )
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as silent:
        silent.connect(served.socket_path)

        def send() -> None:
            with contextlib.suppress(OSError):  # its connection is closed under it
                silent.sendall(frames)

        sender = threading.Thread(target=send, daemon=True)
        sender.start()
        waits = []
        deadline = time.monotonic() + 2 * TEST_PEER_TIMEOUT
        while time.monotonic() < deadline:
            started = time.monotonic()
            assert served.read(_query()) is None
            waits.append(time.monotonic() - started)
            if served.service.connections == 1 and len(waits) > 10:
                break  # the silent one was closed
        assert max(waits) < MOST_OTHER_WAIT_SECONDS, max(waits)
        assert served.service.connections == 1  # closed, as its answers could not go
        sender.join(30)
