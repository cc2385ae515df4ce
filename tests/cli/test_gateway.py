"""``setpay gateway serve``: a port file that cannot be written is refused before any worker;
flags override the environment's settings and are refused, naming the flag, as usage
errors (exit 2)."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from cli import gateway
from gateway import workers
from gateway.config import BankConfig
from gateway.provisioning import InitResult, init_bank


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> InitResult:
    return init_bank(tmp_path_factory.mktemp("gateway-cli") / "bank", env={})


def _serve(made: InitResult, port_file: Path) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="setpay")
    gateway.add_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(
        ["gateway", "serve", "--config", str(made.directory / "setpay.toml"),
         "--listen", "127.0.0.1:0", "--ca-listen", "127.0.0.1:0", "--port-file", str(port_file)]
    )  # fmt: skip


def _no_workers(*args: object, **kwargs: object) -> int:
    raise AssertionError("workers were started")


@pytest.mark.parametrize("where", ["no-directory", "a-directory"])
def test_an_unwritable_port_file_starts_no_worker(
    made: InitResult,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    where: str,
) -> None:
    port_file = tmp_path / "missing" / "ports" if where == "no-directory" else tmp_path
    monkeypatch.setattr(workers, "serve", _no_workers)
    assert gateway.run(_serve(made, port_file)) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith(f"setpay gateway: --port-file {port_file}")
    assert "Traceback" not in err


def test_a_writable_port_file_goes_on_to_serve(
    made: InitResult, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    started: list[object] = []
    monkeypatch.setattr(workers, "serve", lambda *a, **k: started.append(a) or 0)
    assert gateway.run(_serve(made, tmp_path / "ports")) == 0
    assert len(started) == 1


def _parse(made: InitResult, *flags: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="setpay")
    gateway.add_parser(parser.add_subparsers(dest="command", required=True))
    config = str(made.directory / "setpay.toml")
    return parser.parse_args(["gateway", "serve", "--config", config, *flags])


def _served(monkeypatch: pytest.MonkeyPatch) -> list[BankConfig]:
    """The configurations ``workers.serve`` is given (it serves none)."""
    given: list[BankConfig] = []
    monkeypatch.setattr(workers, "serve", lambda config, **kwargs: given.append(config) or 0)
    return given


@pytest.mark.parametrize(
    ("variable", "bad", "flags", "setting", "value"),
    [
        ("SETPAY_WORKERS", "100", ["--workers", "1"], "workers", 1),
        ("SETPAY_WORKERS", "many", ["--workers", "2"], "workers", 2),
        ("SETPAY_LISTEN", "no-port", ["--listen", "127.0.0.1:0"], "listen", "127.0.0.1:0"),
        ("SETPAY_METRICS_PORT", "70000", ["--metrics-port", "0"], "metrics_port", 0),
    ],
)
def test_a_flag_replaces_a_bad_environment_value_unjudged(
    made: InitResult, monkeypatch: pytest.MonkeyPatch, variable: str, bad: str,
    flags: list[str], setting: str, value: object,
) -> None:  # fmt: skip
    """The order is the file, the environment, the flags; before, the environment's value
    was judged before the flag replaced it, and the bank refused to start."""
    monkeypatch.setenv(variable, bad)
    given = _served(monkeypatch)
    assert gateway.run(_parse(made, *flags)) == 0
    assert getattr(given[0], setting) == value


@pytest.mark.parametrize(
    ("flags", "says"),
    [
        (["--workers", "0"], "--workers: gateway.workers must be between 1 and 64"),
        (["--workers", "65"], "--workers: gateway.workers must be between 1 and 64"),
        (["--listen", "nowhere"], "--listen: gateway.listen must be HOST:PORT"),
        (["--ca-listen", "127.0.0.1:70000"], "--ca-listen: gateway.ca_listen must be HOST:PORT"),
        (["--metrics-port", "70000"], "--metrics-port: gateway.metrics_port must be between 0"),
    ],
)
def test_a_flag_value_the_configuration_refuses_is_a_usage_error_naming_the_flag(
    made: InitResult, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    flags: list[str], says: str,
) -> None:  # fmt: skip
    """Before: exit 1 and only the configuration's key (or, for --listen, a port that could
    not be reserved, found once the workers were about to start)."""
    given = _served(monkeypatch)
    assert gateway.run(_parse(made, *flags)) == 2
    assert capsys.readouterr().err.startswith(f"setpay gateway: {says}")
    assert given == []


def test_a_bad_environment_value_no_flag_replaces_is_still_refused_with_exit_1(
    made: InitResult, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SETPAY_WORKERS", "100")
    given = _served(monkeypatch)
    assert gateway.run(_parse(made, "--metrics-port", "0")) == 1
    assert capsys.readouterr().err.startswith("setpay gateway: SETPAY_WORKERS: gateway.workers")
    assert given == []


@pytest.mark.parametrize("flag", ["--workers", "--metrics-port"])
@pytest.mark.parametrize("number", ["\uff12", "1_6", " 2", "2.0"])  # a fullwidth 2 first
def test_a_number_flag_takes_ascii_digits_only(
    made: InitResult, capsys: pytest.CaptureFixture[str], flag: str, number: str
) -> None:
    """int() took a fullwidth digit as 2 and 1_6 as 16."""
    with pytest.raises(SystemExit) as usage:
        _parse(made, flag, number)
    assert usage.value.code == 2
    assert f"argument {flag}: must be " in capsys.readouterr().err
