"""A PIN that cannot be the one meant is refused before the token sees it.

A leading byte-order mark, a second line, a stray carriage return or a Unicode line or
paragraph separator: each would be offered to the token as part of the PIN and refused as "PIN
incorrect", a wrong try that a real HSM counts towards locking the user PIN. setpay names
the problem instead, offers nothing, latches nothing, and logs in as soon as the file is
mended. Anything else is offered as typed (a tab, a form feed, NEL included: SoftHSM
takes them in a PIN): setpay checks the file's shape, not what a PIN may hold.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from hsm.errors import PermanentBackendError
from hsm.pkcs11 import Pkcs11Backend
from hsm.token_login import LoginCalls, pin_problem

from .testbed import SoftHsm, SoftToken

BOM = "a byte-order mark"
LINE = "holds a line break (a PIN file holds one line, ended by one LF or CRLF or by nothing)"


def _write(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


@pytest.mark.parametrize(
    ("shape", "problem"),
    [
        (b"\xef\xbb\xbf%s\n", BOM),
        (b"\xef\xbb\xbf%s\r\n", BOM),
        (b"%s\n\n", LINE),  # one line end is dropped, the second stays
        (b"%s\r\r\n", LINE),
        (b"%s\r", LINE),  # an old Mac line end
        (b"%s\n2nd line\n", LINE),
        (b"%s\r\x0c", LINE),  # a form feed is the PIN's own, the carriage return is not
        (b"%s\xe2\x80\xa812\n", LINE),  # U+2028 inside the line
        (b"%s\xe2\x80\xa8", LINE),  # U+2028 LINE SEPARATOR
        (b"%s\xe2\x80\xa9\n", LINE),  # U+2029 PARAGRAPH SEPARATOR
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
    assert message.startswith("the PIN from env:SETPAY_TEST_SHAPED_PIN " + LINE)
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


def test_pin_with_a_tab_is_offered_as_typed(softhsm: SoftHsm) -> None:
    made = softhsm.init_token(pin="1234\t5678")  # SoftHSM takes it, and so does C_Login
    try:
        Pkcs11Backend(made.config()).close()  # logged in: no PIN policy in the way
    finally:
        shutil.rmtree(made.directory, ignore_errors=True)


#: What ``str.splitlines`` also breaks on but no editor ends a line with: the PIN's own.
NOT_LINE_ENDS = ["\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85"]


@pytest.mark.parametrize("control", NOT_LINE_ENDS)
def test_pin_with_a_control_character_splitlines_breaks_on_logs_in(
    softhsm: SoftHsm, control: str
) -> None:
    made = softhsm.init_token(pin=f"ab{control}cd12")  # SoftHSM takes it in a PIN
    try:
        Pkcs11Backend(made.config()).close()  # read from its file, offered, logged in
    finally:
        shutil.rmtree(made.directory, ignore_errors=True)


@pytest.mark.parametrize("where", ["start", "middle", "end"])
@pytest.mark.parametrize("control", NOT_LINE_ENDS)
def test_no_line_end_of_a_file_is_the_pin_s_own_wherever_it_is(control: str, where: str) -> None:
    pin = {"start": control + "1234", "middle": "12" + control + "34"}.get(where, "1234" + control)
    assert pin_problem(pin) is None


@pytest.mark.parametrize(
    "pin",
    ["1234\t5678", "\t1234", "1234\x7f", "1234\x1b", "\u00a01234", "12\ufeff34", "1234\u200b"],
)
def test_only_a_file_s_marks_are_refused_not_unusual_characters(pin: str) -> None:
    assert pin_problem(pin) is None


@pytest.mark.parametrize("pin", ["\ufeff1234", "\ufeff"])
def test_a_leading_byte_order_mark_is_refused(pin: str) -> None:
    assert pin_problem(pin) == (
        "starts with a byte-order mark (save the file as plain UTF-8, without one)"
    )


@pytest.mark.parametrize("line_break", ["\n", "\r", "\u2028", "\u2029"])
@pytest.mark.parametrize("where", ["start", "middle", "end"])
def test_every_line_break_is_refused_wherever_it_is(line_break: str, where: str) -> None:
    pin = {"start": line_break + "1234", "middle": "12" + line_break + "34"}.get(
        where, "1234" + line_break
    )
    assert pin_problem(pin) == LINE


def test_a_line_break_s_message_names_what_a_file_may_end_with() -> None:
    """A lone trailing carriage return is refused, and the message says so: only LF or
    CRLF may end the file (dropped before the PIN is looked at)."""
    assert pin_problem("1234\r") == LINE
    assert pin_problem("1234\r\n") == LINE  # the file's own end is dropped before
