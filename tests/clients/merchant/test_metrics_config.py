"""Where the merchant's metrics are served: ``server.metrics_port`` and ``metrics_host`` in
merchant.toml, judged as the bank's ``gateway.metrics_port`` is, and ``serve
--metrics-port`` in their place."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

import cli.merchant
from clients.errors import ConfigError
from clients.merchant.config import CONFIG_FILE, METRICS_ANY_PORT, load, write_config
from clients.peers import PeerConfig


def _write(directory: Path, server_lines: str = "") -> None:
    """A merchant.toml whose [server] table holds ``server_lines`` too."""
    gateway = PeerConfig("127.0.0.1:7443", directory / "tls/ca.pem", directory / "tls/c.pem",
                         directory / "tls/c.key")  # fmt: skip
    ca = PeerConfig("127.0.0.1:7443", directory / "tls/ca.pem")
    path = write_config(directory, merchant_id="m-0001", name="Corner Shop", gateway=gateway, ca=ca)
    text = path.read_text()
    path.write_text(text.replace("[server]\n", f"[server]\n{server_lines}", 1))


def test_metrics_are_off_on_loopback_unless_asked(tmp_path: Path) -> None:
    _write(tmp_path)
    server = load(tmp_path, env={}).server
    assert (server.metrics_port, server.metrics_host) == (0, "127.0.0.1")


@pytest.mark.parametrize(
    ("lines", "port", "host"),
    [
        ("metrics_port = 9465\n", 9465, "127.0.0.1"),
        ('metrics_port = " Any "\n', METRICS_ANY_PORT, "127.0.0.1"),
        ('metrics_port = 0\nmetrics_host = "::1"\n', 0, "::1"),
    ],
)
def test_metrics_settings_read(tmp_path: Path, lines: str, port: int | str, host: str) -> None:
    _write(tmp_path, lines)
    server = load(tmp_path, env={}).server
    assert (server.metrics_port, server.metrics_host) == (port, host)


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        ("metrics_port = 65536\n", "between 0 .off. and 65535"),
        ("metrics_port = -1\n", "between 0 .off. and 65535"),
        ("metrics_port = true\n", 'must be int or "any", not bool'),
        ('metrics_port = "9465"\n', 'must be int or "any", not str'),
        ('metrics_host = " "\n', "server.metrics_host must name an address"),
        ("metrics = 9465\n", f"{CONFIG_FILE}: unknown setting server.metrics"),
    ],
)
def test_bad_metrics_settings_are_refused_by_name(tmp_path: Path, lines: str, message: str) -> None:
    _write(tmp_path, lines)
    with pytest.raises(ConfigError, match=message):
        load(tmp_path, env={})


def _serve_args(*flags: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="setpay")
    cli.merchant.add_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(["merchant", "serve", *flags])


def test_the_flag_replaces_the_files_port(tmp_path: Path) -> None:
    _write(tmp_path, "metrics_port = 9465\n")
    config = load(tmp_path, env={})
    assert _serve_args().metrics_port is None  # the file's stands
    for flag, port in (("any", METRICS_ANY_PORT), ("0", 0), ("9466", 9466)):
        given = _serve_args("--metrics-port", flag).metrics_port
        assert given == port
        assert config.with_metrics_port(given).server.metrics_port == port


@pytest.mark.parametrize("flag", ["65536", "-1", "\uff19\uff14\uff16\uff15", "1_0", "nine"])
def test_a_bad_flag_is_a_usage_error(flag: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        _serve_args("--metrics-port", flag)
    assert exited.value.code == 2
    assert "--metrics-port: must be a port number" in capsys.readouterr().err
