"""``setpay gateway serve``: a port file that cannot be written is refused before any worker."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from cli import gateway
from gateway import workers
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
