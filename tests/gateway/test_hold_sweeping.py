"""Which bank process sweeps expired holds, and the count it reports.

The sweeper itself (batches, concurrency, idle rounds) is ``ledger/test_ledger_sweeper``'s.
Here: ``start_bank(sweep_holds=True)`` runs one, a bank started without it runs none,
worker 0 starts its bank with it and every other worker without (``gateway.worker``), it
stops with the bank, and the batches it reports reach ``setpay_ledger_holds_expired_total``.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable, Collection
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from gateway import metrics, process, worker
from gateway.config import BankConfig
from gateway.ledger.sweeper import HoldSweeper

from .actors import World

HOLDS_EXPIRED = "setpay_ledger_holds_expired_total"


def _sweepers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "hold-sweeper" and t.is_alive()]


@pytest.mark.parametrize("sweep_holds", [True, False])
def test_a_bank_sweeps_holds_only_where_asked_and_stops_sweeping_with_it(
    ec_world: World, sweep_holds: bool
) -> None:
    before = len(_sweepers())
    running = process.start_bank(
        ec_world.config, listen="127.0.0.1:0", ca_listen="127.0.0.1:0", sweep_holds=sweep_holds
    )
    try:
        assert len(_sweepers()) == before + sweep_holds
    finally:
        running.stop(None)
    assert len(_sweepers()) == before


def test_the_sweepers_batches_are_counted(registry: CollectorRegistry) -> None:
    """What each batch released is added; an empty batch adds nothing."""
    assert registry.get_sample_value(HOLDS_EXPIRED) == 0
    metrics.holds_expired(3)
    metrics.holds_expired(0)
    metrics.holds_expired(2)
    assert registry.get_sample_value(HOLDS_EXPIRED) == 5


def test_the_bank_hands_the_sweeper_the_counting_observer(
    ec_world: World, registry: CollectorRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With metrics on, the sweeper the bank starts reports to the counter."""
    observers: list[object] = []
    start = HoldSweeper.__init__

    def recording(self: HoldSweeper, *args: object, **kwargs: object) -> None:
        observers.append(kwargs.get("observer"))
        start(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(HoldSweeper, "__init__", recording)
    running = process.start_bank(
        ec_world.config, listen="127.0.0.1:0", ca_listen="127.0.0.1:0", sweep_holds=True
    )
    running.stop(None)
    assert observers == [metrics.holds_expired]


class _StoppedAlready:
    """``StopSignals`` for a worker told to stop as soon as it serves."""

    def __init__(self, signals: Collection[int]) -> None:
        pass

    def wait(self, seconds: float) -> bool:
        return True

    def answer_repeats(self, answer: Callable[[], None], done: threading.Event) -> None:
        pass  # no second signal comes


class _ServingBank:
    """What ``start_bank`` returns, as far as ``run_worker`` uses it."""

    port, ca_port = 1, 2

    def drain(self, grace_seconds: float) -> int:
        return 0

    def close(self) -> None:
        pass


@pytest.mark.parametrize("index", [0, 1, 2])
def test_worker_0_and_no_other_starts_its_bank_with_the_sweeper(
    index: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``run_worker`` as the supervisor's fork calls it, its bank a stand-in."""
    sweeps: list[object] = []

    def start_bank(config: BankConfig, **options: object) -> _ServingBank:
        sweeps.append(options["sweep_holds"])
        return _ServingBank()

    monkeypatch.setattr(worker, "start_bank", start_bank)
    monkeypatch.setattr(worker, "StopSignals", _StoppedAlready)
    plan = worker.WorkerPlan(
        config=BankConfig(base_dir=tmp_path, scheduling="normal"),  # leave pytest's policy
        listen="127.0.0.1:0",
        ca_listen="127.0.0.1:0",
        metrics=False,
        supervisor_pid=os.getppid(),
    )
    ready, ready_fd = os.pipe()
    sigchld = signal.getsignal(signal.SIGCHLD)
    try:
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, [])  # the mask as it is
        assert worker.run_worker(plan, index, ready_fd, mask) == 0
    finally:
        signal.signal(signal.SIGCHLD, sigchld)
    with os.fdopen(ready) as pipe:
        assert pipe.read() == "1 2\n"
    assert sweeps == [index == 0]
