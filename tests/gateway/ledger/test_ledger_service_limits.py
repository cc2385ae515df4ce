"""The ledger service's limits: a connection for every thread of every worker, and frames
that could only crash it refused as they are read.

A worker keeps one connection per request thread for as long as the thread lives; a
service that held fewer than the bank's threads refused the rest each time they dialled,
and their every request was answered UNAVAILABLE. A chain of partials, which no worker
sends but a frame can rebuild, recursed in C when called until the ledger process died.
"""

from __future__ import annotations

import contextlib
import functools
import multiprocessing
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from gateway import ledger_process
from gateway.config import BankConfig
from gateway.ledger import (
    Decline,
    Declined,
    RemoteLedgerStore,
    SqliteLedgerStore,
    StoreUnavailable,
    books,
    idempotency,
    money,
    wire,
)
from gateway.ledger.service import MAX_CONNECTIONS, LedgerService
from gateway.ledger_process import LedgerSocket, run_ledger_process
from tests.gateway.ledger.ledger_support import (
    ServedSqliteStore,
    exchange,
    service_in_a_child,
)

# A bank whose workers' threads are more than the service's default limit holds.
WORKERS = 2
THREADS = 150
REQUEST_THREADS = 300  # > MAX_CONNECTIONS, < WORKERS * THREADS
# Levels of the chain of partials that crashed the service (a frame of about 3.5 MB).
CHAIN_LEVELS = 100_000
# How often (every 10 ms) to look whether the service has dropped the connections that
# hung up: 30 s in all.
DROP_POLLS = 3000


def _totals() -> functools.partial[tuple[books.CurrencyTotals, ...]]:
    return functools.partial(books.totals)


# -- connections


def _ledger_process(config_dir: str, path: str, ready_fd: int) -> None:
    config = BankConfig(
        base_dir=Path(config_dir), workers=WORKERS, threads=THREADS, ledger_service=True
    )
    code = run_ledger_process(
        config, path, ready_fd, set(), with_metrics=False, supervisor_pid=os.getppid()
    )
    os._exit(code)


def _read_in_threads(path: str, count: int) -> list[str]:
    """``count`` request threads, each reading over a connection of its own and keeping it
    (as a worker's pool threads do) until all have read; what each got."""
    store = RemoteLedgerStore(path)
    got: list[str] = []
    all_read = threading.Barrier(count + 1)

    def request_thread() -> None:
        try:
            store.read(_totals())
            got.append("ok")
        except StoreUnavailable as exc:
            got.append(str(exc))
        all_read.wait()

    threads = [threading.Thread(target=request_thread) for _ in range(count)]
    for thread in threads:
        thread.start()
    all_read.wait()
    for thread in threads:
        thread.join()
    store.close()
    return got


def test_the_ledger_process_holds_a_connection_for_every_thread_of_its_workers() -> None:
    directory = tempfile.mkdtemp(prefix="bank-")
    socket_dir = LedgerSocket()
    ready_r, ready_w = os.pipe()
    child = multiprocessing.get_context("fork").Process(
        target=_ledger_process, args=(directory, socket_dir.path, ready_w)
    )
    try:
        child.start()
        os.close(ready_w)
        with os.fdopen(ready_r, "rb") as ready:
            assert ready.readline() == b"ledger\n"
        got = _read_in_threads(socket_dir.path, REQUEST_THREADS)
        assert got == ["ok"] * REQUEST_THREADS, sorted(set(got))
    finally:
        if child.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child.pid, signal.SIGTERM)
        child.join(30)
        socket_dir.close()
        shutil.rmtree(directory, ignore_errors=True)
    assert child.exitcode == 0


def test_connections_needed_covers_every_thread_of_every_worker_twice() -> None:
    small = BankConfig(base_dir=Path(), workers=1, threads=1)
    assert (
        ledger_process.connections_needed(small) == MAX_CONNECTIONS
    )  # never fewer than the default
    big = BankConfig(base_dir=Path(), workers=64, threads=256)
    assert ledger_process.connections_needed(big) >= 2 * 64 * (256 + 3)  # + main, sweeper, health


def test_the_open_file_limit_is_raised_for_the_connections() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 1000
    if hard != resource.RLIM_INFINITY and hard < wanted + ledger_process.OTHER_DESCRIPTORS:
        pytest.skip("the hard open-file limit is below what this test raises to")
    resource.setrlimit(resource.RLIMIT_NOFILE, (200, hard))
    try:
        assert ledger_process.descriptors_for(wanted) == wanted
        least = wanted + ledger_process.OTHER_DESCRIPTORS
        assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] >= least
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_a_hard_open_file_limit_caps_the_connections() -> None:
    # In a child: a hard limit, once lowered, may not be raised again.
    probe = (
        "import resource\n"
        "from gateway.ledger_process import descriptors_for, OTHER_DESCRIPTORS\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (300, 300))\n"
        "print(descriptors_for(1000), 300 - OTHER_DESCRIPTORS)\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (10, 10))\n"
        "print(descriptors_for(1000))\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    capped, expected, floor = run.stdout.split()
    assert capped == expected
    assert floor == "1"  # never none at all


def test_a_connection_beyond_the_limit_is_refused_and_the_others_served(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    directory = Path(tempfile.mkdtemp(prefix="ledger-"))
    path = str(directory / "ledger.sock")
    service = LedgerService(SqliteLedgerStore(tmp_path / "ledger.db"), path, max_connections=3)
    try:
        first = RemoteLedgerStore(path)  # this thread's connection: 1
        # Another store's, dialled by this thread too (2), then two request threads'.
        got = _read_in_threads(path, 2)
        assert got.count("ok") == 1 and len(got) == 2
        assert "the most it holds" in caplog.text and "uid" not in caplog.text
        # Refused again and again (each request on such a thread dials anew): one line
        # a minute at most, not one a dial.
        assert _read_in_threads(path, 4).count("ok") == 1
        assert caplog.text.count("the most it holds") == 1
        assert service.connections <= 3
        first.close()  # room again, once the service has seen the hang-ups
        for _ in range(DROP_POLLS):
            if service.connections == 0:
                break
            time.sleep(0.01)
        assert _read_in_threads(path, 1) == ["ok"]
    finally:
        service.close()
        shutil.rmtree(directory, ignore_errors=True)


@pytest.mark.parametrize("limit", [0, -1, True, 2.5, "8"])
def test_a_connection_limit_that_is_no_count_is_refused(tmp_path: Path, limit: object) -> None:
    directory = Path(tempfile.mkdtemp(prefix="ledger-"))
    path = str(directory / "ledger.sock")
    store = SqliteLedgerStore(tmp_path / "ledger.db")
    try:
        with pytest.raises(ValueError, match="connection"):
            LedgerService(store, path, max_connections=limit)  # type: ignore[arg-type]
        assert not Path(path).exists()  # nothing bound
        assert store.read(_totals()) == ()  # the store is unharmed
    finally:
        store.close()
        shutil.rmtree(directory, ignore_errors=True)


# -- chains of partials


class _PartialOf:
    """Pickles as a partial of ``books.totals`` whose state then names ``inner`` as its
    function: the BUILD path of a chain."""

    def __init__(self, inner: object) -> None:
        self.inner = inner

    def __reduce__(self) -> tuple[object, ...]:
        return (functools.partial, (books.totals,), (self.inner, (), None, None))


def _chain(levels: int) -> bytes:
    """A frame: ``levels`` partials, each the function of the next, each with an
    attribute so that ``partial`` does not flatten it (written out, not pickled: pickling
    it would recurse as deep)."""
    level = (
        b"q\x00"  # BINPUT 0: the callable so far
        b"0"  # POP
        b"cfunctools\npartial\nh\x00\x85R"  # partial(memo[0])
        b"(h\x00)N}\x8c\x01xK\x01st"  # (memo[0], (), None, {'x': 1})
        b"b"  # BUILD
    )
    return b"\x80\x04cgateway.ledger.books\ntotals\n" + level * levels + b"."


def _execute(path: str, payload: bytes) -> tuple[int, object]:
    return exchange(path, wire.EXECUTE, payload, timeout=30)


def test_a_chain_of_partials_is_refused_as_the_frame_is_read(served: ServedSqliteStore) -> None:
    inner = functools.partial(books.totals)
    inner.x = 1  # type: ignore[attr-defined]  # so that partial() keeps it whole
    built = wire.dump_operation(functools.partial(inner))
    set_later = wire.dump_operation(_PartialOf(functools.partial(books.totals)))
    for frame in (built, set_later, _chain(2)):
        kind, error = _execute(served.socket_path, frame)
        assert kind == wire.ERROR
        assert isinstance(error, StoreUnavailable)  # nothing ran: a retry is safe
        assert "another partial" in str(error)
    # A partial among a partial's arguments (the gateway's own declines) still crosses.
    declined = Declined(Decline.HOLD_EXPIRED)
    operation = functools.partial(
        idempotency.decide_once,
        decide=functools.partial(money.decided_by_caller, outcome=declined),
    )
    loaded = wire.load(wire.dump_operation(operation))
    assert loaded.keywords["decide"](None) == declined
    assert served.read(_totals()) == ()  # the service serves on


def test_a_deep_chain_of_partials_leaves_the_ledger_process_serving(tmp_path: Path) -> None:
    with service_in_a_child(tmp_path / "ledger.db") as child:
        frame = _chain(CHAIN_LEVELS)
        assert len(frame) < wire.MAX_FRAME_BYTES
        kind, error = _execute(child.path, frame)  # the old service died here (SIGSEGV)
        # Larger than an operation may be now: refused unread, before the partials.
        assert kind == wire.ERROR and "over the" in str(error)
        # A chain within an operation's size is as deep as it is long: refused unbuilt.
        kind, error = _execute(child.path, _chain(CHAIN_LEVELS // 10))
        assert kind == wire.ERROR and "frame nesting deeper than" in str(error)
        assert child.process.is_alive()
        store = RemoteLedgerStore(child.path)
        assert store.read(_totals()) == ()
        store.close()
        assert child.stop() == 0
