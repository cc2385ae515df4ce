"""``setpay merchant register`` and ``serve`` (a real process, stopped by SIGTERM)."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from clients.merchant.records import Money
from clients.merchant.store import MerchantStore
from clients.wallet.purchases import Initiation
from tests.clients.bank_support import (
    EUR,
    WALLET_PASSPHRASE,
    RunningBank,
    configure_merchant,
    new_wallet,
)
from tests.clients.cli_support import run_cli

# How long the merchant process may take to start, and to stop after SIGTERM (its grace
# period is 5 s); these bound a hang, they are not performance assertions.
START_SECONDS = 60
STOP_SECONDS = 30
# Runs ``setpay merchant`` in a process of its own, through the subcommand's module alone.
RUNNER = (
    "import argparse, sys, cli.merchant as m; p = argparse.ArgumentParser(); "
    "m.add_parser(p.add_subparsers(dest='command')); sys.exit(m.run(p.parse_args()))"
)


def test_register_then_register_again(
    bank: RunningBank, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = tmp_path / "m-cli-register"
    configure_merchant(bank, directory, "m-cli-register", pin_root=False)
    base = ["merchant", "--dir", str(directory), "register"]
    status, _, err = run_cli(base, capsys)
    assert status == 2 and "--root" in err
    status, out, err = run_cli(
        [*base, "--root", str(bank.directory / "certs/brand-root.der")], capsys
    )
    assert (status, err) == (0, "")
    assert out.startswith("registered m-cli-register: signature certificate")
    assert (directory / "certs/chain.pem").read_bytes().startswith(b"-----BEGIN CERTIFICATE")
    status, _, err = run_cli(base, capsys)
    assert status == 1 and "already certified" in err


def test_serve_process_answers_wallets_and_stops_on_sigterm(
    bank: RunningBank, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = tmp_path / "m-cli-serve"
    configure_merchant(bank, directory, "m-cli-serve")
    assert run_cli(["merchant", "--dir", str(directory), "register"], capsys)[0] == 0
    store = MerchantStore(directory / "merchant.db")
    try:
        store.add_offer(b"lamp-1", b"a lamp", Money(EUR, 3300), "setpay")
    finally:
        store.close()
    process = subprocess.Popen(
        [sys.executable, "-c", RUNNER, "merchant", "--dir", str(directory), "serve"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ),
    )  # fmt: skip
    try:
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], START_SECONDS)
        line = process.stdout.readline() if ready else ""
        assert "serving on port" in line, process.stderr.read() if process.stderr else ""
        port = int(line.split()[-1])
        wallet = new_wallet(bank, tmp_path / "wallet", f"127.0.0.1:{port}")
        try:
            record = wallet.shopper(WALLET_PASSPHRASE).purchase(
                wallet.config.require_merchant(), Initiation(b"lamp-1", b"a lamp", EUR, 3300)
            )
        finally:
            wallet.close()
        assert record.auth_code == "AUTH_CODE_APPROVED"
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=STOP_SECONDS) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    status, out, _ = run_cli(["merchant", "--dir", str(directory), "orders"], capsys)
    assert status == 0 and "authorized" in out
