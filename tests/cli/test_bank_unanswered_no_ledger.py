"""``show-unanswered`` and ``settle-unanswered`` where the SQLite ledger file is not there:
said, naming it, exit 1, and no ledger made, as ``show-batch`` and ``check-books`` say it
(``cli.bank_ledger``, which all four open the ledger's store through)."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.provisioning import init_bank
from tests.cli.command_support import run_bank

ARGVS = (
    ["show-unanswered"],
    ["show-unanswered", "--settled"],
    ["settle-unanswered", "--rrpid", "ab" * 32, "--reason", "merchant gone"],
    ["settle-unanswered", "--rrpid", "ab" * 32, "--reason", "merchant gone", "--yes"],
)


@pytest.mark.parametrize("argv", ARGVS, ids=lambda argv: " ".join(argv[:1] + argv[-1:]))
def test_no_ledger_is_made_where_there_is_none(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
) -> None:
    config = init_bank(tmp_path / "bank", env={}).config_path
    missing = tmp_path / "ledger.db"
    monkeypatch.setenv("SETPAY_LEDGER", f"sqlite:{missing}")
    assert run_bank(["--config", str(config), *argv], capsys) == (
        1,
        "",
        f"setpay bank: no ledger at {missing} (ledger.store, or SETPAY_LEDGER): nothing to"
        " read, and this command makes none\n",
    )
    assert not missing.exists()
