"""``spawn.serve_bank(metrics=True)``: the bench's bank serves its metrics on a port the
OS picks as the bank binds it, read back from the bank's port file, so no other process
can take the port between a pick and a bind (``free_port``'s race)."""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from clients.loadtest import spawn
from gateway.provisioning import init_bank


@pytest.fixture(scope="module")
def bank(tmp_path_factory: pytest.TempPathFactory) -> Iterator[spawn.Server]:
    work = tmp_path_factory.mktemp("spawn-metrics")
    init_bank(work / "bank", profile="ec", env={})
    server = spawn.serve_bank(work / "bank" / "setpay.toml", work, 1, metrics=True)
    try:
        yield server
    finally:
        server.stop()


def test_the_spawned_bank_s_metrics_port_is_the_one_it_bound(bank: spawn.Server) -> None:
    assert bank.metrics_port is not None
    assert bank.ports == (bank.ports[0], bank.ports[1], bank.metrics_port)
    url = f"http://127.0.0.1:{bank.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=10) as page:
        assert b"setpay_workers 1.0" in page.read()


def test_a_bank_without_metrics_has_no_metrics_port(tmp_path: Path) -> None:
    init_bank(tmp_path / "bank", profile="ec", env={})
    server = spawn.serve_bank(tmp_path / "bank" / "setpay.toml", tmp_path, 1)
    try:
        assert server.metrics_port is None and len(server.ports) == 2
    finally:
        server.stop()
