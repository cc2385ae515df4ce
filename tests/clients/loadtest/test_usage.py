"""``setpay bench authorize`` refuses options that make no runnable run as a usage error
(exit 2) with a message naming the option, before it starts or writes anything: no bank
is made (its ``--workdir`` never appears), no report is written."""

from __future__ import annotations

from pathlib import Path

import pytest

from .conftest import run_bench


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--rate", "-5"], "rates must be above 0"),
        (["--rate", "nan"], "rates must be above 0"),
        (["--rate", "5", "--duration", "0"], "duration must be above 0"),
        (["--rate", "5", "--duration", "-1"], "duration must be above 0"),
        (["--rates", "100,fast"], "rates must be numbers separated by commas"),
        (["--rates", "100;200"], "rates must be numbers separated by commas"),
        (["--rates", ","], "no rates given"),
        (["--rate", "5", "--timeout", "0"], "timeout must be above 0"),
        (["--rate", "5", "--p99-max", "0"], "--p99-max must be"),
        (["--rate", "5", "--p99-max", "nan"], "--p99-max must be"),
        (["--concurrency", "0"], "concurrency must be between 1 and"),
        (["--concurrency", "-3"], "concurrency must be between 1 and"),
        (["--rate", "5", "--channels", "0"], "channels must be between 1 and"),
        (["--rate", "5", "--channels", "1000"], "channels must be between 1 and"),
        (["--rate", "5", "--cardholders", "0"], "--cardholders must be between 1 and 5000"),
        (["--rate", "5", "--bin", "41111"], "--bin must be 6 digits"),
        (["--rate", "5", "--bin", "4111a1"], "--bin must be 6 digits"),
        (["--rate", "5", "--amount", "0"], "--amount must be between 1 and"),
        (["--rate", "5", "--amount", "-100"], "--amount must be between 1 and"),
        (["--rate", "5", "--workers", "0"], "--workers must be between 1 and"),
        (["--rate", "5", "--metrics-url", "http://127.0.0.1:9/metrics"],
         "--metrics-url and --ca-target are for --target"),
        (["--rate", "5", "--ca-target", "127.0.0.1:9"],
         "--metrics-url and --ca-target are for --target"),
    ],
)  # fmt: skip
def test_an_option_that_makes_no_runnable_run_is_a_usage_error(
    tmp_path: Path, options: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    workdir = tmp_path / "bank"
    report = tmp_path / "report.json"
    code = run_bench(
        ["authorize", "--spawn", "--workdir", str(workdir), "--json", str(report), *options]
    )
    assert code == 2
    assert message in capsys.readouterr().err
    assert not workdir.exists()  # nothing was started
    assert not report.exists()


def test_a_target_s_worker_count_is_checked_before_anything_is_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The bank configuration named does not exist: the options are refused first.
    code = run_bench([
        "authorize", "--target", "127.0.0.1:9", "--bank-config", str(tmp_path / "none.toml"),
        "--rate", "5", "--workers", "0", "--ceiling",
    ])  # fmt: skip
    assert code == 2
    assert "--workers must be between 1 and" in capsys.readouterr().err
