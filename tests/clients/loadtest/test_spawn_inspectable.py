"""The servers the bench starts are inspectable when no secret of the bank's keys is in
their environment: no core file, but left dumpable (``SETPAY_ALLOW_INSPECTION=1``), so
that the bench, as any non-root user, may read their workers' ``/proc/PID/fd`` to see how
its connections spread. A dumpable process's ``/proc/PID/environ`` is open to the same
user too: a bank whose key URI reads its PIN or passphrase from the environment is
served hardened. The real echo service with two workers; what an unprivileged process
may then read is ``tests/cli``'s to show."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from cli.hardening import ALLOW_INSPECTION
from clients.loadtest import spawn
from gateway.provisioning import init_bank
from hsm.uri import PASSPHRASE_ENV
from tests.cli.dump_probe import core_limit_line

from .conftest import serve_echo

NO_CORE = "Max core file size 0 0 bytes"
WORKERS = 2
# What the server logs when it understood the variable and left itself dumpable.
UNDERSTOOD = f"{ALLOW_INSPECTION}=1: "


def _environ(pid: int) -> list[bytes]:
    return Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")


def _passphrase() -> str:
    return secrets.token_urlsafe(16)


@pytest.fixture
def echo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[spawn.Server]:
    # The user's own keystore passphrase in the bench's environment: a bank that reads a
    # passphrase file of its own has no use for it, and a dumpable server must not hold it.
    monkeypatch.setenv(PASSPHRASE_ENV, _passphrase())
    yield from serve_echo(tmp_path, WORKERS)


def test_the_name_is_the_one_setpay_reads() -> None:
    assert spawn.ALLOW_INSPECTION == ALLOW_INSPECTION


def test_a_spawned_server_and_its_workers_are_inspectable_and_dump_no_core(
    echo: spawn.Server,
) -> None:
    pids = echo.pids()
    assert len(pids) == 1 + WORKERS, pids
    for pid in pids:
        assert core_limit_line(pid) == NO_CORE, pid
        environ = _environ(pid)
        assert f"{ALLOW_INSPECTION}=1".encode() in environ, pid
        assert not any(v.startswith(f"{PASSPHRASE_ENV}=".encode()) for v in environ), pid
    # The server's word that it understood the variable and left itself dumpable.
    log = echo.log.read_text(errors="replace")
    assert log.count(UNDERSTOOD) == 1, log


def test_a_bank_whose_passphrase_is_in_the_environment_is_served_hardened(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its key URI reads the passphrase from the environment, which its servers hold:
    not dumpable, so that no other process of the user can read it there."""
    monkeypatch.setenv(PASSPHRASE_ENV, _passphrase())
    init_bank(tmp_path / "bank", profile="ec", merchant_tls=True)
    server = spawn.serve_reference("echo", tmp_path / "bank" / "setpay.toml", tmp_path, WORKERS)
    try:
        pids = server.pids()
        assert len(pids) == 1 + WORKERS, pids
        for pid in pids:
            assert core_limit_line(pid) == NO_CORE, pid
            assert f"{ALLOW_INSPECTION}=1".encode() not in _environ(pid), pid
        log = server.log.read_text(errors="replace")
        assert UNDERSTOOD not in log and "left hardened" in log, log
    finally:
        server.stop()


def _config(directory: Path, keys: str) -> Path:
    path = directory / "setpay.toml"
    path.write_text(f'[bank]\nkeys = "{keys}"\n')
    return path


@pytest.mark.parametrize(
    ("keys", "inspect"),
    [
        ("pkcs11:module=token-library.so;token=bank;pin-source=env:BANK_PIN", False),
        ("pkcs11:module=token-library.so;token=bank;pin-source=file:bank.pin", True),
        ("soft:keys", False),  # the passphrase from SETPAY_KEYSTORE_PASSPHRASE
        ("soft:keys;pin-source=file:keys.pass", True),
        ("not a key URI", False),
    ],
)
def test_only_a_key_uri_reading_its_secret_from_a_file_leaves_servers_inspectable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, keys: str, inspect: bool
) -> None:
    monkeypatch.delenv(spawn.KEYS_ENV, raising=False)
    assert spawn.inspectable(_config(tmp_path, keys)) is inspect


def test_the_key_uri_the_environment_gives_the_servers_is_the_one_judged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = _config(tmp_path, "soft:keys;pin-source=file:keys.pass")
    monkeypatch.setenv(spawn.KEYS_ENV, "pkcs11:module=token-library.so;token=b;pin-source=env:P")
    assert not spawn.inspectable(config)


def test_the_bank_the_bench_makes_reads_a_passphrase_file_of_its_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without ``--keys``, whatever the bench's environment holds: its servers may be
    inspectable."""
    monkeypatch.setenv(PASSPHRASE_ENV, _passphrase())
    assert spawn.inspectable(spawn.init_bank(tmp_path / "bank", "ec", None))
