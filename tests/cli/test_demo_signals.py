"""A demo stopped by a signal cleans up as one that ends: Ctrl-C, a closed terminal or a
supervisor's SIGTERM leave no key or passphrase file behind, and say so in one line.

Each test runs the real command in a subprocess and signals it mid-story."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.cli.demo_support import assert_no_key_left, demo_token

REPOSITORY = Path(__file__).resolve().parents[2]
# The demo is past its merchant's registration within seconds; a loaded 2-core CI
# machine may take much longer. Stopping takes the servers' grace (2 s) at most.
START_SECONDS = 60.0
STOP_SECONDS = 30.0


def _env(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SETPAY_")}
    return {**env, "TMPDIR": str(tmp)}


def _stopped_mid_story(tmp_path: Path, signum: int, *more: str) -> tuple[int, Path, str]:
    """Run ``setpay demo MORE``, signal it once its parties' secrets are written: its exit
    status, the directory it made its temporary one in, and its stderr."""
    tmp, out_file, err_file = tmp_path / "tmp", tmp_path / "out", tmp_path / "err"
    tmp.mkdir()
    with out_file.open("wb") as out, err_file.open("wb") as err:
        process = subprocess.Popen(
            [sys.executable, "-m", "cli.main", "demo", *more],
            env=_env(tmp), cwd=REPOSITORY, stdout=out, stderr=err,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + START_SECONDS
            # The merchant's first line: the wallet's and the merchant's keys and
            # passphrase files are written by then.
            while "     merchant: " not in out_file.read_text():
                assert process.poll() is None, err_file.read_text()
                assert time.monotonic() < deadline, out_file.read_text()
                time.sleep(0.05)
            (work,) = tmp.glob("setpay-demo-*")
            assert (work / "merchant" / "keys.pass").exists()
            assert (work / "wallet" / "card.pass").exists()
            process.send_signal(signum)
            code = process.wait(STOP_SECONDS)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    return code, tmp, err_file.read_text()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
def test_a_signal_mid_story_removes_every_secret(tmp_path: Path, signum: int) -> None:
    code, tmp, stderr = _stopped_mid_story(tmp_path, signum)
    assert code == 128 + signum, stderr
    assert list(tmp.iterdir()) == []
    name = signal.Signals(signum).name
    assert stderr == f"setpay demo: stopped by {name}; its temporary directory removed\n"


def test_a_signal_mid_story_takes_the_bank_keys_off_the_token(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    # The token's configuration reaches the subprocess through the environment it sets.
    token = demo_token(tmp_path_factory)
    code, tmp, stderr = _stopped_mid_story(tmp_path, signal.SIGTERM, "--keys", token.uri())
    assert code == 128 + signal.SIGTERM, stderr
    # Nothing left in its TMPDIR: the PKCS#11 backend's per-user lock directory, which
    # stays as for any token user, is one per host, not in TMPDIR.
    assert list(tmp.iterdir()) == []
    assert_no_key_left(token)
