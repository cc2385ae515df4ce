"""A serving bank is never stopped for a certificate it presents: a worker that replaces
one that died is not judged (``gateway.process``), as the TLS certificate is not."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.config import load
from tests.gateway.served import ServedBank, served, wait_for, workers_of
from tests.gateway.test_bank_presented import _ended_gateway, _refused, _replace


@pytest.fixture
def two_workers(tmp_path: Path) -> Iterator[ServedBank]:
    yield from served(tmp_path, workers=2)


def test_a_worker_replaced_after_a_certificate_ended_serves(two_workers: ServedBank) -> None:
    bank = two_workers
    config = load(bank.directory / "setpay.toml", env={})
    wait_for("two workers", lambda: len(workers_of(bank.process.pid)) == 2)
    _replace(config, "gateway-kex", _ended_gateway)
    _refused(config)  # a bank starting now would not start on it
    victim, survivor = workers_of(bank.process.pid)
    os.kill(victim, signal.SIGKILL)
    wait_for("the replacement serving", lambda: bank.log().count(" serving (pid ") == 3)
    assert len(set(workers_of(bank.process.pid)) - {victim, survivor}) == 1
    assert bank.process.poll() is None, bank.log()
    assert "no peer accepts this certificate" not in bank.log()
    assert bank.stop() == 0, bank.log()
