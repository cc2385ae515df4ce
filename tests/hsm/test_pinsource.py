"""Reading a PIN or passphrase: every refusal is permanent, named, and shows no secret."""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from hsm.errors import PermanentBackendError
from hsm.pinsource import MAX_SECRET_FILE_BYTES, PinSource
from hsm.pkcs11 import Pkcs11Backend
from hsm.software import SoftwareBackend

from .testbed import SoftToken

SECRET = "s3cret-pin-from-file"


def _secret_file(path: Path, data: bytes, mode: int = 0o600) -> Path:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    path.chmod(mode)
    return path


@pytest.mark.parametrize(
    ("data", "read"),
    [
        (SECRET.encode(), SECRET),
        (SECRET.encode() + b"\n", SECRET),
        (SECRET.encode() + b"\r\n", SECRET),
        (SECRET.encode() + b"\n\n", SECRET + "\n"),  # only one trailing newline is dropped
        ("pïn-ünicode".encode(), "pïn-ünicode"),
        (b"x" * MAX_SECRET_FILE_BYTES, "x" * MAX_SECRET_FILE_BYTES),
    ],
)
def test_secret_file_is_read_as_written(tmp_path: Path, data: bytes, read: str) -> None:
    assert PinSource("file", str(_secret_file(tmp_path / "pin", data))).read() == read


@pytest.mark.parametrize(
    ("data", "mode", "problem"),
    [
        (b"", 0o600, "is empty"),
        (b"\n", 0o600, "is empty"),
        (b"x" * (MAX_SECRET_FILE_BYTES + 1), 0o600, "is larger than 4096 bytes"),
        (b"\xff\xfe" + SECRET.encode(), 0o600, "is not UTF-8 text"),
        (SECRET.encode(), 0o640, r"is accessible to group or others \(mode 0640\): chmod 600"),
        (SECRET.encode(), 0o604, r"is accessible to group or others \(mode 0604\)"),
        (SECRET.encode(), 0o620, r"is accessible to group or others \(mode 0620\)"),
    ],
    ids=[
        "empty",
        "newline-only",
        "too-large",
        "not-utf8",
        "group-read",
        "world-read",
        "group-write",
    ],
)
def test_unusable_secret_file_is_refused(
    tmp_path: Path, data: bytes, mode: int, problem: str
) -> None:
    path = _secret_file(tmp_path / "pin", data, mode)
    with pytest.raises(
        PermanentBackendError, match=f"secret file {re.escape(str(path))} {problem}"
    ) as caught:
        PinSource("file", str(path)).read()
    assert SECRET not in str(caught.value)


def test_secret_file_that_is_not_utf8_is_refused_without_showing_it(tmp_path: Path) -> None:
    # Written in Latin-1: one byte that is not UTF-8, the rest of the secret around it.
    path = _secret_file(tmp_path / "pin", NOT_UTF8_SECRET.encode("utf-8", "surrogateescape"))
    with pytest.raises(PermanentBackendError, match="is not UTF-8 text") as caught:
        PinSource("file", str(path)).read()
    _assert_hides_the_secret(caught.value)


def test_missing_secret_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(PermanentBackendError, match=r"cannot read secret file .*: No such file"):
        PinSource("file", str(tmp_path / "absent.pin")).read()


def test_directory_as_secret_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(
        PermanentBackendError, match=r"secret file .* is not a regular file \(a directory\)"
    ):
        PinSource("file", str(tmp_path)).read()


def _refused_aside(call: Callable[[], object], within: float, fifo: Path) -> BaseException:
    """What ``call`` raised, run in a thread; the test fails if it still waits after
    ``within`` seconds (``fifo`` is then opened for writing, to let it end)."""
    outcome: list[object] = []

    def run() -> None:
        try:
            outcome.append(call())
        except BaseException as exc:  # handed to the test
            outcome.append(exc)

    caller = threading.Thread(target=run, daemon=True)
    caller.start()
    caller.join(within)
    if caller.is_alive():
        with open(fifo, "wb"):  # the waiting open returns, and its read finds nothing
            pass
        caller.join(within)
        pytest.fail(f"still waiting for {fifo} after {within} s")
    [refusal] = outcome
    assert isinstance(refusal, PermanentBackendError), refusal
    return refusal


def test_fifo_as_secret_file_is_refused_not_waited_for(tmp_path: Path) -> None:
    # Before, open() waited for a writer for ever (a login held its token's locks so).
    fifo = tmp_path / "pin.fifo"
    os.mkfifo(fifo, 0o600)
    refusal = _refused_aside(PinSource("file", str(fifo)).read, 3, fifo)
    assert str(refusal) == f"secret file {fifo} is not a regular file (a FIFO)"


def test_device_as_secret_file_is_refused() -> None:
    with pytest.raises(PermanentBackendError, match=r"is not a regular file \(a device\)"):
        PinSource("file", os.devnull).read()


@pytest.mark.parametrize("value", [None, ""])
def test_missing_or_empty_secret_variable_is_refused(
    monkeypatch: pytest.MonkeyPatch, value: str | None
) -> None:
    if value is None:
        monkeypatch.delenv("SETPAY_TEST_ABSENT_PIN", raising=False)
    else:
        monkeypatch.setenv("SETPAY_TEST_ABSENT_PIN", value)
    with pytest.raises(PermanentBackendError, match="SETPAY_TEST_ABSENT_PIN is not set"):
        PinSource("env", "SETPAY_TEST_ABSENT_PIN").read()


def test_secret_variable_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SETPAY_TEST_PIN", SECRET)
    assert PinSource("env", "SETPAY_TEST_PIN").read() == SECRET
    assert SECRET not in repr(PinSource("env", "SETPAY_TEST_PIN"))


@pytest.mark.integration
def test_group_readable_pin_file_stops_a_token_login(token: SoftToken, tmp_path: Path) -> None:
    # The right PIN, exposed: refused before any C_Login rather than used.
    exposed = _secret_file(tmp_path / "exposed.pin", token.pin.encode() + b"\n", 0o640)
    with pytest.raises(PermanentBackendError, match="accessible to group or others") as caught:
        Pkcs11Backend(replace(token.config(), pin_source=PinSource("file", str(exposed))))
    assert token.pin not in str(caught.value)


@pytest.mark.integration
def test_fifo_pin_file_stops_its_login_and_holds_no_other_login(
    token: SoftToken, tmp_path: Path
) -> None:
    # Before, the login waited in open() for ever with the token's login lock file held:
    # every other process's login on the token then failed after 30 s.
    fifo = tmp_path / "pin.fifo"
    os.mkfifo(fifo, 0o600)
    config = replace(token.config(), pin_source=PinSource("file", str(fifo)))
    refusal = _refused_aside(lambda: Pkcs11Backend(config), 10, fifo)
    assert "is not a regular file (a FIFO)" in str(refusal)
    started = time.monotonic()
    Pkcs11Backend(token.config()).close()
    assert time.monotonic() - started < 10


# What the environment holds for a secret written in Latin-1: its undecodable byte
# arrives in Python as a lone surrogate.
NOT_UTF8_SECRET = "s3cret-p\udce9n"


def _assert_hides_the_secret(error: BaseException) -> None:
    """Neither the error nor anything chained to it carries the secret."""
    seen: BaseException | None = error
    while seen is not None:
        assert "s3cret" not in str(seen) and "s3cret" not in repr(seen)
        seen = seen.__cause__ or seen.__context__


def test_secret_variable_that_is_not_utf8_is_refused_without_showing_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SETPAY_TEST_PIN", NOT_UTF8_SECRET)
    with pytest.raises(PermanentBackendError, match="SETPAY_TEST_PIN is not UTF-8") as caught:
        PinSource("env", "SETPAY_TEST_PIN").read()
    _assert_hides_the_secret(caught.value)


def test_keystore_passphrase_that_is_not_utf8_is_refused_without_showing_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("SETPAY_TEST_PASSPHRASE", NOT_UTF8_SECRET)
    source = PinSource("env", "SETPAY_TEST_PASSPHRASE")
    with pytest.raises(PermanentBackendError, match="not UTF-8") as caught:
        SoftwareBackend.open(tmp_path / "keystore", source)
    _assert_hides_the_secret(caught.value)
    # Given as text, not through a source, it is refused the same way.
    with pytest.raises(PermanentBackendError, match="passphrase is not UTF-8") as caught:
        SoftwareBackend.open(tmp_path / "keystore", NOT_UTF8_SECRET)
    _assert_hides_the_secret(caught.value)


@pytest.mark.integration
def test_pin_variable_that_is_not_utf8_stops_a_token_login(
    token: SoftToken, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = token.env_config(monkeypatch, "SETPAY_TEST_PIN", NOT_UTF8_SECRET)
    with pytest.raises(PermanentBackendError, match="SETPAY_TEST_PIN is not UTF-8") as caught:
        Pkcs11Backend(config)
    _assert_hides_the_secret(caught.value)
