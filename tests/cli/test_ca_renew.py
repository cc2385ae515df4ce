"""``setpay ca renew-gateway`` on a bank made by ``init_bank``."""

from __future__ import annotations

import argparse
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from cli import ca
from cli.fingerprint import colon_hex
from gateway.bank_pki import load_bank_pki
from gateway.config import load
from gateway.provisioning import GATEWAY_NAME, InitResult, init_bank
from setcore.encoding import thumbprint
from tests.ports import free_port


def _ca(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    parser = argparse.ArgumentParser(prog="setpay")
    ca.add_parser(parser.add_subparsers(dest="command", required=True))
    code = ca.run(parser.parse_args(["ca", *argv]))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def made(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[InitResult]:
    # The bank's ports, as a stopped bank's: free, and nobody else's default ones. Never
    # bound here, only probed by the renewal; free_port picks below the kernel's
    # ephemeral range, so no outgoing connection or port-0 bind of a test running beside
    # this one holds it when probed (only another free_port pick, one in thousands).
    monkeypatch.setenv("SETPAY_LISTEN", f"127.0.0.1:{free_port()}")
    monkeypatch.setenv("SETPAY_CA_LISTEN", f"127.0.0.1:{free_port()}")
    yield init_bank(tmp_path / "bank", env={})


def _cert(made: InitResult, name: str) -> bytes:
    return (made.directory / "certs" / name).read_bytes()


def test_renew_gateway_prints_what_it_made(
    made: InitResult, capsys: pytest.CaptureFixture[str]
) -> None:
    old_kex = _cert(made, "gateway-kex.der")
    code, out, err = _ca(["renew-gateway", "--config", str(made.config_path)], capsys)
    assert code == 0, err
    lines = out.splitlines()
    sig, kex = (
        thumbprint(_cert(made, "gateway-sig.der")),
        thumbprint(_cert(made, "gateway-kex.der")),
    )
    assert lines[0].startswith("renewed gateway-sig v2: serial ")
    assert lines[0].endswith(f"(SHA-256 {colon_hex(sig)})")
    assert lines[1].startswith("renewed gateway-kex v2: serial ")
    assert lines[1].endswith(f"(SHA-256 {colon_hex(kex)})")
    assert lines[2].startswith("kept gateway-kex.v1.der: ")
    assert _cert(made, "gateway-kex.v1.der") == old_kex

    # `ca list` sees the new certificates like any other.
    code, out, _ = _ca(
        ["list", "--config", str(made.config_path), "--subject", GATEWAY_NAME], capsys
    )
    assert code == 0
    listed = out.splitlines()
    assert len(listed) == 4
    assert any(line.startswith(colon_hex(sig)) for line in listed)
    assert any(line.startswith(colon_hex(kex)) for line in listed)

    # What a bank loads at start: the new keys, and the older key-exchange certificate.
    pki = load_bank_pki(load(made.config_path, env={}))
    try:
        assert pki.gateway.signature_thumb == sig and pki.gateway.key_exchange_thumb == kex
        assert [der for _, der in pki.older_key_exchange] == [old_kex]
    finally:
        pki.close()


def test_renew_gateway_refuses_while_the_bank_port_is_held(
    made: InitResult, capsys: pytest.CaptureFixture[str]
) -> None:
    host, _, port = load(made.config_path).listen.rpartition(":")
    before = _cert(made, "gateway-sig.der")
    with socket.create_server((host, int(port))):
        code, out, err = _ca(["renew-gateway", "--config", str(made.config_path)], capsys)
    assert code == 1 and out == ""
    assert "setpay ca renew-gateway: the bank's gateway address" in err
    assert "stop the bank before renewing its keys" in err
    assert _cert(made, "gateway-sig.der") == before
    assert not (made.directory / "certs" / "gateway-kex.v1.der").exists()


def test_renew_gateway_right_after_the_bank_stopped(
    made: InitResult, capsys: pytest.CaptureFixture[str]
) -> None:
    """The bank closed its calls as it stopped: their sockets wait in TIME_WAIT on its port
    for a minute. Before: refused as a running bank when its server did not share the
    port (a bank started in one process, as tests start it), so tests that renew right
    after a stop failed now and then."""
    host, _, port = load(made.config_path).listen.rpartition(":")
    with socket.create_server((host, int(port))) as listener:
        client = socket.create_connection((host, int(port)))
        accepted, _ = listener.accept()
        accepted.close()  # the bank's side closes first, and its port keeps the TIME_WAIT
        client.recv(1)  # the FIN has arrived
        client.close()
    code, out, err = _ca(["renew-gateway", "--config", str(made.config_path)], capsys)
    assert code == 0, err
    assert out.startswith("renewed gateway-sig v2: ")
