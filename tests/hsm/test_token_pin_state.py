"""The token's PIN state changed by its security officer, seen by a running process.

A module keeps a token's PIN state from its initialization (SoftHSM re-reads it only
then): a process must re-initialize before it offers a PIN to a view that may be out of
date, or it refuses a PIN the token takes, and its recorded refusal keeps every fresh
process from that PIN too. Every token change here is made by another process
(``pkcs11-tool``), as an operator makes it.

Two mechanisms see such a change, each with a test that fails without it: a token whose
PIN was refused (or unset) is marked stale in its module, so the process's next login
restarts first (the environment PIN's test); and a PIN file changed after the module's
view was taken restarts it before its login (the old view's test). The operator's story
(the first test) passes with either. A refusal by a view older than the login is kept
in its backend; and a PIN file whose times keep moving does not restart the module at
every login.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import replace
from pathlib import Path

import pytest

from hsm.base import KeyAlgorithm, KeyUsage
from hsm.cryptoki import cryptoki
from hsm.errors import PermanentBackendError, TransientBackendError
from hsm.pkcs11 import Pkcs11Backend
from hsm.token_login import FILE_CLOCK_SLACK_NS
from hsm.token_session import ABSENT_RESCAN_SECONDS

from .keycheck import verify
from .pin_file_support import open_elsewhere, refusal_records_naming, write_pin
from .testbed import (
    DATA,
    SO_PIN,
    SOFTHSM_MODULE,
    CountingPinSource,
    SoftHsm,
    SoftToken,
    pkcs11_tool,
    run_tool,
)

# The PIN the token is changed to behind the process's back.
NEW_PIN = "new-pin-5678"


def _as_security_officer(token: SoftToken, *argv: str) -> None:
    run_tool(
        "pkcs11-tool", "--module", SOFTHSM_MODULE, "--token-label", token.label,
        "--login", "--login-type", "so", "--so-pin", SO_PIN, *argv,
    )  # fmt: skip


@pytest.mark.integration
def test_pin_reset_on_the_token_to_the_files_is_used_once_the_file_is_touched(
    token: SoftToken, pkcs11_backend: Pkcs11Backend, tmp_path: Path
) -> None:
    backend = pkcs11_backend
    key = backend.generate("k", KeyUsage.SIGNATURE, KeyAlgorithm.EC_P256)
    pkcs11_tool(token, "--change-pin", "--new-pin", NEW_PIN)
    # The token goes away and comes back: the file's PIN is refused, rightly.
    token.directory.rename(tmp_path / "away")
    with pytest.raises(TransientBackendError):
        backend.sign(key, DATA)
    (tmp_path / "away").rename(token.directory)
    time.sleep(ABSENT_RESCAN_SECONDS)
    with pytest.raises(PermanentBackendError, match=r"login refused \(PinIncorrect\)"):
        backend.sign(key, DATA)
    # The operator's way (docs/OPERATIONS.md): the security officer resets the user PIN
    # to the file's, then the file is touched.
    _as_security_officer(token, "--init-pin", "--pin", token.pin)
    time.sleep(0.05)  # the touch must come after the reset, as an operator's does
    token.pin_file.touch()
    verify(key.public_key, backend.sign(key, DATA), DATA)
    backend.check_health()
    assert open_elsewhere(token.config()) == (1, "opened")
    assert refusal_records_naming(token, token.pin_file) == []


@pytest.mark.integration
def test_a_token_without_a_user_pin_yet_is_waited_for_not_refused(
    token: SoftToken, pkcs11_backend: Pkcs11Backend, tmp_path: Path
) -> None:
    backend = pkcs11_backend
    backend.check_health()
    # The operator takes the token out, re-initializes it, and sets its user PIN in a
    # second step; the backend looks at it in between.
    token.directory.rename(tmp_path / "away")
    with pytest.raises(TransientBackendError, match="is not present"):
        backend.check_health()
    (tmp_path / "away").rename(token.directory)
    run_tool(
        "pkcs11-tool", "--module", SOFTHSM_MODULE, "--token-label", token.label,
        "--init-token", "--label", token.label, "--so-pin", SO_PIN,
    )  # fmt: skip
    time.sleep(ABSENT_RESCAN_SECONDS)  # until the backend looks at the token again
    for _ in range(3):
        with pytest.raises(TransientBackendError, match="has no user PIN yet"):
            backend.check_health()
    # No PIN was refused: nothing is latched, here or for other processes.
    assert refusal_records_naming(token, token.pin_file) == []
    _as_security_officer(token, "--init-pin", "--pin", token.pin)
    time.sleep(ABSENT_RESCAN_SECONDS)
    backend.check_health()
    key = backend.generate("k", KeyUsage.SIGNATURE, KeyAlgorithm.EC_P256)
    verify(key.public_key, backend.sign(key, DATA), DATA)


@pytest.mark.integration
def test_a_process_with_an_old_view_does_not_keep_a_fresh_one_from_the_right_pin(
    token: SoftToken, tmp_path: Path
) -> None:
    # This process's view of the token is taken now, before its PIN changes.
    module = cryptoki(SOFTHSM_MODULE)
    with module.lock:
        module.reinitialize()
    pkcs11_tool(token, "--change-pin", "--new-pin", NEW_PIN)
    pin_file = tmp_path / "token.pin"
    write_pin(pin_file, NEW_PIN)  # the right PIN, written after the change
    config = replace(token.config(), pin_source=CountingPinSource("file", str(pin_file)))
    try:
        Pkcs11Backend(config).close()
        here = "opened"
    except PermanentBackendError as exc:
        here = str(exc)
    # A fresh process (a worker restarted by the supervisor) holds the right PIN: no
    # refusal of an out-of-date view may be recorded against it.
    assert open_elsewhere(config) == (1, "opened")
    assert here == "opened"
    assert refusal_records_naming(token, pin_file) == []


@pytest.mark.integration
def test_a_refusal_by_a_view_older_than_the_login_is_not_shared(
    token: SoftToken, softhsm: SoftHsm, tmp_path: Path
) -> None:
    # The operator writes the new PIN into the file first, then changes it on the token;
    # in between, a backend on another token of the module takes this process's view.
    pin_file = tmp_path / "token.pin"
    write_pin(pin_file, NEW_PIN)
    time.sleep(2 * FILE_CLOCK_SLACK_NS / 1e9)  # the view is then clearly the newer
    other = softhsm.init_token()
    neighbour = Pkcs11Backend(other.config())
    try:
        pkcs11_tool(token, "--change-pin", "--new-pin", NEW_PIN)
        config = replace(token.config(), pin_source=CountingPinSource("file", str(pin_file)))
        # The file is older than the view, so no restart: the old view refuses the PIN.
        with pytest.raises(PermanentBackendError, match=r"login refused \(PinIncorrect\)"):
            Pkcs11Backend(config)
        # That refusal is not the token's word on the PIN: nothing is recorded, and a
        # fresh process (a restarted worker) reads the PIN and opens the token.
        assert refusal_records_naming(token, pin_file) == []
        assert open_elsewhere(config) == (1, "opened")
        # The module was marked stale: this process's next backend restarts it first.
        Pkcs11Backend(config).close()
    finally:
        neighbour.close()
        shutil.rmtree(other.directory, ignore_errors=True)


@pytest.mark.integration
def test_an_env_pin_reset_on_the_token_is_seen_by_a_new_backend(
    token: SoftToken, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No file whose times could say the token changed: only the module's stale mark does.
    config = token.env_config(monkeypatch, "SETPAY_TEST_TOKEN_PIN", NEW_PIN)
    with pytest.raises(PermanentBackendError, match=r"login refused \(PinIncorrect\)"):
        Pkcs11Backend(config)
    _as_security_officer(token, "--init-pin", "--pin", NEW_PIN)
    backend = Pkcs11Backend(config)
    try:
        backend.check_health()
    finally:
        backend.close()


@pytest.mark.integration
def test_pin_files_whose_times_keep_moving_do_not_restart_the_module_at_each_login(
    token: SoftToken, softhsm: SoftHsm
) -> None:
    # Two tokens of one module in one process, each PIN file touched before every call
    # (an agent rewriting it, a secret store reporting "now"): a restart made for one
    # file logs the other token's backend out, whose login must not restart in turn.
    other = softhsm.init_token()
    first, second = Pkcs11Backend(token.config()), Pkcs11Backend(other.config())
    try:
        keys = [
            (backend, backend.generate("k", KeyUsage.SIGNATURE, KeyAlgorithm.EC_P256))
            for backend in (first, second)
        ]
        module = cryptoki(SOFTHSM_MODULE)
        with module.lock:
            module.reinitialize()  # one restart (a token lost and found) logs both out
        before, started = module.generation, time.monotonic()
        for _ in range(50):
            for backend, key in keys:
                os.utime(token.pin_file)
                os.utime(other.pin_file)
                verify(key.public_key, backend.sign(key, DATA), DATA)
        restarts = module.generation - before
        # At most one restart per file per ABSENT_RESCAN_SECONDS begun.
        allowed = 2 * (1 + int((time.monotonic() - started) / ABSENT_RESCAN_SECONDS))
        assert restarts <= allowed, f"{restarts} module restarts for 100 signatures"
    finally:
        first.close()
        second.close()
        shutil.rmtree(other.directory, ignore_errors=True)
