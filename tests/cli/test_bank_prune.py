"""``setpay bank prune-ledger``: counts or prunes to ``[ledger] retention_days``, and a bad
retention is refused naming its key."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from gateway.config import ConfigError, load
from gateway.issuer import open_ledger
from gateway.ledger.retention import DAY_MS, MAX_RETENTION_DAYS, MIN_RETENTION_DAYS
from gateway.provisioning import InitResult, init_bank
from tests.cli.command_support import run_bank

EXPIRY = "203012"
MERCHANT = "shop-prune"
EUR = 978


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> InitResult:
    return init_bank(tmp_path_factory.mktemp("bank-prune") / "bank", env={})


def _config(made: InitResult, days: object) -> Path:
    """A copy of the bank's setpay.toml with ``retention_days = days`` (TOML text)."""
    text = (made.directory / "setpay.toml").read_text()
    assert "[ledger]" in text
    path = made.directory / "retention.toml"
    path.write_text(text.replace("[ledger]", f"[ledger]\nretention_days = {days}", 1))
    return path


def _age_requests(made: InitResult) -> None:
    """Two decisions, then their rows made older than the shortest retention (the CLI runs on the
    wall clock)."""
    ledger = open_ledger(load(made.directory / "setpay.toml"))
    try:
        ledger.open_merchant_account(MERCHANT, EUR)
        for n in range(2):
            ledger.open_batch(
                merchant_id=MERCHANT,
                rrpid=f"prune-{n}".encode(),
                request_digest=b"d",
                respond=lambda outcome: b"answer",
            )
    finally:
        ledger.close()
    conn = sqlite3.connect(made.directory / "ledger.db")
    try:
        conn.execute(
            "UPDATE requests SET created_at_ms = created_at_ms - ?",
            ((MIN_RETENTION_DAYS + 1) * DAY_MS,),
        )
        conn.commit()
    finally:
        conn.close()


def test_dry_run_counts_then_prune_prunes(
    made: InitResult, capsys: pytest.CaptureFixture[str]
) -> None:
    _age_requests(made)
    config = str(_config(made, MIN_RETENTION_DAYS))
    code, out, err = run_bank(["--config", config, "prune-ledger", "--dry-run"], capsys)
    assert (code, err) == (0, "")
    assert out.splitlines()[0].startswith("requests: 2 stored answers and fences would go (before ")
    assert out.splitlines()[1].startswith("pi_uses: 0 used XIDs would go")
    code, out, err = run_bank(["--config", config, "prune-ledger"], capsys)
    assert (code, err) == (0, "")
    assert out.startswith("requests: 2 stored answers and fences pruned (before ")
    assert "pi_uses: 0 used XIDs pruned" in out
    code, out, err = run_bank(["--config", config, "prune-ledger"], capsys)
    assert (code, err) == (0, "")
    assert out.startswith("requests: 0 stored answers and fences pruned")


@pytest.mark.parametrize(
    "days",
    [0, MIN_RETENTION_DAYS - 1, MAX_RETENTION_DAYS + 1, -400, '"400"', "true", "400.5"],
)
def test_a_bad_retention_is_refused_naming_the_key(
    made: InitResult, capsys: pytest.CaptureFixture[str], days: object
) -> None:
    config = _config(made, days)
    with pytest.raises(ConfigError, match=r"ledger\.retention_days"):
        load(config)
    code, out, err = run_bank(["--config", str(config), "prune-ledger"], capsys)
    assert (code, out) == (1, "")
    assert "ledger.retention_days" in err


def test_the_default_retention_is_400_days(made: InitResult) -> None:
    assert load(made.directory / "setpay.toml").retention_days == 400
