"""SoftHSM tokens and backend factories for the key-backend tests (no fixtures here)."""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest

from hsm.base import KeyBackend
from hsm.observer import Observer
from hsm.pinsource import PinSource
from hsm.pkcs11 import Pkcs11Config

SOFTHSM_MODULE = "/usr/lib/softhsm/libsofthsm2.so"
# What the PKCS#11 tests sign.
DATA = b"payment instructions to be signed"
SO_PIN = "so-secret-1234"
USER_PIN = "user-pin-4321"
KEYSTORE_PASSPHRASE = "correct horse battery staple"
ROOT_ENV = "SETPAY_TEST_SOFTHSM_ROOT"

_labels = itertools.count(1)


@dataclass(frozen=True)
class SoftToken:
    """A SoftHSM token made for one test."""

    label: str
    serial: str
    pin: str
    pin_file: Path
    directory: Path
    lock_dir: Path

    def config(self) -> Pkcs11Config:
        """A backend configuration for this token (PIN from its file)."""
        return Pkcs11Config(
            module=SOFTHSM_MODULE,
            pin_source=PinSource("file", str(self.pin_file)),
            token_label=self.label,
            lock_dir=str(self.lock_dir),
        )

    def env_config(self, monkeypatch: pytest.MonkeyPatch, variable: str, pin: str) -> Pkcs11Config:
        """This token's configuration with its PIN read from the environment variable
        ``variable``, set to ``pin`` for the test."""
        monkeypatch.setenv(variable, pin)
        return replace(self.config(), pin_source=PinSource("env", variable))

    def uri(self) -> str:
        """The key URI of this token."""
        return f"pkcs11:module={SOFTHSM_MODULE};token={self.label};pin-source=file:{self.pin_file}"


@dataclass(frozen=True)
class CountingPinSource(PinSource):
    """A real PIN source that counts how often the PIN is read."""

    reads: list[str] = field(default_factory=list, compare=False)

    def read(self) -> str:
        """Read the PIN, noting the read."""
        self.reads.append("read")
        return super().read()


class SoftHsm:
    """A SoftHSM configuration with its own token directory."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.tokens = root / "tokens"
        self.lock_dir = root / "locks"

    def init_token(self, pin: str = USER_PIN) -> SoftToken:
        """Initialize a fresh token with a unique label."""
        label = f"setpay-test-{os.getpid()}-{next(_labels)}"
        before = set(os.listdir(self.tokens))
        _run(
            [
                "softhsm2-util",
                "--init-token",
                "--free",
                "--label",
                label,
                "--so-pin",
                SO_PIN,
                "--pin",
                pin,
            ]
        )
        (created,) = set(os.listdir(self.tokens)) - before
        pin_file = self.root / f"{label}.pin"
        fd = os.open(pin_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(pin + "\n")
        # SoftHSM names a token's directory after a UUID whose last 16 hex digits are
        # the token's serial number.
        serial = created.replace("-", "")[-16:]
        return SoftToken(label, serial, pin, pin_file, self.tokens / created, self.lock_dir)


def session_softhsm(tmp_path_factory: pytest.TempPathFactory) -> SoftHsm:
    """The test session's SoftHSM, created on first use (shared via ROOT_ENV).

    SoftHSM reads SOFTHSM2_CONF when the module initializes, so a process must keep one
    configuration: the first fixture to ask creates it, later ones reuse it.
    """
    if not os.path.exists(SOFTHSM_MODULE):
        pytest.fail(f"SoftHSM module {SOFTHSM_MODULE} missing: apt-get install softhsm2")
    existing = os.environ.get(ROOT_ENV)
    if existing:
        return SoftHsm(Path(existing))
    root = tmp_path_factory.mktemp("softhsm")
    (root / "tokens").mkdir()
    (root / "locks").mkdir(mode=0o700)  # lock directories must be this user's alone
    conf = root / "softhsm2.conf"
    conf.write_text(
        f"directories.tokendir = {root / 'tokens'}\nobjectstore.backend = file\nlog.level = ERROR\n"
    )
    os.environ["SOFTHSM2_CONF"] = str(conf)
    os.environ[ROOT_ENV] = str(root)
    return SoftHsm(root)


def _run(argv: list[str]) -> str:
    if shutil.which(argv[0]) is None:
        pytest.fail(f"{argv[0]} is not installed: apt-get install softhsm2 opensc")
    done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=60)
    if done.returncode != 0:
        pytest.fail(f"{argv[0]} failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout


@dataclass
class BackendFactory:
    """Opens (and reopens) one kind of backend over the same storage."""

    kind: str
    opener: Callable[[Observer | None], KeyBackend]

    def open(self, observer: Observer | None = None) -> KeyBackend:
        """A new backend object over the factory's storage."""
        return self.opener(observer)


def run_tool(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run an outside tool (openssl, pkcs11-tool); fail the test loudly when it is missing."""
    if shutil.which(argv[0]) is None:
        pytest.fail(f"{argv[0]} is not installed (apt-get install opensc openssl)")
    done = subprocess.run(list(argv), capture_output=True, text=True, check=False, timeout=60)
    if check and done.returncode != 0:
        pytest.fail(f"{' '.join(argv[:3])} failed: {done.stdout} {done.stderr}")
    return done


def pkcs11_tool(
    token: SoftToken, *argv: str, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run ``pkcs11-tool`` logged in to ``token``."""
    return run_tool(
        "pkcs11-tool",
        "--module",
        SOFTHSM_MODULE,
        "--token-label",
        token.label,
        "--login",
        "--pin",
        token.pin,
        *argv,
        check=check,
    )
