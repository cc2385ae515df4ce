"""``setpay gateway serve --workers 3`` on a token whose PIN comes from ``env:NAME``.

A wrong PIN is offered to the token once at a bank start, not once per worker (a real
HSM locks its user PIN after a few wrong tries); the bank started again with the PIN
corrected logs in. Each start runs the real command (``served.launch``), its workers'
C_Logins counted by ``counted_login_serve``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.hsm.testbed import session_softhsm

from . import served
from .served import STOP_SECONDS, launch, serve_bank

VARIABLE = "SETPAY_TEST_BANK_PIN"
WRONG_PIN = "wrong-bank-pin-5120"


def _offered(path: Path) -> int:
    """How many PINs the bank's processes offered to the token."""
    return path.read_text().count("offered\n") if path.exists() else 0


def test_a_bank_of_three_workers_offers_a_wrong_env_pin_once(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = session_softhsm(tmp_path_factory).init_token()
    keys = token.uri().replace(f"file:{token.pin_file}", f"env:{VARIABLE}")
    monkeypatch.setenv(VARIABLE, token.pin)  # for ``setpay init``, made in this process
    counted = tmp_path / "offered-first"
    first = launch(
        tmp_path, workers=3, metrics=False, keys=keys, extra_env={VARIABLE: WRONG_PIN},
        command=("tests.gateway.counted_login_serve", str(counted)),
    )  # fmt: skip
    assert first.process.wait(timeout=STOP_SECONDS) == 1
    log = first.log()
    assert "login refused (PinIncorrect)" in log, log
    assert WRONG_PIN not in log
    assert _offered(counted) == 1, log  # was one per worker

    # The next start, the PIN corrected: offered by each worker, and taken.
    monkeypatch.setattr(served, "init_bank", lambda *args, **kwargs: None)  # made above
    counted = tmp_path / "offered-again"
    bank = serve_bank(
        tmp_path, workers=3, metrics=False, keys=keys, extra_env={VARIABLE: token.pin},
        command=("tests.gateway.counted_login_serve", str(counted)),
    )  # fmt: skip
    try:
        assert _offered(counted) == 3
        assert bank.stop() == 0, bank.log()
    finally:
        bank.close()
