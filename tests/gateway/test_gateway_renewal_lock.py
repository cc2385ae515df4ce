"""One renewal of the gateway's keys at a time, and no bank starting during one.

The first renewal runs in a process of its own (this module, run as a program) and is
held between its two renames, the moment a second renewal or a starting bank would do
the most harm, until the test lets it go: each test is deterministic. Before the lock, a
second renewal at that moment went ahead and, with the first, left the bank with the
files and keys of both.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from cli import ca
from gateway import gateway_renewal
from gateway.bank_pki import GATEWAY_KEX_LABEL, GATEWAY_SIG_LABEL
from gateway.config import load
from gateway.gateway_pruning import prune_gateway_keys
from gateway.gateway_renewal import renew_gateway_keys
from gateway.renewal_lock import KEYS_LOCK_FILE, KeysLocked
from setcore.encoding import thumbprint

from .actors import authorize, purchase, register_cardholder, register_merchant
from .renewal_support import key_versions
from .test_gateway_renewal import APPROVED, Served, certificate

# A renewal's process imports the project and makes two keys; a bank starts its worker
# and loads its keys: ample on a loaded 2-core machine.
PROCESS_SECONDS = 120.0
PROJECT = Path(__file__).resolve().parents[2]
PAUSED = "paused"
GO = "go"


@dataclass
class HeldRenewal:
    """A renewal in its own process, held between its renames until ``release``."""

    process: subprocess.Popen[bytes]
    flags: Path
    stderr: Path

    def release(self) -> int:
        """Let it finish; its exit status."""
        (self.flags / GO).touch()
        return self.process.wait(timeout=PROCESS_SECONDS)


def _files(served: Served) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in (served.directory / "certs").iterdir()}


def _wait_for(path: Path, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + PROCESS_SECONDS
    while not path.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"the renewal did not reach its pause:\n{log.read_text()}")
        time.sleep(0.05)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    bank = Served(tmp_path / "bank")
    yield bank
    bank.stop()


@pytest.fixture
def held(served: Served, tmp_path: Path) -> Iterator[HeldRenewal]:
    """The bank stopped, and a renewal of its keys held half installed."""
    served.stop()
    flags = tmp_path / "flags"
    flags.mkdir()
    stderr = tmp_path / "renewal.txt"
    program = [sys.executable, "-m", __name__, str(served.directory / "setpay.toml"), str(flags)]
    with stderr.open("wb") as err:
        process = subprocess.Popen(
            program, env={**os.environ, **served.ports}, cwd=PROJECT, stderr=err
        )
    renewal = HeldRenewal(process, flags, stderr)
    try:
        _wait_for(flags / PAUSED, process, stderr)
        yield renewal
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=PROCESS_SECONDS)


def _ca(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    parser = argparse.ArgumentParser(prog="setpay")
    ca.add_parser(parser.add_subparsers(dest="command", required=True))
    capsys.readouterr()
    code = ca.run(parser.parse_args(["ca", *argv]))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_a_second_renewal_is_refused_while_one_runs(
    served: Served, held: HeldRenewal, capsys: pytest.CaptureFixture[str]
) -> None:
    files, versions = _files(served), key_versions(served.config())
    with pytest.raises(KeysLocked) as refused:
        renew_gateway_keys(served.config())
    assert f"another setpay ca renew-gateway (pid {held.process.pid}) holds the lock" in str(
        refused.value
    )
    code, out, err = _ca(
        ["renew-gateway", "--config", str(served.directory / "setpay.toml")], capsys
    )
    assert code == 1 and out == ""
    assert f"renew-gateway (pid {held.process.pid}) holds the lock on the bank's" in err
    assert "changed nothing" in err
    # Nothing changed: no key version made, no file written or renamed.
    assert _files(served) == files
    assert key_versions(served.config()) == versions

    assert held.release() == 0, held.stderr.read_text()
    # One renewal's keys and files, all of them: version 2 of both, nothing more.
    renewed = (GATEWAY_SIG_LABEL, GATEWAY_KEX_LABEL)
    after = {(label, v) for label, v in key_versions(served.config()) if label in renewed}
    assert after == {(label, v) for label in renewed for v in (1, 2)}
    world = served.start()
    sig = thumbprint(certificate(served.directory, "gateway-sig.der"))
    assert world.running.pki.gateway.signature_key.version == 2
    merchant = register_merchant(world, "M-lock-1")
    cardholder = register_cardholder(world)
    result = authorize(world, merchant, purchase(merchant, cardholder, 700))
    assert result.auth_code == APPROVED and result.gateway.thumbprint == sig


def test_a_pruning_is_refused_while_a_renewal_runs(
    served: Served, held: HeldRenewal, capsys: pytest.CaptureFixture[str]
) -> None:
    files, versions = _files(served), key_versions(served.config())
    with pytest.raises(KeysLocked, match=f"renew-gateway \\(pid {held.process.pid}\\)"):
        prune_gateway_keys(served.config(), apply=True)
    config = str(served.directory / "setpay.toml")
    code, out, err = _ca(["prune-gateway", "--config", config, "--yes"], capsys)
    assert code == 1 and out == ""
    assert "this prune-gateway changed nothing" in err
    assert _files(served) == files and key_versions(served.config()) == versions
    assert held.release() == 0, held.stderr.read_text()


def test_a_killed_renewal_leaves_no_lock(served: Served, held: HeldRenewal) -> None:
    held.process.send_signal(signal.SIGKILL)
    assert held.process.wait(timeout=PROCESS_SECONDS) == -signal.SIGKILL
    assert (served.directory / KEYS_LOCK_FILE).exists()  # the file stays; its lock did not

    # The next renewal runs, and finishes what the killed one left between its renames.
    renewal = renew_gateway_keys(served.config())
    assert (renewal.signature.version, renewal.key_exchange.version) == (3, 3)
    world = served.start()
    merchant = register_merchant(world, "M-lock-2")
    cardholder = register_cardholder(world)
    result = authorize(world, merchant, purchase(merchant, cardholder, 600))
    assert result.auth_code == APPROVED and result.gateway.thumbprint == renewal.signature.thumb


def test_the_bank_does_not_start_during_a_renewal(
    served: Served, held: HeldRenewal, tmp_path: Path
) -> None:
    ports, log = tmp_path / "ports", tmp_path / "serve.txt"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SETPAY_", "PROMETHEUS_"))}
    argv = [
        sys.executable, "-m", "cli.main", "gateway", "serve",
        "--config", str(served.directory / "setpay.toml"), "--workers", "1",
        "--metrics-port", "0", "--port-file", str(ports),
    ]  # fmt: skip
    with log.open("wb") as err:
        bank = subprocess.Popen(
            argv, env={**env, **served.ports}, cwd=PROJECT, stderr=err, start_new_session=True
        )
    try:
        deadline = time.monotonic() + PROCESS_SECONDS
        while bank.poll() is None and not ports.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not ports.exists(), "the bank served during the renewal"
        assert bank.wait(timeout=PROCESS_SECONDS) == 1
    finally:
        if bank.poll() is None:
            bank.kill()
            bank.wait(timeout=PROCESS_SECONDS)
    said = log.read_text()
    assert f"another setpay ca renew-gateway (pid {held.process.pid}) holds the lock" in said
    assert "nothing that loads them starts until it has finished" in said

    assert held.release() == 0, held.stderr.read_text()
    world = served.start()
    assert world.running.pki.gateway.signature_key.version == 2


def _hold_between_the_renames(flags: Path) -> None:
    """In the renewal's own process: once the key exchange certificate is renamed into
    place, say so and wait for the test's word before the signature one."""
    real_replace, real_install = os.replace, gateway_renewal._install

    def held_after_one(source: str, target: str) -> None:
        real_replace(source, target)
        os.replace = real_replace
        (flags / PAUSED).touch()
        deadline = time.monotonic() + PROCESS_SECONDS
        while not (flags / GO).exists():
            if time.monotonic() > deadline:
                os._exit(1)
            time.sleep(0.02)

    def install(*args: object) -> None:
        # Only the renames of the install: the key store renames files too.
        os.replace = held_after_one  # type: ignore[assignment]
        real_install(*args)  # type: ignore[arg-type]

    gateway_renewal._install = install  # type: ignore[assignment]


if __name__ == "__main__":
    _hold_between_the_renames(Path(sys.argv[2]))
    renew_gateway_keys(load(Path(sys.argv[1]), env=os.environ))
    sys.exit(0)
