"""The outside commands the deployment tests run: the provisioning script, setpay,
pkcs11-tool and openssl. A missing tool fails the test loudly (never a skip)."""

from __future__ import annotations

import itertools
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.hsm.testbed import SOFTHSM_MODULE, SoftHsm

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "deploy" / "provision-token.sh"

# Generous bounds for one outside command: an RSA bank on SoftHSM takes ~5 s here.
COMMAND_TIMEOUT_SECONDS = 120

# What the script prints once the token exists.
_CREATED = re.compile(r"token (\S+) \(serial ([0-9a-f]+)\) created in ")


def venv_bin() -> Path:
    """The directory of the running interpreter, where ``setpay`` is installed."""
    return Path(sys.executable).parent


def command_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for outside commands: ours (SOFTHSM2_CONF included), with this
    virtualenv's ``setpay`` first on PATH."""
    env = dict(os.environ)
    env["PATH"] = f"{venv_bin()}{os.pathsep}{env.get('PATH', '')}"
    env.update(extra or {})
    return env


def run(
    argv: list[str], *, env: Mapping[str, str] | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run one outside command; fail the test if it is missing (or fails, with ``check``)."""
    if shutil.which(argv[0], path=(env or command_env()).get("PATH")) is None:
        pytest.fail(f"{argv[0]} is not installed (Debian: softhsm2, opensc, openssl)")
    done = subprocess.run(
        argv,
        env=dict(env or command_env()),
        capture_output=True,
        text=True,
        check=False,
        timeout=COMMAND_TIMEOUT_SECONDS,
        stdin=subprocess.DEVNULL,
    )
    if check and done.returncode != 0:
        pytest.fail(f"{' '.join(argv[:3])} exited {done.returncode}: {done.stdout}{done.stderr}")
    return done


def provision(
    *arguments: str, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run deploy/provision-token.sh (status not checked: tests look at it)."""
    return run(["bash", str(SCRIPT), *arguments], env=env, check=False)


@dataclass(frozen=True)
class ProvisionedToken:
    """A token the provisioning script made, and the files it was made with."""

    label: str
    serial: str
    pin_file: Path
    so_pin_file: Path
    directory: Path

    def uri(self) -> str:
        """The key URI the script hands to ``setpay init``."""
        return f"pkcs11:module={SOFTHSM_MODULE};token={self.label};pin-source=file:{self.pin_file}"


def created_token(
    softhsm: SoftHsm, output: str, pin_file: Path, so_pin_file: Path
) -> ProvisionedToken:
    """The token a successful script run reports, found in the token directory."""
    match = _CREATED.search(output)
    assert match is not None, output
    label, serial = match.groups()
    # SoftHSM names a token's directory after a UUID ending in the token's serial.
    (directory,) = [d for d in softhsm.tokens.iterdir() if d.name.replace("-", "").endswith(serial)]
    return ProvisionedToken(label, serial, pin_file, so_pin_file, directory)


def token_labels() -> list[str]:
    """Labels of every initialized token, as pkcs11-tool lists them."""
    listing = run(["pkcs11-tool", "--module", SOFTHSM_MODULE, "--list-slots"]).stdout
    return re.findall(r"^\s*token label\s*:\s*(\S+)\s*$", listing, flags=re.MULTILINE)


def token_objects(token: ProvisionedToken, *argv: str) -> list[dict[str, str]]:
    """``pkcs11-tool --list-objects`` after logging in (PIN through env:, never argv),
    one dict per object with its ``type`` line and its ``name: value`` lines."""
    env = command_env({"SETPAY_TEST_PIN": read_pin(token.pin_file)})
    listing = run(
        ["pkcs11-tool", "--module", SOFTHSM_MODULE, "--token-label", token.label, "--login",
         "--pin", "env:SETPAY_TEST_PIN", "--list-objects", *argv],
        env=env,
    ).stdout  # fmt: skip
    objects: list[dict[str, str]] = []
    for line in listing.splitlines():
        if line and not line.startswith(" "):
            objects.append({"type": line.strip()})
        elif ":" in line and objects:
            name, _, value = line.strip().partition(":")
            objects[-1][name.strip()] = value.strip().strip("'")
    return objects


def read_pin(path: Path) -> str:
    """A PIN file's PIN (one trailing newline dropped, as setpay reads it)."""
    return path.read_text().removesuffix("\n")


def openssl(*argv: str) -> str:
    """Run openssl (exit status not checked); its stdout and stderr together."""
    done = run(["openssl", *argv], check=False)
    return done.stdout + done.stderr


@dataclass(frozen=True)
class ProvisionedBank:
    """A bank that the provisioning script made on a new token."""

    token: ProvisionedToken
    directory: Path
    profile: str


_banks = itertools.count(1)


def provision_bank(softhsm: SoftHsm, root: Path, profile: str) -> ProvisionedBank:
    """Run the script as the image's first start would: new PIN files, a new token, and
    ``setpay init`` of a bank in ``root/bank`` with every key on the token."""
    label = f"deploy-{profile}-{os.getpid()}-{next(_banks)}"
    secrets = root / "etc"
    secrets.mkdir(mode=0o700)
    pin_file, so_pin_file = secrets / "token.pin", secrets / "so.pin"
    directory = root / "bank"
    done = provision(
        "--label", label, "--pin-file", str(pin_file), "--so-pin-file", str(so_pin_file),
        "--module", SOFTHSM_MODULE, "--bank", str(directory), "--profile", profile,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    token = created_token(softhsm, done.stdout, pin_file, so_pin_file)
    return ProvisionedBank(token, directory, profile)
