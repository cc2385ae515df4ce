"""``setpay bench serve --mode ceiling --workers 3`` on a token whose PIN comes from
``env:NAME``, the PIN wrong: offered to the token once, not once per worker.

The ceiling's workers are forked by ``gateway.ceiling.serve`` itself, not by the bank's
supervisor; they are one bank start all the same (``hsm.pinsource.join_bank_start``). The
real command runs, its workers' C_Logins counted by ``counted_login_serve``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.provisioning import init_bank
from tests.hsm.testbed import session_softhsm

from .served import REPOSITORY

VARIABLE = "SETPAY_TEST_CEILING_PIN"
WRONG_PIN = "wrong-ceiling-pin-3318"
SECONDS = 120


def test_ceiling_workers_offer_a_wrong_env_pin_once(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before, each of the three workers offered it: three counted tries."""
    token = session_softhsm(tmp_path_factory).init_token()
    keys = token.uri().replace(f"file:{token.pin_file}", f"env:{VARIABLE}")
    monkeypatch.setenv(VARIABLE, token.pin)  # for the bank's keys, made in this process
    init_bank(tmp_path / "bank", profile="ec", keys=keys, merchant_tls=True, env={})
    counted = tmp_path / "offered"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SETPAY_", "PROMETHEUS_"))}
    env[VARIABLE] = WRONG_PIN
    argv = [
        sys.executable, "-m", "tests.gateway.counted_login_serve", str(counted),
        "--log-level", "INFO", "bench", "serve", "--mode", "ceiling",
        "--config", str(tmp_path / "bank" / "setpay.toml"), "--workers", "3",
    ]  # fmt: skip
    done = subprocess.run(
        argv, env=env, cwd=REPOSITORY, capture_output=True, timeout=SECONDS, check=False
    )
    log = done.stderr.decode(errors="replace")
    offered = counted.read_text().count("offered\n") if counted.exists() else 0
    assert done.returncode != 0, log
    assert offered == 1, (offered, log)  # was one per worker
    assert "login refused (PinIncorrect)" in log, log
    assert "until the bank is started again" in log, log
    assert WRONG_PIN not in log
