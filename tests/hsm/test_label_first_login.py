"""A label-only link's first login: the module's view and its stale marks under both names.

A URI naming its token by label only names the token's locks after the label until its
first login finds the token; that login then takes the token's own login lock too
(``hsm.token_login``'s "Lock names"). Two things must hold across that renaming:

- a view of the module the login took under the label's lock alone (a restart made
  before the token was known) is taken again inside the token's lock, as a shared
  refusal needs; a login that restarted nothing restarts nothing there either (a restart
  logs out every backend of the process);
- a PIN refused at that login marks the module stale under the token's own name too, so
  that a backend naming the token by serial restarts the module before it offers a PIN,
  and sees a PIN the security officer reset since.
"""

from __future__ import annotations

import fcntl
import os
from dataclasses import replace
from pathlib import Path

import pytest

from hsm.cryptoki import Cryptoki, cryptoki
from hsm.errors import PermanentBackendError
from hsm.filelock import lock_directory
from hsm.pinsource import PinSource
from hsm.pkcs11 import Pkcs11Backend, Pkcs11Config
from hsm.token_login import PinLatch, TokenLocks, view_may_be_stale
from hsm.token_session import ABSENT_RESCAN_SECONDS

from .pin_file_support import write_pin
from .testbed import SO_PIN, SOFTHSM_MODULE, SoftToken, run_tool

# The PIN the security officer gives the token behind the process's back.
NEW_PIN = "new-pin-5678"

# The environment variable the tests' PINs are read from.
PIN_VARIABLE = "SETPAY_TEST_LABEL_LOGIN_PIN"


def _locks(config: Pkcs11Config) -> TokenLocks:
    """The lock names a link made with ``config`` starts with (label's, or the token's)."""
    latch = PinLatch(config.pin_source)
    directory = lock_directory(config.lock_dir)
    return TokenLocks(SOFTHSM_MODULE, directory, latch, config.token_label, config.token_serial)


def _by_serial(token: SoftToken, config: Pkcs11Config) -> Pkcs11Config:
    return replace(config, token_label=None, token_serial=token.serial)


def _held(stem: str) -> bool:
    """Whether someone holds the login lock ``stem`` names (this process included: an
    ``flock`` on another open of the file conflicts with one the login holds)."""
    fd = os.open(f"{stem}.login.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def _restarts_opening(
    token: SoftToken, config: Pkcs11Config, monkeypatch: pytest.MonkeyPatch
) -> list[tuple[bool, bool]]:
    """Open a backend with ``config`` (label only); for each module restart it made,
    whether the label's login lock and the token's own were held then."""
    label = _locks(config).stem
    own = _locks(_by_serial(token, config)).stem
    assert label != own  # else the test would tell nothing
    original = Cryptoki.reinitialize
    seen: list[tuple[bool, bool]] = []

    def reinitialize(module: Cryptoki) -> None:
        seen.append((_held(label), _held(own)))
        original(module)

    with monkeypatch.context() as patched:
        patched.setattr(Cryptoki, "reinitialize", reinitialize)
        Pkcs11Backend(config).close()
    return seen


@pytest.mark.integration
def test_a_restart_under_the_labels_lock_alone_is_made_again_inside_the_tokens(
    token: SoftToken, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = cryptoki(SOFTHSM_MODULE)
    with module.lock:
        module.reinitialize()  # this process's view of the token, taken now
    # The PIN file written after that view: the first login restarts the module before it
    # offers the PIN, under the label's lock, the token not yet known.
    pin_file = tmp_path / "token.pin"
    write_pin(pin_file, token.pin)
    config = replace(token.config(), pin_source=PinSource("file", str(pin_file)))
    assert _restarts_opening(token, config, monkeypatch) == [
        (True, False),  # under the label's lock, before the token was found
        (True, True),  # again once its own lock is held too: the view the login uses
    ]


@pytest.mark.integration
def test_a_first_login_that_restarted_nothing_restarts_nothing_inside_the_tokens_lock(
    token: SoftToken, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No PIN file whose times could call for a restart, and a view nothing marked stale.
    config = token.env_config(monkeypatch, PIN_VARIABLE, token.pin)
    module = cryptoki(SOFTHSM_MODULE)
    with module.lock:
        module.reinitialize()
    # The locks are renamed all the same, but a restart would log every other backend of
    # the process out for nothing: the view was taken before either lock, by no refusal.
    assert _restarts_opening(token, config, monkeypatch) == []


@pytest.mark.integration
def test_a_pin_refused_at_a_label_only_first_login_marks_the_tokens_own_name_stale(
    token: SoftToken, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No file whose times could say the token changed: only the module's stale mark does.
    config = token.env_config(monkeypatch, PIN_VARIABLE, NEW_PIN)
    with pytest.raises(PermanentBackendError, match=r"login refused \(PinIncorrect\)"):
        Pkcs11Backend(config)
    module = cryptoki(SOFTHSM_MODULE)
    by_serial = _by_serial(token, config)
    own = _locks(by_serial)
    with module.lock:
        latch = PinLatch(by_serial.pin_source)
        assert view_may_be_stale(module, own.key, latch, ABSENT_RESCAN_SECONDS)
    # The security officer resets the user PIN to the refused one; a backend naming the
    # token by serial (its own name from the start) must restart the module to see it.
    run_tool(
        "pkcs11-tool", "--module", SOFTHSM_MODULE, "--token-label", token.label,
        "--login", "--login-type", "so", "--so-pin", SO_PIN, "--init-pin", "--pin", NEW_PIN,
    )  # fmt: skip
    before = module.generation
    backend = Pkcs11Backend(by_serial)
    try:
        backend.check_health()
    finally:
        backend.close()
    assert module.generation - before == 1  # one restart, before the PIN was offered
