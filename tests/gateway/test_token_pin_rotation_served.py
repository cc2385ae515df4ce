"""The user PIN rotated on a serving bank's token as docs/OPERATIONS.md 9.1 says.

The workers keep their logged-in sessions and go on signing; a worker that dies after
the rotation is replaced by one that logs in with the PIN file's new value; neither PIN
ever reaches the bank's log.
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest

from setcore.authorization import open_auth_response
from setpay.v1 import authorization_pb2 as a
from tests.hsm.testbed import SOFTHSM_MODULE, SoftHsm, SoftToken, session_softhsm

from .actors import Merchant, auth_request, purchase, register_cardholder, register_merchant
from .served import ServedBank, serve_bank, wait_for, workers_of

NEW_PIN = "rotated-user-pin-7777"
# New channels spread over the workers (SO_REUSEPORT hashes each connection): eight
# authorizations, each on a channel of its own, reach both of two workers but with
# probability 2^-7; every one of them must be approved either way.
AUTHORIZATIONS = 8


def _approvals(bank: ServedBank, merchant: Merchant, count: int) -> list[str]:
    """``count`` authorizations, each on a new channel: their verified AuthCodes."""
    cardholder = register_cardholder(bank.world)
    codes = []
    for _ in range(count):
        request, state = auth_request(merchant, purchase(merchant, cardholder, 100))
        response = bank.channel().Authorize(request, timeout=30)
        result = open_auth_response(
            response, merchant.credentials, state, merchant.trust,
            gateway_identity=merchant.gateway_identity,
        )  # fmt: skip
        codes.append(a.AuthCode.Name(result.data.auth_res_payload.auth_header.auth_code))
    return codes


def _rotate(token: SoftToken) -> None:
    """Section 9.1: a new PIN file beside the old, the token's PIN changed, then the new
    file renamed over the old one."""
    new = token.pin_file.with_name(token.pin_file.name + ".new")
    fd = os.open(new, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(NEW_PIN + "\n")
    subprocess.run(
        ["pkcs11-tool", "--module", SOFTHSM_MODULE, "--token-label", token.label,
         "--login", "--pin", "env:SETPAY_PIN", "--change-pin", "--new-pin", "env:SETPAY_NEW_PIN"],
        env={**os.environ, "SETPAY_PIN": token.pin, "SETPAY_NEW_PIN": NEW_PIN},
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    os.rename(new, token.pin_file)


def test_a_rotated_pin_keeps_workers_signing_and_logs_in_a_replacement(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    softhsm: SoftHsm = session_softhsm(tmp_path_factory)
    token = softhsm.init_token()
    bank = serve_bank(tmp_path, workers=2, keys=token.uri())
    try:
        wait_for("two workers", lambda: len(workers_of(bank.process.pid)) == 2)
        merchant = register_merchant(bank.world, "M-pin-rotation")
        _rotate(token)
        # Logged in before the change, the workers sign on.
        assert _approvals(bank, merchant, AUTHORIZATIONS) == ["AUTH_CODE_APPROVED"] * AUTHORIZATIONS
        dead = workers_of(bank.process.pid)[0]
        os.kill(dead, signal.SIGKILL)

        def replaced() -> bool:
            now = workers_of(bank.process.pid)
            return len(now) == 2 and dead not in now and bank.log().count(" serving (pid ") == 3

        wait_for("the replacement serving", replaced)
        assert _approvals(bank, merchant, AUTHORIZATIONS) == ["AUTH_CODE_APPROVED"] * AUTHORIZATIONS
        log = bank.log()
        assert "login refused" not in log
        assert token.pin not in log and NEW_PIN not in log
        assert bank.stop() == 0, log
    finally:
        bank.close()
