"""SQLite group commit: grouping, isolation of a failing operation, commit before return."""

from __future__ import annotations

import multiprocessing
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from gateway.ledger import (
    CommitStats,
    GroupCommitConfig,
    Ledger,
    LedgerKeys,
    Outcome,
    PrebuiltApproval,
    SqliteLedgerStore,
    SqliteStoreConfig,
    StoreUnavailable,
)
from gateway.ledger.store import Transaction
from tests.gateway.ledger.ledger_support import (
    EUR,
    EXPIRY,
    MERCHANT,
    PAN_A,
    insert_probe,
    probe_values,
)

# Operations queued behind a blocked writer in the grouping tests.
QUEUED = 20


@pytest.fixture
def blocked_store(tmp_path: Path):  # type: ignore[no-untyped-def]
    """A store whose writer is held inside its first operation until ``release`` is set."""
    commits: list[CommitStats] = []
    config = SqliteStoreConfig(group_commit=GroupCommitConfig(window_seconds=60))
    store = SqliteLedgerStore(tmp_path / "ledger.db", config=config, observer=commits.append)
    store.execute(lambda tx: tx.run("CREATE TABLE probe (value INTEGER NOT NULL UNIQUE)"))
    commits.clear()
    release = threading.Event()
    entered = threading.Event()

    def hold_writer(tx: Transaction) -> None:
        entered.set()
        release.wait()

    pool = ThreadPoolExecutor(max_workers=QUEUED + 1)
    first = pool.submit(store.execute, hold_writer)
    entered.wait()
    yield store, pool, release, commits, first
    release.set()
    pool.shutdown()
    store.close()


def test_queued_operations_share_one_commit_and_fail_alone(blocked_store, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    store, pool, release, commits, first = blocked_store

    def failing(tx: Transaction) -> None:
        tx.run("INSERT INTO probe (value) VALUES (?)", 999)
        raise RuntimeError("this operation fails after writing")

    futures = [pool.submit(store.execute, insert_probe(i)) for i in range(QUEUED // 2)]
    bad = pool.submit(store.execute, failing)
    duplicate = pool.submit(store.execute, insert_probe(0))  # violates UNIQUE: a store error
    futures += [pool.submit(store.execute, insert_probe(i)) for i in range(QUEUED // 2, QUEUED - 2)]
    while store._writer._queue.qsize() < QUEUED:  # wait until all are queued
        threading.Event().wait(0.001)
    # Nothing has returned while the group is open: no answer before the commit.
    assert not any(f.done() for f in [*futures, bad, duplicate])
    release.set()
    assert [f.result() for f in futures] == list(range(QUEUED - 2)[: QUEUED // 2]) + list(
        range(QUEUED // 2, QUEUED - 2)
    )
    with pytest.raises(RuntimeError, match="fails after writing"):
        bad.result()
    with pytest.raises(Exception, match="UNIQUE") as excinfo:
        duplicate.result()
    assert type(excinfo.value).__name__ == "StoreError"
    first.result()
    assert probe_values(tmp_path / "ledger.db") == list(range(QUEUED - 2))
    assert [c.operations for c in commits] == [QUEUED + 1]


def test_a_call_returns_only_after_its_commit(tmp_path: Path) -> None:
    store = SqliteLedgerStore(tmp_path / "ledger.db")
    store.execute(lambda tx: tx.run("CREATE TABLE probe (value INTEGER NOT NULL UNIQUE)"))
    try:
        for i in range(20):
            store.execute(insert_probe(i))
            # A separate connection sees it at once: it was committed before the return.
            assert probe_values(tmp_path / "ledger.db")[-1] == i
    finally:
        store.close()


def test_concurrent_authorizations_are_grouped(tmp_path: Path) -> None:
    commits: list[CommitStats] = []
    ledger = Ledger(
        SqliteLedgerStore(tmp_path / "ledger.db", observer=commits.append), LedgerKeys.generate()
    )
    ledger.open_merchant_account(MERCHANT, EUR)
    ledger.open_card_account(PAN_A, EXPIRY, 10**9, EUR)
    commits.clear()
    start = threading.Barrier(64)

    def not_called(outcome: Outcome) -> bytes:
        raise AssertionError(f"the approval was built ahead, yet asked for {outcome}")

    def authorize(i: int) -> bytes:
        start.wait()
        # As the gateway does: the approval built ahead, so each costs one operation.
        return ledger.authorize(
            pan=PAN_A,
            pan_expiry=EXPIRY,
            amount=1,
            currency=EUR,
            merchant_id=MERCHANT,
            xid=f"x{i}".encode(),
            pi_digest=b"pi",
            rrpid=f"r{i}".encode(),
            request_digest=b"d",
            respond=not_called,
            hold_id=f"hold-{i}",
            prebuilt=PrebuiltApproval(f"hold-{i}", 1, EUR, b"ok"),
        )

    with ThreadPoolExecutor(max_workers=64) as pool:
        assert set(pool.map(authorize, range(256))) == {b"ok"}
    assert sum(c.operations for c in commits) == 256
    assert len(commits) < 256  # some commits carried several authorizations
    assert max(c.operations for c in commits) <= GroupCommitConfig().max_operations
    assert ledger.find_card_account(PAN_A).pending == 256
    ledger.check_balanced()
    ledger.close()


def test_close_commits_what_is_queued_then_refuses(tmp_path: Path) -> None:
    store = SqliteLedgerStore(tmp_path / "ledger.db")
    store.execute(lambda tx: tx.run("CREATE TABLE probe (value INTEGER NOT NULL UNIQUE)"))
    with ThreadPoolExecutor(max_workers=8) as pool:
        futures = [pool.submit(store.execute, insert_probe(i)) for i in range(50)]
        store.close()
    done = [f for f in futures if f.exception() is None]
    refused = [f for f in futures if f.exception() is not None]
    assert all(isinstance(f.exception(), StoreUnavailable) for f in refused)
    assert probe_values(tmp_path / "ledger.db") == sorted(f.result() for f in done)
    with pytest.raises(StoreUnavailable):
        store.execute(insert_probe(1000))


def _authorize_from_process(
    path: str, keys: tuple[bytes, bytes], worker: int, count: int
) -> list[str]:
    ledger = Ledger(SqliteLedgerStore(path), LedgerKeys(data_key=keys[0], index_key=keys[1]))
    seen: list[str] = []

    def respond(outcome: Outcome) -> bytes:
        seen.append(type(outcome).__name__)
        return b"ok"

    try:
        for i in range(count):
            ledger.authorize(
                pan=PAN_A,
                pan_expiry=EXPIRY,
                amount=100,
                currency=EUR,
                merchant_id=MERCHANT,
                xid=f"w{worker}-x{i}".encode(),
                pi_digest=b"pi",
                rrpid=f"w{worker}-r{i}".encode(),
                request_digest=b"d",
                respond=respond,
            )
    finally:
        ledger.close()
    return seen


def test_worker_processes_share_one_sqlite_file(tmp_path: Path) -> None:
    keys = LedgerKeys.generate()
    path = str(tmp_path / "ledger.db")
    ledger = Ledger(SqliteLedgerStore(path), keys)
    ledger.open_merchant_account(MERCHANT, EUR)
    ledger.open_card_account(PAN_A, EXPIRY, 5_000, EUR)  # affords 50 of the 80 below
    ledger.close()
    context = multiprocessing.get_context("spawn")
    with context.Pool(2) as pool:
        results = pool.starmap(
            _authorize_from_process,
            [(path, (keys.data_key, keys.index_key), w, 40) for w in range(2)],
        )
    outcomes = [name for worker in results for name in worker]
    assert outcomes.count("Authorized") == 50 and outcomes.count("Declined") == 30
    ledger = Ledger(SqliteLedgerStore(path), keys)
    assert ledger.find_card_account(PAN_A).available == 0
    ledger.check_balanced()
    ledger.close()


def test_a_submission_without_waiting_is_answered_after_its_commit(tmp_path: Path) -> None:
    # What the ledger process uses: queue and return, the writer answers after the commit.
    path = tmp_path / "ledger.db"
    store = SqliteLedgerStore(path)
    try:
        store.execute(lambda tx: tx.run("CREATE TABLE probe (value INTEGER NOT NULL UNIQUE)"))
        answers: list[tuple[object, str | None, list[int]]] = []
        done = threading.Event()

        def completion(result: object, error: BaseException | None) -> None:
            # Runs on the writer, after the commit: the row is on disk for another reader.
            answers.append((result, type(error).__name__ if error else None, probe_values(path)))
            if len(answers) == 3:
                done.set()

        def raising(result: object, error: BaseException | None) -> None:
            raise RuntimeError("a completion that fails must not stop the writer")

        store.submit(insert_probe(1), completion)
        store.submit(insert_probe(1), raising)  # a duplicate: fails, and so does its completion
        store.submit(insert_probe(1), completion)  # fails alone, answered with its error
        store.submit(insert_probe(2), completion)
        assert done.wait(30)
        assert [a[:2] for a in answers] == [(1, None), (None, "StoreError"), (2, None)]
        # Each success was answered only once its own row was committed.
        assert 1 in answers[0][2] and 2 in answers[2][2]
        assert store.execute(insert_probe(3)) == 3  # the writer is alive
    finally:
        store.close()
    with pytest.raises(StoreUnavailable, match="closed"):
        store.submit(insert_probe(4), lambda result, error: None)
