"""The token's PIN state changed by its security officer, seen by a running process.

A module keeps a token's PIN state from its initialization (SoftHSM re-reads it only
then): a process must re-initialize before it offers a PIN to a view that may be out of
date, or it refuses a PIN the token takes, and its recorded refusal keeps every fresh
process from that PIN too. Every token change here is made by another process
(``pkcs11-tool``), as an operator makes it.
"""

from __future__ import annotations

import multiprocessing
import time
from dataclasses import replace
from pathlib import Path

import pytest

from hsm.base import KeyAlgorithm, KeyUsage
from hsm.cryptoki import cryptoki
from hsm.errors import PermanentBackendError, TransientBackendError
from hsm.pkcs11 import Pkcs11Backend, Pkcs11Config
from hsm.token_session import ABSENT_RESCAN_SECONDS

from .keycheck import verify
from .pin_file_support import open_in_child, refusal_records_naming, write_pin
from .testbed import (
    DATA,
    SO_PIN,
    SOFTHSM_MODULE,
    CountingPinSource,
    SoftToken,
    pkcs11_tool,
    run_tool,
)

# The PIN the token is changed to behind the process's back.
NEW_PIN = "new-pin-5678"
# A child process imports nothing new and opens one token: ample on a loaded machine.
CHILD_SECONDS = 60


def _as_security_officer(token: SoftToken, *argv: str) -> None:
    run_tool(
        "pkcs11-tool", "--module", SOFTHSM_MODULE, "--token-label", token.label,
        "--login", "--login-type", "so", "--so-pin", SO_PIN, *argv,
    )  # fmt: skip


def _open_elsewhere(config: Pkcs11Config) -> tuple[int, str]:
    """A fresh process (a restarted worker) opens the token: its PIN reads, the outcome."""
    context = multiprocessing.get_context("fork")
    results = context.Queue()
    fresh = replace(config, pin_source=CountingPinSource("file", config.pin_source.location))
    child = context.Process(target=open_in_child, args=(fresh, results))
    child.start()
    try:
        answer: tuple[int, str] = results.get(timeout=CHILD_SECONDS)
    finally:
        child.join(timeout=CHILD_SECONDS)
    return answer


@pytest.mark.integration
def test_pin_reset_on_the_token_to_the_files_is_used_once_the_file_is_touched(
    token: SoftToken, tmp_path: Path
) -> None:
    backend = Pkcs11Backend(token.config())
    try:
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
        # The operator's way (docs/OPERATIONS.md): the security officer resets the user
        # PIN to the file's, then the file is touched.
        _as_security_officer(token, "--init-pin", "--pin", token.pin)
        time.sleep(0.05)  # the touch must come after the reset, as an operator's does
        token.pin_file.touch()
        verify(key.public_key, backend.sign(key, DATA), DATA)
        backend.check_health()
        assert _open_elsewhere(token.config()) == (1, "opened")
        assert refusal_records_naming(token, token.pin_file) == []
    finally:
        backend.close()


@pytest.mark.integration
def test_a_token_without_a_user_pin_yet_is_waited_for_not_refused(
    token: SoftToken, tmp_path: Path
) -> None:
    backend = Pkcs11Backend(token.config())
    try:
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
    finally:
        backend.close()


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
    assert _open_elsewhere(config) == (1, "opened")
    assert here == "opened"
    assert refusal_records_naming(token, pin_file) == []
