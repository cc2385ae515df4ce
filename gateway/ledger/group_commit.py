"""Group commit for SQLite: one writer thread, many operations per durable commit.

A durable SQLite commit (WAL, ``synchronous=FULL``) costs an fsync; one commit per
operation caps the ledger at the disk's fsync rate (a few thousand per second on the
development machine). The writer thread owns the only write connection of the process:

1. it takes the first queued operation and, while other requests of this process are
   computing (they hold or wait for the turn of ``gateway.cpu_turn`` and will submit in a
   moment), waits up to ``linger_seconds`` for theirs to join; with nobody computing it
   goes on at once, so a lone request pays nothing;
2. it waits for its turn among the processes writing the same file (``write_lock``; work
   keeps queuing meanwhile) and opens a write transaction (BEGIN IMMEDIATE, so it holds
   SQLite's write lock);
3. it applies the group and then every operation already queued behind it, each inside
   its own SAVEPOINT, until the group holds ``max_operations`` or has been open
   ``window_seconds`` or the queue is empty;
4. it commits once, then wakes every caller of the group: each gets its own result or
   its own exception. No caller returns before the commit that carries its change. A
   caller that did not wait (``submit_async``: the ledger process's loop, which must
   not block) gets its outcome through its completion, called on the writer thread.

Why linger (PostgreSQL's ``commit_delay`` is the same idea): a worker computes one
request at a time, so without it a group holds what finished during the previous commit,
1.7 operations on average at full load here, and each commit costs its fsync, its WAL
pages and a write turn. Measured side by side (two workers, ec; closed loop of 32, then
an open loop at 70 % of its rate), in two sessions of alternating runs:

- first, 1.5 ms against none, three rounds: 1,105/1,190/1,205 against 1,050/1,090/983
  authorizations/s (0.8 and 3 ms did as well); open-loop p99 46/19/27 against 38/28/21 ms;
- then 1 ms against none, four rounds: 1,067/1,106/877/883 against 1,005/1,101/813/931
  per second, within this machine's run-to-run spread; open-loop p99 26/28/32/48 against
  51/159/46/133 ms.

So the throughput gain is small and the shorter tail is the clearer effect.

An operation that raises rolls back to its savepoint alone; the rest of the group
commits. If BEGIN or COMMIT fails (a full disk, a busy database), or anything else stops
the group (the write turn), every operation of the group fails with StoreUnavailable,
nothing of it is kept, and the writer goes on with the next group; only a durable commit
is reported to the observer (the commit metrics). Operations run on the writer thread,
serially, holding the process's turn to compute; callers give that turn up while they
wait, and the writer gives it up for the commit's fsync. Not while a CA write waits on
the writer (its caller is inside ``CpuTurn.unwaited``: ca.db stays locked, which other
processes need, until its job commits): then a group is applied without the turn if it is
taken (a few statements; the turn only spares the GIL its hand-overs), and a wait for it
under way ends within ``TURN_LOOK_SECONDS``. An operation is only database statements:
the caller's response is signed outside it (``idempotency``), so a stalled key backend
never holds the writer.
"""

from __future__ import annotations

import contextlib
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from gateway.cpu_turn import PROCESS_TURN, CpuTurn
from gateway.ledger.errors import StoreError, StoreUnavailable
from gateway.ledger.store import CommitObserver, CommitStats, Transaction

R = TypeVar("R")

# 64 operations per commit: measured here, 64 rows per commit already reach ~20x the
# one-row-per-commit rate; larger groups add latency for the first caller and gain little.
MAX_GROUP_OPERATIONS = 64
# The longest a group stays open collecting queued work, bounding the latency the first
# operation of a group pays for the others (2 ms is about one fsync on slow disks).
GROUP_WINDOW_SECONDS = 0.002
# Operations waiting for the writer; beyond this, callers wait for room (backpressure)
# rather than growing memory without bound: at ~100k ops/s this is 40 ms of backlog.
MAX_QUEUED_OPERATIONS = 4096
# The longest the writer waits for the requests this process is computing to submit
# (step 1 above): about two requests' computing, and under the 2 ms window above.
GROUP_LINGER_SECONDS = 0.001
# How long a caller waits for room in the queue, and then for its commit, before
# StoreUnavailable. Generous: a stalled disk, not load, is what should trip it. A caller
# that gives up may still see its change committed; RRPID idempotency makes a retry safe.
# So a caller may wait up to twice this, and its job be applied later still: what bounds
# when a request is decided is not this but ``idempotency.DECIDED_WITHIN_MS``, checked
# as the job is applied.
SUBMIT_TIMEOUT_SECONDS = 30.0
# Commits of this writer between its WAL checkpoints (``_checkpoint_if_due``); it also
# checkpoints as it closes, if it committed since its last one. 32 groups of ~4
# authorizations are ~1,000 WAL pages, SQLite's own cadence; with two workers on one
# file, 1,000-2,500 pages (4-10 MB) measured. At least 1: SQLite's automatic checkpoint
# is off on every connection of the store, so a writer that never checkpoints leaves the
# WAL to grow without bound.
CHECKPOINT_EVERY_COMMITS = 32
# How often the writer waiting for the turn to apply a group looks whether a CA write now
# waits on it (it then applies without the turn): the most such a write's wait, ca.db
# locked, gains from a turn taken for long. Waking is only while the turn is taken.
TURN_LOOK_SECONDS = 0.002
# How often a writer that has stopped looks again for work that submitters already past
# the closed check are still putting (they are few, and each is quick or times out).
_STOPPED_DRAIN_SECONDS = 0.01


@dataclass(frozen=True)
class GroupCommitConfig:
    """The writer's limits (the module constants by default)."""

    max_operations: int = MAX_GROUP_OPERATIONS
    window_seconds: float = GROUP_WINDOW_SECONDS
    max_queued: int = MAX_QUEUED_OPERATIONS
    submit_timeout_seconds: float = SUBMIT_TIMEOUT_SECONDS
    linger_seconds: float = GROUP_LINGER_SECONDS
    checkpoint_every: int = CHECKPOINT_EVERY_COMMITS

    def __post_init__(self) -> None:
        """Refuse limits that would stop the writer from making progress."""
        if self.max_operations < 1 or self.max_queued < 1:
            raise ValueError("group commit limits must be at least 1")
        if self.window_seconds < 0 or self.linger_seconds < 0 or self.submit_timeout_seconds <= 0:
            raise ValueError("group commit times must be positive")
        if self.checkpoint_every < 1:
            raise ValueError("the writer must checkpoint at least every commit (1)")


Completion = Callable[[R | None, BaseException | None], None]
"""Called on the writer thread once an operation is committed (or failed): its result,
or its exception. Must be quick and must not block on the writer."""


class _Job(Generic[R]):
    """One operation handed to the writer, and its result or exception."""

    __slots__ = ("done", "error", "on_done", "result", "work")

    def __init__(
        self,
        work: Callable[[Transaction], R],
        on_done: Completion[R] | None = None,
        done: threading.Event | None = None,
    ) -> None:
        self.work = work
        # A waiting caller sleeps on ``done``; one with a completion never waits.
        self.done = done
        self.on_done = on_done
        self.result: R | None = None
        self.error: BaseException | None = None

    def finish(self) -> None:
        """Tell the caller: wake it, or hand the outcome to its completion."""
        if self.done is not None:
            self.done.set()
        if self.on_done is not None:
            # A completion must never stop the writer; it answers for itself.
            with contextlib.suppress(Exception):
                self.on_done(self.result, self.error)


class _GroupAborted(Exception):
    """The group's transaction itself failed; every operation in it fails."""


_STOP = object()


class GroupCommitWriter:
    """The writer thread and its queue."""

    def __init__(
        self,
        connect: Callable[[], sqlite3.Connection],
        transaction: Callable[[sqlite3.Connection], Transaction],
        translate: Callable[[sqlite3.Error], StoreError],
        config: GroupCommitConfig,
        observer: CommitObserver | None,
        turn: Callable[[], AbstractContextManager[None]] = contextlib.nullcontext,
        cpu: CpuTurn = PROCESS_TURN,
    ) -> None:
        """Start the writer thread; raise (translated) if it cannot open its connection.

        ``turn`` is held around each write transaction (the turn between processes);
        ``cpu`` is the process's turn to compute (``gateway.cpu_turn``): callers give it
        up while they wait for their commit, the writer holds it while it applies a group
        (unless a CA write waits on it: ``_unwaited_waiting``).
        """
        self._config = config
        self._turn = turn
        self._cpu = cpu
        self._observer = observer
        self._translate = translate
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=config.max_queued)
        self._closed = False
        self._close_lock = threading.Lock()
        # Submitters past the closed check whose put is under way. Each waits for room
        # outside the lock (waiting under it, the k-th caller of a full queue would wait k
        # timeouts), so the writer's last drain waits for them instead.
        self._putting = 0
        self._puts_done = threading.Condition(self._close_lock)
        self._commits_since_checkpoint = 0
        # Callers inside ``CpuTurn.unwaited`` waiting for their commit (``submit``).
        self._unwaited_callers = 0
        self._unwaited_lock = threading.Lock()
        self._ready = threading.Event()
        self._startup_error: BaseException | None = None
        self._thread = threading.Thread(
            target=self._run, args=(connect, transaction), name="ledger-writer", daemon=True
        )
        self._thread.start()
        self._ready.wait()
        if self._startup_error is not None:
            raise self._startup_error

    def submit(self, work: Callable[[Transaction], R]) -> R:
        """Run ``work`` in the next group; return its result once the group is committed."""
        done = threading.Event()
        job: _Job[R] = _Job(work, done=done)
        timeout = self._config.submit_timeout_seconds
        with self._cpu.aside():
            if self._cpu.unwaiting:
                answered = self._wait_unwaited(job, done, timeout)
            else:
                self._enqueue(job)
                answered = done.wait(timeout)
            if not answered:
                raise StoreUnavailable("the ledger writer did not commit in time")
        if job.error is not None:
            raise job.error
        return job.result  # type: ignore[return-value]  # set whenever error is None

    def _wait_unwaited(self, job: _Job[Any], done: threading.Event, timeout: float) -> bool:
        """Queue and wait for the job of a caller inside ``CpuTurn.unwaited`` (a CA write,
        ca.db locked); counted meanwhile, so the writer does not wait for the turn, even if
        it was already waiting for a group queued before this one."""
        with self._unwaited_lock:
            self._unwaited_callers += 1
        try:
            self._enqueue(job)
            return done.wait(timeout)
        finally:
            with self._unwaited_lock:
                self._unwaited_callers -= 1

    def _unwaited_waiting(self) -> bool:
        """Whether a CA write waits on the writer now (asked by ``CpuTurn.held_unless``)."""
        return self._unwaited_callers > 0

    def submit_async(self, work: Callable[[Transaction], R], on_done: Completion[R]) -> None:
        """Queue ``work`` for the next group and return at once; ``on_done`` gets its result
        or exception on the writer thread after the commit. Waits while the queue is full."""
        self._enqueue(_Job(work, on_done))

    def _enqueue(self, job: _Job[Any]) -> None:
        """Queue ``job`` unless the writer is closed, waiting up to the submit timeout for
        room; StoreUnavailable otherwise. Nothing lands behind the writer's last drain:
        ``close`` and a stopping writer wait for the puts under way (``_putting``)."""
        with self._close_lock:
            if self._closed:
                raise StoreUnavailable("the ledger store is closed")
            self._putting += 1
        try:
            self._queue.put(job, timeout=self._config.submit_timeout_seconds)
        except queue.Full as exc:
            raise StoreUnavailable("the ledger writer's queue stayed full") from exc
        finally:
            with self._close_lock:
                self._putting -= 1
                if self._putting == 0:
                    self._puts_done.notify_all()

    def close(self) -> None:
        """Let the writer finish what is queued, then stop it."""
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
            # The puts under way land before the stop mark (the writer keeps draining, so
            # room appears), then the blocking put of the mark itself.
            while self._putting:
                self._puts_done.wait()
            self._queue.put(_STOP)
        self._thread.join()

    def _run(
        self,
        connect: Callable[[], sqlite3.Connection],
        transaction: Callable[[sqlite3.Connection], Transaction],
    ) -> None:
        try:
            conn = connect()
        except sqlite3.Error as exc:
            self._startup_error = self._translate(exc)
            self._ready.set()
            return
        except BaseException as exc:  # noqa: BLE001  handed to the thread that opens the store
            self._startup_error = exc
            self._ready.set()
            return
        self._ready.set()
        try:
            tx = transaction(conn)
            while self._commit_group(conn, tx):
                pass
        finally:
            with self._close_lock:
                self._closed = True
            # Work put by submitters already past the closed check is failed as it lands
            # (the draining makes room for those waiting on a full queue).
            while True:
                self._fail_queued()
                with self._close_lock:
                    if not self._putting:
                        break
                    self._puts_done.wait(_STOPPED_DRAIN_SECONDS)
            self._fail_queued()
            self._checkpoint_before_close(conn)
            conn.close()

    def _commit_group(self, conn: sqlite3.Connection, tx: Transaction) -> bool:
        """Apply and commit one group; return False once told to stop."""
        first = self._queue.get()
        if first is _STOP:
            return False
        group: list[_Job[Any]] = [first]
        started = time.perf_counter()
        keep_running = self._gather_while_others_compute(group)
        committed = settled = finished = False
        # Whatever stops a group (the database, the turn, a fault of the writer itself)
        # fails each of its callers, and the writer goes on to the next group: a caller
        # left unanswered would wait out its timeout, and the store would stay shut.
        try:
            with self._turn():
                try:
                    keep_running = self._apply_group(conn, tx, group) and keep_running
                    conn.execute("COMMIT")  # the fsync: this process computes meanwhile
                    committed = True
                except Exception as exc:  # noqa: BLE001  told to every caller of the group
                    self._abort(conn, group, exc)  # rolled back before the turn passes on
                settled = True
                if committed:
                    self._finish(group, started)
                    finished = True
                    self._checkpoint_if_due(conn)
        except Exception as exc:  # noqa: BLE001  no turn: nothing of the group was applied
            if not settled:  # a turn that fails to pass on after the group changes nothing
                self._abort(conn, group, exc)
        if not finished:
            self._finish(group, None)
        return keep_running

    def _finish(self, group: list[_Job[Any]], committed_since: float | None) -> None:
        """Answer every caller of ``group``; report a commit (begun at ``committed_since``)
        to the observer."""
        for job in group:
            job.finish()
        if committed_since is not None:
            seconds = time.perf_counter() - committed_since
            self._notify(CommitStats(seconds=seconds, operations=len(group)))

    def _checkpoint_if_due(self, conn: sqlite3.Connection) -> None:
        """Copy the WAL back into the database every ``checkpoint_every`` commits.

        SQLite's own automatic checkpoint (off on every connection of the store, see
        ``sqlite``) ran inside the COMMIT of one group in ~31, so that group's callers
        waited for it: 5-10 ms median, up to 85 ms. Here it runs after they are answered, still
        inside the write turn: no process appends meanwhile, so the checkpoint can reach
        the end of the WAL and the next writer starts it again from the top (a checkpoint
        on another thread, racing the writers, never caught up and the WAL grew without
        bound). PASSIVE never waits for readers; what a reader still needs waits for the
        next one. A crash between the COMMIT and the checkpoint loses nothing: the commit
        is in the WAL, and the next open replays it. A failed checkpoint changes nothing
        committed, so it is only tried again at the next due commit.
        """
        self._commits_since_checkpoint += 1
        if self._commits_since_checkpoint >= self._config.checkpoint_every:
            self._checkpoint(conn)

    def _checkpoint(self, conn: sqlite3.Connection) -> None:
        self._commits_since_checkpoint = 0
        with contextlib.suppress(sqlite3.Error):
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()

    def _checkpoint_before_close(self, conn: sqlite3.Connection) -> None:
        """Copy back what this writer committed since its last checkpoint, in the write
        turn, before its connection closes.

        A store that lives for a few commits (a ``setpay bank`` command beside a serving
        bank) never reaches ``checkpoint_every``, and its close is not the last connection
        to the file (the one that checkpoints by itself), while an idle bank commits
        nothing and so never checkpoints either: without this, each such command's pages
        stayed in the WAL, which grew with every command (600 one-commit stores: 4 to
        17 MB), and the bank's first due checkpoint then copied them all holding the turn.
        Whatever fails here (the turn, the checkpoint) loses nothing committed, and must
        not keep the connection open: the next checkpoint, of any writer, copies those
        pages too.
        """
        if not self._commits_since_checkpoint:
            return
        with contextlib.suppress(Exception), self._turn():
            self._checkpoint(conn)

    def _apply_group(
        self, conn: sqlite3.Connection, tx: Transaction, group: list[_Job[Any]]
    ) -> bool:
        """BEGIN, apply ``group`` and then what queued behind it (the group grows in place);
        return False if told to stop meanwhile."""
        # The window counts from our turn: what queued while we waited for it joins.
        opened = time.perf_counter()
        conn.execute("BEGIN IMMEDIATE")
        with self._cpu.held_unless(self._unwaited_waiting, TURN_LOOK_SECONDS):
            for job in group:
                self._apply(conn, tx, job)
            while len(group) < self._config.max_operations:
                if time.perf_counter() - opened >= self._config.window_seconds:
                    break
                try:
                    job = self._queue.get_nowait()
                except queue.Empty:
                    break
                if job is _STOP:
                    return False
                group.append(job)
                self._apply(conn, tx, job)
        return True

    def _gather_while_others_compute(self, group: list[_Job[Any]]) -> bool:
        """Wait up to ``linger_seconds`` for more work while requests of this process are
        computing (they will submit soon); return False if told to stop meanwhile."""
        linger = self._config.linger_seconds
        if linger <= 0:
            return True
        deadline = time.perf_counter() + linger
        while len(group) < self._config.max_operations and self._cpu.wanting > 0:
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                break
            try:
                job = self._queue.get(timeout=remaining)
            except queue.Empty:
                break
            if job is _STOP:
                return False
            group.append(job)
        return True

    def _apply(self, conn: sqlite3.Connection, tx: Transaction, job: _Job[Any]) -> None:
        """Run one job inside its own savepoint; its failure rolls back only itself."""
        try:
            conn.execute("SAVEPOINT op")
        except sqlite3.Error as exc:
            raise _GroupAborted("could not open a savepoint") from exc
        try:
            job.result = job.work(tx)
        # Anything a caller's work raises belongs to that caller; the writer
        # must survive it to commit everyone else's work.
        except BaseException as exc:  # noqa: BLE001
            job.error = self._translate(exc) if isinstance(exc, sqlite3.Error) else exc
            try:
                conn.execute("ROLLBACK TO op")
                conn.execute("RELEASE op")
            except sqlite3.Error as rollback_exc:
                raise _GroupAborted("could not roll back a savepoint") from rollback_exc
            return
        try:
            conn.execute("RELEASE op")
        except sqlite3.Error as exc:
            raise _GroupAborted("could not release a savepoint") from exc

    def _abort(self, conn: sqlite3.Connection, group: list[_Job[Any]], cause: Exception) -> None:
        """The group's transaction failed: roll it back and fail every job in it."""
        if conn.in_transaction:
            # If even ROLLBACK fails the connection is gone, and the group with it.
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
        for job in group:
            error = StoreUnavailable("the ledger transaction could not be committed")
            error.__cause__ = cause
            job.result = None
            job.error = error

    def _notify(self, stats: CommitStats) -> None:
        observer = self._observer
        if observer is None:
            return
        # A metrics hook must never stop the ledger.
        with contextlib.suppress(Exception):
            observer(stats)

    def _fail_queued(self) -> None:
        """Fail whatever is still queued when the writer stops."""
        while True:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                return
            if job is not _STOP:
                job.error = StoreUnavailable("the ledger store is closed")
                job.finish()
