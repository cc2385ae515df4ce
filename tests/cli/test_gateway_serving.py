"""``setpay gateway serve`` as an operator runs it: a bad grace period refused before
anything starts, metrics on a port the OS picks, reported in the port file, and on a
fixed port, or none, which the port file leaves out.

Each test runs the real command in a subprocess, on ports the OS picks."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from gateway.provisioning import InitResult, init_bank
from tests.ports import free_port

REPOSITORY = Path(__file__).resolve().parents[2]
# A bank that is refused exits at once; one that serves is up within seconds (a loaded
# 2-core CI machine may take much longer).
START_SECONDS = 60.0
STOP_SECONDS = 60.0
REFUSED = "gateway.grace_seconds must be more than 0 and at most 300 seconds"


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> InitResult:
    return init_bank(tmp_path_factory.mktemp("gateway-serving") / "bank", env={})


def _argv(config: Path, port_file: Path, *more: str) -> list[str]:
    return [
        sys.executable, "-m", "cli.main", "gateway", "serve", "--config", str(config),
        "--listen", "127.0.0.1:0", "--ca-listen", "127.0.0.1:0", "--workers", "1",
        "--port-file", str(port_file), *more,
    ]  # fmt: skip


def _env(**more: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SETPAY_", "PROMETHEUS_"))}
    return {**env, **more}


def _with_grace(made: InitResult, tmp_path: Path, value: str) -> Path:
    """A copy of the bank's configuration with ``grace_seconds = value`` in [gateway]."""
    text = made.config_path.read_text()
    assert "\n[gateway]\n" in text
    path = made.directory / f"grace-{tmp_path.name}.toml"
    path.write_text(text.replace("\n[gateway]\n", f"\n[gateway]\ngrace_seconds = {value}\n"))
    return path


def _announced(process: subprocess.Popen[bytes], port_file: Path, out: Path) -> str:
    """What the bank wrote to ``out`` once serving: its port file, then its line saying
    the ports (written after the file, ``cli.gateway``: the file alone may come first)."""
    deadline = time.monotonic() + START_SECONDS
    while process.poll() is None and time.monotonic() < deadline:
        said = out.read_text()
        if port_file.exists() and re.search(r"PaymentGateway on port .*\n", said):
            return said
        time.sleep(0.05)
    raise AssertionError(f"the bank did not announce its ports:\n{out.read_text()}")


@pytest.mark.parametrize("where", ["file", "environment"])
def test_a_bad_grace_period_is_refused_and_nothing_starts(
    made: InitResult, tmp_path: Path, where: str
) -> None:
    port_file = tmp_path / "ports"
    if where == "file":
        config, env = _with_grace(made, tmp_path, "0"), _env()
        said = f"{config}: {REFUSED}"
    else:
        config, env = made.config_path, _env(SETPAY_GRACE_SECONDS="-5")
        said = f"SETPAY_GRACE_SECONDS: {REFUSED}"
    done = subprocess.run(
        _argv(config, port_file), env=env, cwd=REPOSITORY, capture_output=True, text=True,
        timeout=START_SECONDS, check=False,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert done.stderr == f"setpay gateway: {said}\n"
    assert done.stdout == ""  # no worker, no port announced
    assert not port_file.exists()


def test_metrics_on_a_port_the_os_picks_are_the_port_files_third_number(
    made: InitResult, tmp_path: Path
) -> None:
    # The bank binds port 0 itself, so no port is ever chosen by one process and bound by
    # another: nothing can take it in between. The port file says which one it got.
    port_file, out = tmp_path / "ports", tmp_path / "out.txt"
    argv = _argv(made.config_path, port_file, "--metrics-port", "any")
    with out.open("wb") as stdout:
        process = subprocess.Popen(
            argv, env=_env(), cwd=REPOSITORY, stdout=stdout, stderr=subprocess.STDOUT
        )
    try:
        said = _announced(process, port_file, out)
        gateway, ca, metrics = (int(p) for p in port_file.read_text().split())
        assert len({gateway, ca, metrics}) == 3
        url = f"http://127.0.0.1:{metrics}/metrics"
        with urllib.request.urlopen(url, timeout=10) as page:
            assert b"setpay_workers 1.0" in page.read()
        announced = re.search(r"metrics on port (\d+)", said)
        assert announced is not None and int(announced[1]) == metrics
    finally:
        process.terminate()
        assert process.wait(timeout=STOP_SECONDS) == 0, out.read_text()


@pytest.mark.parametrize("metrics_port", ["0", "fixed"])
def test_a_fixed_or_no_metrics_port_keeps_the_port_file_at_two_numbers(
    made: InitResult, tmp_path: Path, metrics_port: str
) -> None:
    # Readers written for "GATEWAY_PORT CA_PORT" go on working: only a bank asked for
    # a metrics port the OS picks writes a third number.
    port_file, out = tmp_path / "ports", tmp_path / "out.txt"
    fixed = free_port() if metrics_port == "fixed" else None
    argv = _argv(made.config_path, port_file, "--metrics-port", str(fixed or 0))
    with out.open("wb") as stdout:
        process = subprocess.Popen(
            argv, env=_env(), cwd=REPOSITORY, stdout=stdout, stderr=subprocess.STDOUT
        )
    try:
        said = _announced(process, port_file, out)
        assert len(port_file.read_text().split()) == 2
        announced = re.search(r"metrics on port (\d+)", said)
        if fixed is None:
            assert announced is None, said
        else:
            # Served where asked, and said so on stdout as for a port the OS picks.
            assert announced is not None and int(announced[1]) == fixed, said
            url = f"http://127.0.0.1:{fixed}/metrics"
            with urllib.request.urlopen(url, timeout=10) as page:
                assert b"setpay_workers 1.0" in page.read()
    finally:
        process.terminate()
        assert process.wait(timeout=STOP_SECONDS) == 0, out.read_text()


def test_a_metrics_port_neither_a_number_nor_any_is_a_usage_error(
    made: InitResult, tmp_path: Path
) -> None:
    done = subprocess.run(
        _argv(made.config_path, tmp_path / "ports", "--metrics-port", "anywhere"),
        env=_env(), cwd=REPOSITORY, capture_output=True, text=True, timeout=START_SECONDS,
        check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert "--metrics-port: must be a port number or any, not 'anywhere'" in done.stderr
