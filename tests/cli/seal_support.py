"""What the ``setpay bank seal-ledger-keys`` tests share: a new bank of their own, and the
command run on it."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config import BankConfig, load
from gateway.provisioning import init_bank
from tests.cli.command_support import run_bank


def new_bank(directory: Path) -> BankConfig:
    """A bank made by ``setpay init`` in ``directory`` (EC keys); its configuration."""
    init_bank(directory, profile="ec", env={})
    return load(directory / "setpay.toml", env={})


def run_seal(config: BankConfig, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """``setpay bank --config ... seal-ledger-keys`` on that bank; (status, stdout, stderr)."""
    return run_bank(["--config", str(config.base_dir / "setpay.toml"), "seal-ledger-keys"], capsys)
