"""A worker replaced while the token is away does not stop the bank while the other
worker serves: it is started again after a back-off and serves once the token is back
(``gateway.restarts``), its cause logged once. One replaced between the two steps of a
user-PIN change (docs/OPERATIONS.md 9.1) is refused its PIN, which does not pass by
itself: the bank stops after that one try, as at its first start."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.gateway.actors import auth_request, purchase, register_cardholder, register_merchant
from tests.gateway.served import serve_bank, wait_for, workers_of
from tests.hsm.testbed import SOFTHSM_MODULE, SoftHsm, session_softhsm

NEW_PIN = "rotated-pin-8765"


def test_a_worker_dying_while_the_token_is_away_does_not_stop_the_bank(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    softhsm: SoftHsm = session_softhsm(tmp_path_factory)
    token = softhsm.init_token()
    bank = serve_bank(tmp_path, workers=2, keys=token.uri())
    aside = tmp_path / "token-aside"
    try:
        wait_for("two workers", lambda: len(workers_of(bank.process.pid)) == 2)
        healthy = workers_of(bank.process.pid)[1]
        os.rename(token.directory, aside)  # the token goes away (an HSM rebooting)
        time.sleep(1)
        os.kill(workers_of(bank.process.pid)[0], signal.SIGKILL)  # one worker crashes
        wait_for("two failed starts", lambda: bank.log().count("died: exit status 1") >= 1)
        time.sleep(4)  # several tries while the token is away
        os.rename(aside, token.directory)  # the token comes back
        wait_for("the replacement serving", lambda: bank.log().count(" serving (pid ") >= 3)
        assert bank.process.poll() is None and "stopping the bank" not in bank.log()
        assert healthy in workers_of(bank.process.pid)  # never stopped
        log = bank.log()
        assert log.count("cannot start while another worker serves") == 1, log
        assert log.count(" cannot serve: ") == 1, log  # once per cause, not per try
        merchant = register_merchant(bank.world, "M-away-1")
        cardholder = register_cardholder(bank.world)
        auth_request(merchant, purchase(merchant, cardholder, 100))
    finally:
        if aside.exists():
            os.rename(aside, token.directory)
        bank.close()


def test_a_worker_replaced_mid_pin_change_stops_the_bank_after_one_try(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """A refused PIN does not pass by itself, and where its refusal cannot be recorded (a
    PIN from the environment, a record that could not be written) each start would offer
    it again, locking a real HSM's user PIN: the bank stops, as at its first start."""
    softhsm: SoftHsm = session_softhsm(tmp_path_factory)
    token = softhsm.init_token()
    bank = serve_bank(tmp_path, workers=2, keys=token.uri())
    try:
        wait_for("two workers", lambda: len(workers_of(bank.process.pid)) == 2)
        # Section 9.1, step 1: change the PIN on the token.
        subprocess.run(
            ["pkcs11-tool", "--module", SOFTHSM_MODULE, "--token-label", token.label,
             "--login", "--pin", "env:OLD", "--change-pin", "--new-pin", "env:NEW"],
            env={**os.environ, "OLD": token.pin, "NEW": NEW_PIN}, check=True,
            capture_output=True,
        )  # fmt: skip
        os.kill(workers_of(bank.process.pid)[0], signal.SIGKILL)  # dies before step 2
        assert bank.process.wait(timeout=60) == 1
        log = bank.log()
        assert log.count(" cannot serve: ") == 1, log
        assert "login refused (PinIncorrect)" in log
        assert "stopping the bank: a worker failed to start" in log
        assert token.pin not in log and NEW_PIN not in log
    finally:
        bank.close()
