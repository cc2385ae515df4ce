"""A PIN that cannot be the one meant is refused before the token sees it.

A byte-order mark, a second line, a stray carriage return, a tab: each would be offered
to the token as part of the PIN and refused as "PIN incorrect", a wrong try that a real
HSM counts towards locking the user PIN. setpay names the problem instead, offers
nothing, latches nothing, and logs in as soon as the file is mended.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from hsm.errors import PermanentBackendError
from hsm.pkcs11 import Pkcs11Backend
from hsm.token_login import LoginCalls

from .testbed import SoftHsm, SoftToken

BOM = "a byte-order mark"
CONTROL = "a line break or another control character"


def _write(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


@pytest.mark.parametrize(
    ("shape", "problem"),
    [
        (b"\xef\xbb\xbf%s\n", BOM),
        (b"\xef\xbb\xbf%s\r\n", BOM),
        (b"%s\n\n", CONTROL),  # one line end is dropped, the second stays
        (b"%s\r\r\n", CONTROL),
        (b"%s\r", CONTROL),  # an old Mac line end
        (b"%s\n2nd line\n", CONTROL),
        (b"%s\t\n", CONTROL),
        (b"%s\x7f", CONTROL),
    ],
)
def test_pin_file_of_the_wrong_shape_is_refused_unoffered(
    token: SoftToken, monkeypatch: pytest.MonkeyPatch, shape: bytes, problem: str
) -> None:
    offered: list[str] = []
    log_in = LoginCalls.log_in

    def counted(self: LoginCalls, session: object, pin: str) -> None:
        offered.append("C_Login")
        log_in(self, session, pin)

    monkeypatch.setattr(LoginCalls, "log_in", counted)
    _write(token.pin_file, shape.replace(b"%s", token.pin.encode()))
    with pytest.raises(PermanentBackendError) as caught:
        Pkcs11Backend(token.config())
    message = str(caught.value)
    assert message.startswith(f"the PIN from file:{token.pin_file} ")
    assert message.endswith(": not offered to the token")
    assert problem in message
    assert token.pin not in message and "login refused" not in message
    assert caught.value.__cause__ is None and caught.value.__context__ is None
    assert offered == []  # C_Login never called: no wrong try counted by the token
    assert not list(token.lock_dir.glob("*.refused"))  # nothing told to other processes
    # Mended: used at once, nothing latched against the file.
    _write(token.pin_file, token.pin.encode() + b"\n")
    Pkcs11Backend(token.config()).close()
    assert offered == ["C_Login"]


def test_pin_from_the_environment_with_a_line_end_is_refused(
    token: SoftToken, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = token.env_config(monkeypatch, "SETPAY_TEST_SHAPED_PIN", token.pin + "\n")
    with pytest.raises(PermanentBackendError) as caught:
        Pkcs11Backend(config)
    message = str(caught.value)
    assert message.startswith("the PIN from env:SETPAY_TEST_SHAPED_PIN holds " + CONTROL)
    assert message.endswith(": not offered to the token")
    assert token.pin not in message
    monkeypatch.setenv("SETPAY_TEST_SHAPED_PIN", token.pin)
    Pkcs11Backend(config).close()


def test_pin_with_spaces_and_other_printable_text_is_offered(softhsm: SoftHsm) -> None:
    made = softhsm.init_token(pin="user pin ünïcode 4321")
    try:
        Pkcs11Backend(made.config()).close()  # logged in: the PIN as typed
    finally:
        shutil.rmtree(made.directory, ignore_errors=True)


def test_wrong_but_well_shaped_pin_is_still_the_token_s_to_refuse(token: SoftToken) -> None:
    _write(token.pin_file, b"not-the-pin\n")
    with pytest.raises(PermanentBackendError, match=r"login refused \(PinIncorrect\)"):
        Pkcs11Backend(token.config())
