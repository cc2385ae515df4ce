"""deploy/provision-token.sh on this machine's SoftHSM (a temporary token directory).

The script is what the image runs to make its token; here it runs against the test
session's SOFTHSM2_CONF with the real softhsm2-util, pkcs11-tool and setpay.
"""

from __future__ import annotations

import os
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.hsm.pin_file_support import write_pin
from tests.hsm.testbed import SOFTHSM_MODULE, SoftHsm

from .commands import (
    command_env,
    created_token,
    provision,
    read_pin,
    run,
    token_labels,
)

# What the script writes into a PIN file it creates: 32 base64url characters and "\n".
GENERATED_PIN_LENGTH = 32


@pytest.fixture
def tokens(softhsm: SoftHsm) -> Iterator[SoftHsm]:
    """The session's SoftHSM; tokens a test makes are removed after it."""
    before = set(softhsm.tokens.iterdir())
    yield softhsm
    for made in set(softhsm.tokens.iterdir()) - before:
        shutil.rmtree(made, ignore_errors=True)


def _label(name: str) -> str:
    return f"{name}-{os.getpid()}"


def _pin_files(tmp_path: Path) -> tuple[Path, Path]:
    secrets = tmp_path / "etc"
    secrets.mkdir(mode=0o700, exist_ok=True)
    return secrets / "token.pin", secrets / "so.pin"


def _arguments(label: str, pin_file: Path, so_pin_file: Path, *extra: str) -> list[str]:
    return [
        "--label", label, "--pin-file", str(pin_file), "--so-pin-file", str(so_pin_file),
        "--module", SOFTHSM_MODULE, *extra,
    ]  # fmt: skip


def _so_login(label: str, so_pin: str) -> str:
    """Log in as the token's security officer; "ok", or pkcs11-tool's complaint."""
    env = command_env({"SETPAY_TEST_SO_PIN": so_pin})
    done = run(
        ["pkcs11-tool", "--module", SOFTHSM_MODULE, "--token-label", label, "--session-rw",
         "--login", "--login-type", "so", "--so-pin", "env:SETPAY_TEST_SO_PIN", "--list-objects"],
        env=env, check=False,
    )  # fmt: skip
    return "ok" if done.returncode == 0 else done.stderr


@pytest.mark.integration
def test_makes_a_token_and_random_pin_files(tokens: SoftHsm, tmp_path: Path) -> None:
    pin_file, so_pin_file = _pin_files(tmp_path)
    label = _label("fresh")
    done = provision(*_arguments(label, pin_file, so_pin_file))
    assert done.returncode == 0, done.stderr
    token = created_token(tokens, done.stdout, pin_file, so_pin_file)
    assert token.label == label and token_labels().count(label) == 1
    pins = []
    for path in (pin_file, so_pin_file):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        pin = read_pin(path)
        assert len(pin) == GENERATED_PIN_LENGTH and pin.isascii() and "\n" not in pin
        assert pin not in done.stdout + done.stderr
        pins.append(pin)
    assert pins[0] != pins[1]
    # The user PIN opens the token for setpay (an empty token: only the header row).
    listing = run(["setpay", "keys", "list", "--keys", token.uri()]).stdout
    assert listing.split() == ["LABEL", "VERSION", "USAGE", "ALGORITHM", "KEM", "SHA-256", "OF",
                               "PUBLIC", "KEY"]  # fmt: skip
    # The SO PIN is the token's SO PIN, and another one is refused.
    assert _so_login(label, pins[1]) == "ok"
    assert "CKR_PIN_INCORRECT" in _so_login(label, pins[1] + "x")


@pytest.mark.integration
def test_uses_existing_pin_files_without_changing_them(tokens: SoftHsm, tmp_path: Path) -> None:
    pin_file, so_pin_file = _pin_files(tmp_path)
    write_pin(pin_file, "operator chosen user pin")
    write_pin(so_pin_file, "operator chosen so pin")
    label = _label("given")
    done = provision(*_arguments(label, pin_file, so_pin_file))
    assert done.returncode == 0, done.stderr
    assert "created PIN file" not in done.stdout
    assert read_pin(pin_file) == "operator chosen user pin"
    token = created_token(tokens, done.stdout, pin_file, so_pin_file)
    run(["setpay", "keys", "list", "--keys", token.uri()])
    assert _so_login(label, "operator chosen so pin") == "ok"


@pytest.mark.integration
def test_pins_never_reach_a_command_line(tokens: SoftHsm, tmp_path: Path) -> None:
    # Each tool the script runs is wrapped by one that records its arguments (what ps and
    # /proc/PID/cmdline show every user) and then runs the real tool.
    spies, log = tmp_path / "spies", tmp_path / "argv.log"
    spies.mkdir()
    for tool in ("pkcs11-tool", "softhsm2-util", "setpay"):
        real = shutil.which(tool, path=command_env()["PATH"])
        if real is None:
            pytest.fail(f"{tool} is not installed")
        spy = spies / tool
        spy.write_text(f'#!/bin/sh\nprintf "%s\\n" "{tool} $*" >> "{log}"\nexec "{real}" "$@"\n')
        spy.chmod(0o755)
    env = command_env()
    env["PATH"] = f"{spies}{os.pathsep}{env['PATH']}"
    pin_file, so_pin_file = _pin_files(tmp_path)
    done = provision(
        *_arguments(_label("argv"), pin_file, so_pin_file, "--bank", str(tmp_path / "bank")),
        env=env,
    )
    assert done.returncode == 0, done.stderr
    calls = log.read_text().splitlines()
    assert any(call.startswith("pkcs11-tool ") and "--init-token" in call for call in calls)
    assert any(call.startswith("pkcs11-tool ") and "--init-pin" in call for call in calls)
    assert any(call.startswith("setpay init ") for call in calls)
    for pin in (read_pin(pin_file), read_pin(so_pin_file)):
        assert not [call for call in calls if pin in call]
        assert pin not in done.stdout + done.stderr
        assert pin not in (tmp_path / "bank" / "setpay.toml").read_text()


@pytest.mark.integration
def test_refuses_a_label_that_is_taken(tokens: SoftHsm, tmp_path: Path) -> None:
    pin_file, so_pin_file = _pin_files(tmp_path)
    label = _label("taken")
    assert provision(*_arguments(label, pin_file, so_pin_file)).returncode == 0
    other = tmp_path / "other"
    other.mkdir(mode=0o700)
    done = provision(*_arguments(label, other / "token.pin", other / "so.pin"))
    assert done.returncode == 1
    assert f"a token labelled {label} already exists" in done.stderr
    assert token_labels().count(label) == 1
    # Refused before anything was written.
    assert not list(other.iterdir())


@pytest.mark.integration
@pytest.mark.parametrize("mode", [0o640, 0o604])
def test_refuses_a_pin_file_others_can_read(tokens: SoftHsm, tmp_path: Path, mode: int) -> None:
    pin_file, so_pin_file = _pin_files(tmp_path)
    write_pin(pin_file, "a user pin", mode)
    label = _label("exposed")
    done = provision(*_arguments(label, pin_file, so_pin_file))
    assert done.returncode == 1
    assert f"PIN file {pin_file} is accessible to group or others" in done.stderr
    assert "chmod 600" in done.stderr
    assert label not in token_labels()


@pytest.mark.integration
def test_refuses_a_pin_file_of_several_lines(tokens: SoftHsm, tmp_path: Path) -> None:
    pin_file, so_pin_file = _pin_files(tmp_path)
    write_pin(pin_file, "first line\nsecond line")
    done = provision(*_arguments(_label("lines"), pin_file, so_pin_file))
    assert done.returncode == 1
    assert f"PIN file {pin_file} must hold one line" in done.stderr


def _write_bytes(path: Path, data: bytes) -> None:
    with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as handle:
        handle.write(data)


@pytest.mark.integration
def test_reads_a_crlf_pin_file_as_setpay_does(tokens: SoftHsm, tmp_path: Path) -> None:
    # Before, the CR stayed in the PIN given to the token, and setpay, which drops the
    # CRLF, was refused the login on the token just made (PinIncorrect).
    pin_file, so_pin_file = _pin_files(tmp_path)
    _write_bytes(pin_file, b"windows user pin\r\n")
    _write_bytes(so_pin_file, b"windows so pin\r\n")
    label = _label("crlf")
    done = provision(*_arguments(label, pin_file, so_pin_file))
    assert done.returncode == 0, done.stderr
    token = created_token(tokens, done.stdout, pin_file, so_pin_file)
    listed = run(["setpay", "keys", "list", "--keys", token.uri()], check=False)
    assert listed.returncode == 0, listed.stderr
    assert _so_login(label, "windows so pin") == "ok"


@pytest.mark.integration
@pytest.mark.parametrize("data", [b"user pin\r", b"user\rpin\n"], ids=["last", "inside"])
def test_refuses_a_pin_with_a_carriage_return_setpay_would_not_offer(
    tokens: SoftHsm, tmp_path: Path, data: bytes
) -> None:
    pin_file, so_pin_file = _pin_files(tmp_path)
    _write_bytes(pin_file, data)
    label = _label("cr")
    done = provision(*_arguments(label, pin_file, so_pin_file))
    assert done.returncode == 1
    assert f"the PIN in {pin_file} holds a carriage return" in done.stderr
    assert label not in token_labels()


@pytest.mark.integration
def test_refuses_one_file_for_both_pins(tokens: SoftHsm, tmp_path: Path) -> None:
    pin_file, _ = _pin_files(tmp_path)
    done = provision(*_arguments(_label("same"), pin_file, pin_file))
    assert done.returncode == 1
    assert "the user PIN and the SO PIN need different files" in done.stderr
    assert not pin_file.exists()


@pytest.mark.integration
def test_refuses_without_softhsm2_conf(tmp_path: Path) -> None:
    env = command_env()
    del env["SOFTHSM2_CONF"]
    pin_file, so_pin_file = _pin_files(tmp_path)
    done = provision(*_arguments(_label("noconf"), pin_file, so_pin_file), env=env)
    assert done.returncode == 1
    assert "SOFTHSM2_CONF is not set" in done.stderr
    assert not pin_file.exists()


@pytest.mark.integration
def test_refuses_a_bank_directory_in_use_before_making_a_token(
    tokens: SoftHsm, tmp_path: Path
) -> None:
    bank = tmp_path / "bank"
    bank.mkdir()
    (bank / "setpay.toml").write_text("# an existing bank\n")
    pin_file, so_pin_file = _pin_files(tmp_path)
    label = _label("inuse")
    done = provision(*_arguments(label, pin_file, so_pin_file, "--bank", str(bank)))
    assert done.returncode == 1
    assert f"bank directory {bank} exists and is not empty" in done.stderr
    assert label not in token_labels()
    assert [p.name for p in bank.iterdir()] == ["setpay.toml"]


@pytest.mark.integration
def test_refuses_a_pin_path_a_key_uri_cannot_hold(tokens: SoftHsm, tmp_path: Path) -> None:
    # ';' separates key URI attributes: such a path would change what the URI says.
    secrets = tmp_path / "odd;dir"
    secrets.mkdir(mode=0o700)
    label = _label("uripath")
    done = provision(
        *_arguments(label, secrets / "token.pin", secrets / "so.pin", "--bank", str(tmp_path / "b"))
    )
    assert done.returncode == 1
    assert "cannot go into a key URI" in done.stderr
    assert label not in token_labels()
    assert not list(secrets.iterdir())


@pytest.mark.integration
def test_failed_bank_init_deletes_the_new_token(tokens: SoftHsm, tmp_path: Path) -> None:
    # A bank directory under a regular file: setpay init itself fails (NotADirectoryError).
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    pin_file, so_pin_file = _pin_files(tmp_path)
    label = _label("undone")
    before = set(tokens.tokens.iterdir())
    done = provision(*_arguments(label, pin_file, so_pin_file, "--bank", str(blocker / "bank")))
    assert done.returncode == 1
    assert f"token {label} (serial " in done.stdout
    assert f"setpay init failed; token {label} deleted again" in done.stderr
    assert label not in token_labels()
    assert set(tokens.tokens.iterdir()) == before


@pytest.mark.parametrize(
    ("arguments", "status", "message"),
    [
        ([], 2, "usage: provision-token.sh"),
        (["--label", "x", "--pin-file", "p"], 2, "usage: provision-token.sh"),
        (["--label", "x", "--pin-file", "p", "--so-pin-file", "s", "--bogus"], 2, "unknown"),
        (["--label", "has space", "--pin-file", "p", "--so-pin-file", "s"], 1, "token label"),
        (["--label", "x" * 33, "--pin-file", "p", "--so-pin-file", "s"], 1, "token label"),
        (["--label", "x", "--pin-file", "p", "--so-pin-file", "s", "--profile", "dsa"], 1,
         "profile must be ec or rsa"),
    ],
)  # fmt: skip
def test_usage_errors(arguments: list[str], status: int, message: str) -> None:
    done = provision(*arguments)
    assert done.returncode == status
    assert message in done.stderr


@pytest.mark.integration
def test_refuses_a_bank_without_setpay_before_making_a_token(
    tokens: SoftHsm, tmp_path: Path
) -> None:
    pin_file, so_pin_file = _pin_files(tmp_path)
    label = _label("nosetpay")
    env = command_env({"SETPAY": str(tmp_path / "no-such-setpay")})
    done = provision(
        *_arguments(label, pin_file, so_pin_file, "--bank", str(tmp_path / "bank")), env=env
    )
    assert done.returncode == 1
    assert f"cannot run setpay ({tmp_path / 'no-such-setpay'})" in done.stderr
    assert label not in token_labels()
    assert not pin_file.exists() and not so_pin_file.exists()
