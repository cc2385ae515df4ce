"""A --target bank whose CPU counter went back (it restarted during a run): the run's
server CPU is unknown and the bench says DOUBT, as for a server it started whose
processes changed (``cli.bench.changed_processes``, ``cpu.PageCpu``)."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from cli import bench
from cli.bench import changed_processes
from clients.loadtest import cpu
from clients.loadtest.channels import GatewayAccess
from clients.loadtest.plan import Service
from clients.loadtest.report import all_doubts, run_status, to_text
from tests.clients.loadtest.test_reaped_cpu import _result


def test_a_counter_that_went_back_is_a_doubt_naming_the_run() -> None:
    result = _result(None)
    page = cpu.PageCpu("http://127.0.0.1:1/metrics")
    page.changes = 1
    result.doubts += changed_processes(result, {Service.GATEWAY: page})
    (doubt,) = all_doubts(result)
    assert doubt.startswith(
        "the gateway's processes changed while the bench read their CPU (its CPU counter"
        " went back or changed, as a restarted bank's does): its server CPU is unknown (-)"
        " in open loop 20/s;"
    )
    assert f"  DOUBT: {doubt}\n" in to_text(result)
    assert run_status(result, failed=1, not_clean=3) == 3


def test_a_counter_that_never_went_back_is_no_doubt() -> None:
    result = _result(0.5)
    assert changed_processes(result, {Service.GATEWAY: cpu.PageCpu("http://127.0.0.1:1/")}) == []
    assert run_status(result, failed=1, not_clean=3) == 0


def test_a_target_bank_with_a_metrics_page_has_its_counter_watched(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The bank's configuration and TLS files matter not here: only what is watched.
    monkeypatch.setattr(bench, "load", lambda path: argparse.Namespace(
        ca_listen="127.0.0.1:1", workers=1, insecure=True, base_dir=tmp_path))  # fmt: skip
    monkeypatch.setattr(GatewayAccess, "from_tls_dir", lambda *_: None)
    args = argparse.Namespace(
        bank_config=tmp_path / "setpay.toml", target="127.0.0.1:2", ca_target=None,
        workers=None, metrics_url="http://127.0.0.1:3/metrics",
    )  # fmt: skip
    watched = bench._target_bank(args)
    assert isinstance(watched.processes, cpu.PageCpu)
    assert watched.gateway_cpu == watched.processes.server_cpu
    args.metrics_url = None
    assert bench._target_bank(args).processes is None  # nothing to watch: CPU unknown
