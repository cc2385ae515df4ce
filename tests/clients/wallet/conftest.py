"""Fixtures for the wallet's tests: ``setpay`` commands run as a cardholder's shell would,
with the wallet's passphrase set."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pytest

from clients.wallet.vault import PASSPHRASE_ENV
from tests.clients.bank_support import WALLET_PASSPHRASE
from tests.clients.cli_support import run_cli

Setpay = Callable[[Sequence[str]], tuple[int, str, str]]


@pytest.fixture
def setpay(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Setpay:
    """Runs ``setpay ARGV...`` in this process (``run_cli``); (status, stdout, stderr). The
    wallet's passphrase is in the environment from the start of the test on."""
    monkeypatch.setenv(PASSPHRASE_ENV, WALLET_PASSPHRASE)
    return lambda argv: run_cli(argv, capsys)
