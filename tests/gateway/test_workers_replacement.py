"""A worker replaced while the token is away, or between the two steps of a user-PIN
change (docs/OPERATIONS.md 9.1), does not stop the bank while the other worker serves: it
is started again after a back-off and serves once the token is back or the PIN file is
mended (``gateway.restarts``), its cause logged once."""

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


def test_a_worker_replaced_mid_pin_change_serves_once_the_file_is_mended(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    softhsm: SoftHsm = session_softhsm(tmp_path_factory)
    token = softhsm.init_token()
    bank = serve_bank(tmp_path, workers=2, keys=token.uri())
    try:
        wait_for("two workers", lambda: len(workers_of(bank.process.pid)) == 2)
        healthy = workers_of(bank.process.pid)[1]
        # Section 9.1, step 1: change the PIN on the token.
        subprocess.run(
            ["pkcs11-tool", "--module", SOFTHSM_MODULE, "--token-label", token.label,
             "--login", "--pin", "env:OLD", "--change-pin", "--new-pin", "env:NEW"],
            env={**os.environ, "OLD": token.pin, "NEW": NEW_PIN}, check=True,
            capture_output=True,
        )  # fmt: skip
        os.kill(workers_of(bank.process.pid)[0], signal.SIGKILL)  # dies before step 2
        wait_for("a refused start", lambda: "died: exit status 1" in bank.log())
        time.sleep(4)  # several tries with the old PIN file in place
        log = bank.log()
        # Offered once: later tries read the shared refusal record, not the token.
        assert log.count(" cannot serve: ") == 1, log
        assert log.count("cannot start while another worker serves") == 1, log
        # Step 2: the new PIN file renamed into place.
        new = token.pin_file.with_suffix(".new")
        fd = os.open(new, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(NEW_PIN + "\n")
        os.rename(new, token.pin_file)
        wait_for("the replacement serving", lambda: bank.log().count(" serving (pid ") >= 3)
        assert bank.process.poll() is None and "stopping the bank" not in bank.log()
        assert healthy in workers_of(bank.process.pid)
        assert len(workers_of(bank.process.pid)) == 2
    finally:
        bank.close()
