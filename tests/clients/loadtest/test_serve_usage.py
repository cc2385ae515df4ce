"""``setpay bench serve`` refuses options that make no service as a usage error (exit 2,
as argparse's are), before the bank's configuration is read or anything is served: a
listen address that is not HOST:PORT (its port beyond 16 bits was served modulo 65536
by one worker, refused with exit 1 by two) and a delay for the ceiling (exit 1)."""

from __future__ import annotations

from pathlib import Path

import pytest

from .conftest import run_bench


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--mode", "echo", "--listen", "127.0.0.1:99999"],
         "listen must be HOST:PORT (port 0 to 65535), not '127.0.0.1:99999'"),
        (["--mode", "echo", "--listen", "127.0.0.1:99999", "--workers", "2"],
         "listen must be HOST:PORT (port 0 to 65535), not '127.0.0.1:99999'"),
        (["--mode", "ceiling", "--listen", "127.0.0.1"],
         "listen must be HOST:PORT (port 0 to 65535), not '127.0.0.1'"),
        (["--mode", "ceiling", "--delay-ms", "5"], "only the echo service takes a delay"),
    ],
)  # fmt: skip
def test_options_that_make_no_service_are_a_usage_error(
    tmp_path: Path, options: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    ports = tmp_path / "ports"
    # The configuration named does not exist: the options are refused before it is read.
    config = tmp_path / "none.toml"
    code = run_bench(["serve", "--config", str(config), "--port-file", str(ports), *options])
    assert code == 2
    assert capsys.readouterr().err == f"setpay bench: {message}\n"
    assert not ports.exists()  # nothing served


def test_a_missing_configuration_is_still_a_failure_not_usage(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = run_bench(["serve", "--mode", "echo", "--config", str(tmp_path / "none.toml")])
    assert code == 1
    assert "none.toml" in capsys.readouterr().err
