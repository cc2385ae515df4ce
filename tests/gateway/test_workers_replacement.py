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

from hsm.token_session import ABSENT_RESCAN_SECONDS
from tests.gateway.actors import auth_request, purchase, register_cardholder, register_merchant
from tests.gateway.served import serve_bank, wait_for, workers_of
from tests.hsm.testbed import SOFTHSM_MODULE, SoftHsm, session_softhsm

NEW_PIN = "rotated-pin-8765"
# A bank whose supervisor starts a worker again within hundredths of a second.
QUICK_RESTART = ("tests.gateway.quick_restart_serve",)


def test_a_worker_dying_while_the_token_is_away_does_not_stop_the_bank(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    softhsm: SoftHsm = session_softhsm(tmp_path_factory)
    token = softhsm.init_token()
    # Its tries a few hundredths of a second apart, not 0.5 s doubling: three tries and the
    # one after the token is back took 7.5 s.
    bank = serve_bank(tmp_path, workers=2, keys=token.uri(), command=QUICK_RESTART)
    aside = tmp_path / "token-aside"
    try:
        wait_for("two workers", lambda: len(workers_of(bank.process.pid)) == 2)
        healthy = workers_of(bank.process.pid)[1]
        os.rename(token.directory, aside)  # the token goes away (an HSM rebooting)
        time.sleep(1)
        os.kill(workers_of(bank.process.pid)[0], signal.SIGKILL)  # one worker crashes
        # Several tries while the token is away: a try starts once the one before failed
        # (only the first failure is logged: its cause is known afterwards).
        wait_for("three failed tries", lambda: bank.log().count("worker 0 restarted") >= 4)
        os.rename(aside, token.directory)  # the token comes back
        back = time.monotonic()
        wait_for("the replacement serving", lambda: bank.log().count(" serving (pid ") >= 3)
        # The healthy worker looks at a token it found away again within this time (until
        # then its calls are refused UNAVAILABLE); the back-off's waits once hid it.
        time.sleep(max(0.0, back + ABSENT_RESCAN_SECONDS - time.monotonic()))
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
