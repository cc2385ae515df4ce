"""Prometheus metrics at the supervisor: its sample directory as processes die, its
port taken before any worker starts, its endpoint against a scraper that trickles."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.provisioning import init_bank
from gateway.scrape import SCRAPE_SECONDS, MultiprocessDirectory, ScrapeEndpoint

from .served import ledger_process_of, serve_bank, wait_for, workers_of


def _live_gauge_files(directory: Path, pid: int) -> list[str]:
    return sorted(p.name for p in directory.glob(f"gauge_live*_{pid}.db"))


def test_dead_processes_live_gauges_leave_the_directory_and_their_counters_stay(
    tmp_path: Path,
) -> None:
    # The operator's directory, so the test can look into it (the bank's own is private).
    samples = tmp_path / "samples"
    samples.mkdir()
    (samples / "counter_1.db").write_bytes(b"")  # a previous run's, to be cleaned at start
    (samples / "README").write_text("the operator's own file\n")
    env = {"SETPAY_LEDGER_SERVICE": "1", "PROMETHEUS_MULTIPROC_DIR": str(samples)}
    bank = serve_bank(tmp_path, workers=2, extra_env=env)
    try:
        assert not (samples / "counter_1.db").exists()
        assert (samples / "README").exists()
        (worker, _), (ledger,) = workers_of(bank.process.pid), ledger_process_of(bank.process.pid)
        assert _live_gauge_files(samples, worker) and _live_gauge_files(samples, ledger)
        os.kill(worker, signal.SIGKILL)
        os.kill(ledger, signal.SIGKILL)
        # Five at least: under load a replacement may itself be replaced (it started while
        # the ledger process was still down), and an exact five then never came.
        try:
            wait_for("both replaced", lambda: bank.log().count(" serving (pid ") >= 5)
        except AssertionError as exc:
            raise AssertionError(f"{exc}; the bank's log:\n{bank.log()[-4000:]}") from None
        # A live gauge of a dead process would be merged as if it still ran; its counters
        # must stay, or the totals would step back: folded into the processes gone's.
        assert _live_gauge_files(samples, worker) == []
        assert _live_gauge_files(samples, ledger) == []
        assert not (samples / f"counter_{worker}.db").exists()
        assert not (samples / f"counter_{ledger}.db").exists()
        assert (samples / "counter_gone.db").exists()
        assert bank.stop() == 0, bank.log()
    finally:
        bank.close()


def test_metrics_port_in_use_is_refused_before_any_worker_starts(tmp_path: Path) -> None:
    init_bank(tmp_path / "bank", profile="ec", env={})
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "cli.main", "--log-level", "INFO", "gateway", "serve",
             "--config", str(tmp_path / "bank" / "setpay.toml"), "--listen", "127.0.0.1:0",
             "--ca-listen", "127.0.0.1:0", "--workers", "1", "--metrics-port", str(port)],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
    assert done.returncode == 1
    assert f"cannot serve metrics on 127.0.0.1:{port}" in done.stderr
    # The supervisor logs each fork at INFO: none came before the refusal.
    assert "started (pid" not in done.stderr, done.stderr


# --- the supervisor's endpoint, in-process --------------------------------------------


@pytest.fixture
def endpoint(tmp_path: Path) -> Iterator[ScrapeEndpoint]:
    served = ScrapeEndpoint("127.0.0.1", 0, MultiprocessDirectory(tmp_path, owned=False))
    try:
        yield served
    finally:
        served.close()


def test_a_scraper_that_trickles_its_request_holds_the_supervisor_briefly(
    endpoint: ScrapeEndpoint,
) -> None:
    # The supervisor answers scrapes in the loop that also forwards SIGTERM and restarts
    # workers: a client sending a byte now and then must not hold that loop for long.
    trickling = SCRAPE_SECONDS * 4
    done = threading.Event()
    with socket.create_connection(("127.0.0.1", endpoint.port), timeout=5) as slow:

        def trickle() -> None:
            give_up = time.monotonic() + trickling
            while time.monotonic() < give_up and not done.wait(SCRAPE_SECONDS / 8):
                try:
                    slow.send(b"G")
                except OSError:
                    return

        sender = threading.Thread(target=trickle)
        sender.start()
        started = time.monotonic()
        endpoint.handle()
        held = time.monotonic() - started
        done.set()
        sender.join()
    assert held < SCRAPE_SECONDS + 1.0, held
    # The loop goes on serving the next scraper.
    statuses: list[int] = []

    def fetch() -> None:
        url = f"http://127.0.0.1:{endpoint.port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as response:
            statuses.append(response.status)

    client = threading.Thread(target=fetch)
    client.start()
    give_up = time.monotonic() + 10
    while client.is_alive() and time.monotonic() < give_up:
        endpoint.handle()  # as the supervisor's loop does when the socket is readable
        time.sleep(0.01)
    client.join(10)
    assert statuses == [200]
