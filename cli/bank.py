"""``setpay bank``: the issuer's account operations (open, block, unblock, close, show).

``open-account`` prints only the masked PAN; the full card data goes only to the file
the operator names with ``--card-out`` (created with mode 0600), for handing to the
cardholder's wallet.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from gateway.config import CONFIG_FILE, load
from gateway.issuer import open_ledger
from gateway.ledger import Ledger, LedgerError
from setcore.pan import PAN, random_pan

# The bank's own issuer BIN when none is given: a BIN in the 4xxxxx range, like a test card.
DEFAULT_BIN = "411111"
# 16-digit PANs, the common length for card brands.
PAN_DIGITS = 16


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register the subcommand."""
    p = sub.add_parser("bank", help="issuer account operations")
    p.add_argument("--config", type=Path, default=Path(CONFIG_FILE), help="bank setpay.toml")
    ops = p.add_subparsers(dest="bank_command", required=True)
    o = ops.add_parser("open-account", help="open a card account (prints the masked PAN)")
    o.add_argument("--limit", type=int, required=True, help="credit limit in minor units")
    o.add_argument("--currency", type=int, default=978, help="ISO 4217 numeric (default EUR)")
    o.add_argument("--expiry", required=True, help="card expiry YYYYMM")
    o.add_argument("--bin", default=DEFAULT_BIN, help="issuer BIN for a generated PAN")
    o.add_argument("--pan-file", type=Path, help="read the PAN from this file instead")
    o.add_argument("--card-out", type=Path, required=True, help="write the card data here")
    for name, text in (
        ("block-account", "block a card account"),
        ("unblock-account", "unblock a card account"),
        ("close-account", "close a card account"),
        ("show-account", "show a card account (masked PAN)"),
    ):
        q = ops.add_parser(name, help=text)
        q.add_argument("--account", required=True, help="card account id")
    m = ops.add_parser("open-merchant", help="open a merchant settlement account")
    m.add_argument("--merchant-id", required=True)
    m.add_argument("--currency", type=int, default=978)


def _write_card(path: Path, pan: PAN, expiry: str, account_id: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({"pan": pan.reveal(), "expiry": expiry, "account": account_id}, f)


def _open_account(ledger: Ledger, args: argparse.Namespace) -> int:
    if args.pan_file is not None:
        pan = PAN(args.pan_file.read_text().strip())
    else:
        pan = random_pan(args.bin, PAN_DIGITS)
    account = ledger.open_card_account(pan.reveal(), args.expiry, args.limit, args.currency)
    _write_card(args.card_out, pan, args.expiry, account.account_id)
    print(f"opened {account.account_id} card {pan.masked} expiry {args.expiry} "
          f"limit {args.limit} ({args.currency}); card data in {args.card_out}")  # fmt: skip
    return 0


def run(args: argparse.Namespace) -> int:
    """Run one bank operation."""
    ledger = open_ledger(load(args.config))
    try:
        cmd = args.bank_command
        if cmd == "open-account":
            return _open_account(ledger, args)
        if cmd == "open-merchant":
            merchant = ledger.open_merchant_account(args.merchant_id, args.currency)
            print(f"opened merchant account {merchant.merchant_id}")
            return 0
        change = {
            "block-account": ledger.block_card_account,
            "unblock-account": ledger.unblock_card_account,
            "close-account": ledger.close_card_account,
            "show-account": ledger.card_account,
        }[cmd]
        account = change(args.account)
        print(f"{account.account_id} {account.masked_pan} {account.status.value} "
              f"limit {account.credit_limit} available {account.available}")  # fmt: skip
        return 0
    except (LedgerError, ValueError, FileExistsError) as exc:
        print(f"setpay bank: {exc}", file=sys.stderr)
        return 1
    finally:
        ledger.close()
