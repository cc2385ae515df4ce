"""``--cardholders`` has a maximum: each is a certificate from the bank's CA and a card
account in its ledger (a target's is the user's bank), and a hundred million passed and
registered for days. Above it the run is refused as a usage error (exit 2) before
anything starts, in the words of the other limits."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from cli import bench
from cli.bench_options import MAX_CARDHOLDERS, check_options, read_numbers
from clients.loadtest.errors import PlanError

from .conftest import run_bench

LIMIT = f"--cardholders must be between 1 and {MAX_CARDHOLDERS}"


@pytest.mark.parametrize("cardholders", ["100000000", str(MAX_CARDHOLDERS + 1)])
def test_more_cardholders_than_the_maximum_are_refused(
    tmp_path: Path, cardholders: str, capsys: pytest.CaptureFixture[str]
) -> None:
    workdir = tmp_path / "bank"
    report = tmp_path / "report.json"
    code = run_bench([
        "authorize", "--spawn", "--workdir", str(workdir), "--json", str(report),
        "--rate", "5", "--cardholders", cardholders,
    ])  # fmt: skip
    assert code == 2
    assert capsys.readouterr().err == f"setpay bench: {LIMIT}\n"
    assert not workdir.exists()  # no bank made, nobody registered
    assert not report.exists()


def test_a_target_s_cardholders_are_checked_before_its_bank_is_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The bank configuration named does not exist: the options are refused first.
    code = run_bench([
        "authorize", "--target", "127.0.0.1:9", "--bank-config", str(tmp_path / "none.toml"),
        "--rate", "5", "--cardholders", "100000000",
    ])  # fmt: skip
    assert code == 2
    assert LIMIT in capsys.readouterr().err


def _options(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="setpay")
    bench.add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["bench", "authorize", "--spawn", "--rate", "5", *argv])
    read_numbers(args)
    return args


def test_the_maximum_itself_is_taken() -> None:
    check_options(_options("--cardholders", str(MAX_CARDHOLDERS)))


@pytest.mark.parametrize("cardholders", ["100000000", str(MAX_CARDHOLDERS + 1), "0"])
def test_a_count_outside_the_range_is_a_plan_error(cardholders: str) -> None:
    with pytest.raises(PlanError) as refused:
        check_options(_options("--cardholders", cardholders))
    assert str(refused.value) == LIMIT


def test_the_maximum_is_a_few_thousand() -> None:
    # Enough to keep card locks apart for the most callers, registered in about a minute.
    assert 1000 <= MAX_CARDHOLDERS <= 10_000
