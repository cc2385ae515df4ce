"""``setpay ca prune-gateway`` on a bank made by ``init_bank`` and renewed."""

from __future__ import annotations

import argparse
import socket
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from cli import ca
from gateway.bank_pki import GATEWAY_KEX_LABEL, GATEWAY_SIG_LABEL
from gateway.config import load
from gateway.provisioning import InitResult, init_bank
from gateway.renewal_lock import KEYS_LOCK_FILE, RENEW_TASK, holding_keys_lock
from setcore.encoding import thumbprint
from tests.gateway.renewal_support import key_versions
from tests.ports import free_port


def _ca(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    parser = argparse.ArgumentParser(prog="setpay")
    ca.add_parser(parser.add_subparsers(dest="command", required=True))
    capsys.readouterr()
    code = ca.run(parser.parse_args(["ca", *argv]))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def renewed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Iterator[InitResult]:
    # A stopped bank's ports: free, probed by the renewal and the pruning, never bound
    # (free_port: why below the kernel's ephemeral range).
    monkeypatch.setenv("SETPAY_LISTEN", f"127.0.0.1:{free_port()}")
    monkeypatch.setenv("SETPAY_CA_LISTEN", f"127.0.0.1:{free_port()}")
    made = init_bank(tmp_path / "bank", env={})
    code, _, err = _ca(["renew-gateway", "--config", str(made.config_path)], capsys)
    assert code == 0, err
    yield made


def _kept(made: InitResult) -> Path:
    return made.directory / "certs" / "gateway-kex.v1.der"


def _gateway_keys(made: InitResult) -> set[tuple[str, int]]:
    renewed = (GATEWAY_SIG_LABEL, GATEWAY_KEX_LABEL)
    return {(label, v) for label, v in key_versions(load(made.config_path)) if label in renewed}


def test_prune_with_nothing_to_do_says_so(
    renewed: InitResult, capsys: pytest.CaptureFixture[str]
) -> None:
    for yes in ([], ["--yes"]):
        code, out, err = _ca(["prune-gateway", "--config", str(renewed.config_path), *yes], capsys)
        assert code == 0, err
        assert out.startswith("nothing to prune: no kept key-exchange certificate has ended")
    assert _kept(renewed).exists()
    assert len(_gateway_keys(renewed)) == 4


def test_prune_lists_then_deletes_a_revoked_certificate_and_its_key(
    renewed: InitResult, capsys: pytest.CaptureFixture[str]
) -> None:
    config = str(renewed.config_path)
    thumb = thumbprint(_kept(renewed).read_bytes()).hex()
    assert _ca(["revoke", "--config", config, "--thumb", thumb], capsys)[0] == 0

    code, out, err = _ca(["prune-gateway", "--config", config], capsys)
    assert code == 0, err
    assert out.splitlines() == [
        "would delete certs/gateway-kex.v1.der: its certificate revoked",
        "would delete key gateway-kex v1: its certificate revoked",
        "nothing deleted: run again with --yes to delete them",
    ]
    assert _kept(renewed).exists() and (GATEWAY_KEX_LABEL, 1) in _gateway_keys(renewed)

    code, out, err = _ca(["prune-gateway", "--config", config, "--yes"], capsys)
    assert code == 0, err
    assert out.splitlines() == [
        "deleted certs/gateway-kex.v1.der: its certificate revoked",
        "deleted key gateway-kex v1: its certificate revoked",
    ]
    assert not _kept(renewed).exists()
    # The signature key v1 stays: its certificate is valid.
    assert _gateway_keys(renewed) == {
        (GATEWAY_SIG_LABEL, 1), (GATEWAY_SIG_LABEL, 2), (GATEWAY_KEX_LABEL, 2),
    }  # fmt: skip


def test_prune_refuses_while_the_bank_port_is_held(
    renewed: InitResult, capsys: pytest.CaptureFixture[str]
) -> None:
    config = str(renewed.config_path)
    thumb = thumbprint(_kept(renewed).read_bytes()).hex()
    assert _ca(["revoke", "--config", config, "--thumb", thumb], capsys)[0] == 0
    host, _, port = load(renewed.config_path).listen.rpartition(":")
    with socket.create_server((host, int(port))):
        code, out, err = _ca(["prune-gateway", "--config", config, "--yes"], capsys)
    assert code == 1 and out == ""
    assert "setpay ca prune-gateway: the bank's gateway address" in err
    assert "stop the bank before pruning its keys" in err
    assert _kept(renewed).exists() and len(_gateway_keys(renewed)) == 4


def test_on_a_running_bank_neither_renewal_nor_prune_takes_the_lock(
    renewed: InitResult, capsys: pytest.CaptureFixture[str]
) -> None:
    # While they hold it, a worker the supervisor restarts is refused and the whole bank
    # stops: both must say the bank is running before they take it. Here the lock is
    # held by the test, so taking it would be refused as "another ... holds the lock".
    config = str(renewed.config_path)
    host, _, port = load(renewed.config_path).listen.rpartition(":")
    with (
        socket.create_server((host, int(port))),
        holding_keys_lock(load(renewed.config_path), RENEW_TASK),
    ):
        for command in (["renew-gateway"], ["prune-gateway"]):
            code, _, err = _ca([*command, "--config", config], capsys)
            assert code == 1
            assert "the bank's gateway address" in err and "holds the lock" not in err, err


def test_the_lock_file_is_readable_by_the_banks_user_whoever_renewed(
    renewed: InitResult,
) -> None:
    # A renewal run with sudo must not leave a lock file the bank's own user cannot open
    # to check it: that bank would never start again. It holds a PID and a task name.
    lock = renewed.directory / KEYS_LOCK_FILE
    assert stat.S_IMODE(lock.stat().st_mode) == 0o644
