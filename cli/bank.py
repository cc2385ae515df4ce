"""``setpay bank``: the issuer's and acquirer's account operations (open, block, unblock,
close, show).

``open-account`` prints only the masked PAN; the full card data goes only to the file
the operator names with ``--card-out`` (created with mode 0600), for handing to the
cardholder's wallet. That file is created, exclusively, before the account is opened: an
account is never opened whose card data has nowhere to go. A ``--currency`` no account is
kept in, or a ``--bin`` that is not six digits, is a usage error (exit 2), refused before
the ledger is opened.

``open-merchant`` and ``show-merchant`` print the merchant's settlement account id: the
bank gives it to the merchant out of band, and the Merchant CA registers a merchant ID
the acquirer already holds an account for only when the request's account data names
that id (``setpay merchant register --account-file``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import IO

from cli.currency import currency_code
from gateway.bank_pki import ProvisioningError
from gateway.config import CONFIG_FILE, load
from gateway.issuer import open_ledger
from gateway.ledger import Ledger, LedgerError
from setcore.pan import PAN, is_bin, random_pan

# The bank's own issuer BIN when none is given: a BIN in the 4xxxxx range, like a test card.
DEFAULT_BIN = "411111"
# 16-digit PANs, the common length for card brands.
PAN_DIGITS = 16
# A PAN file holds at most 19 digits and a newline; anything longer is the wrong file.
MAX_PAN_FILE_BYTES = 64


class BankCommandError(Exception):
    """A bank command cannot run as given (its message names the option or file)."""


def _bin(text: str) -> str:
    """``--bin``'s value: the six digits a generated card number starts with, or argparse's
    usage error (random_pan would pad a shorter one with random digits, giving the card a
    BIN nobody chose)."""
    if not is_bin(text):
        # The value is not repeated: a card number given by mistake would be shown.
        raise argparse.ArgumentTypeError(
            f"a BIN is six digits 0-9 (given: {len(text)} characters), the first six of "
            f"the {PAN_DIGITS}-digit card number, whose other digits are random and a Luhn "
            "check digit"
        )
    return text


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register the subcommand."""
    p = sub.add_parser("bank", help="issuer account operations")
    p.add_argument("--config", type=Path, default=Path(CONFIG_FILE), help="bank setpay.toml")
    ops = p.add_subparsers(dest="bank_command", required=True)
    o = ops.add_parser("open-account", help="open a card account (prints the masked PAN)")
    o.add_argument("--limit", type=int, required=True, help="credit limit in minor units")
    o.add_argument(
        "--currency", type=currency_code, default=978, help="ISO 4217 numeric (default EUR)"
    )
    o.add_argument("--expiry", required=True, help="card expiry YYYYMM")
    o.add_argument(
        "--bin", type=_bin, default=DEFAULT_BIN,
        help=f"issuer BIN for a generated PAN: six digits (default {DEFAULT_BIN})",
    )  # fmt: skip
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
    m = ops.add_parser(
        "open-merchant", help="open a merchant settlement account (prints its account id)"
    )
    m.add_argument("--merchant-id", required=True)
    m.add_argument(
        "--currency", type=currency_code, default=978, help="ISO 4217 numeric (default EUR)"
    )
    s = ops.add_parser("show-merchant", help="show a merchant settlement account")
    s.add_argument("--merchant-id", required=True)


def _read_pan(path: Path) -> PAN:
    """The PAN the operator chose, from ``--pan-file``."""
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_PAN_FILE_BYTES + 1)
    except OSError as exc:
        raise BankCommandError(f"cannot read --pan-file {path}: {exc.strerror}") from None
    if len(raw) > MAX_PAN_FILE_BYTES:
        raise BankCommandError(f"--pan-file {path} is too large to hold a PAN")
    # InvalidPAN's messages never quote the digits.
    return PAN(raw.decode("ascii", errors="replace").strip())


def _create_card_file(path: Path) -> IO[str]:
    """The card file, created now (never over an existing one), readable by its owner only."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        raise BankCommandError(f"cannot create --card-out {path}: {exc.strerror}") from None
    return os.fdopen(fd, "w")


def _open_account(ledger: Ledger, args: argparse.Namespace) -> int:
    """Create the card file, open the account, write the card data into the file."""
    pan = (
        _read_pan(args.pan_file) if args.pan_file is not None else random_pan(args.bin, PAN_DIGITS)
    )
    out: Path = args.card_out
    handle = _create_card_file(out)
    with handle:
        try:
            account = ledger.open_card_account(pan.reveal(), args.expiry, args.limit, args.currency)
        except BaseException:
            out.unlink(missing_ok=True)
            raise
        card = {"pan": pan.reveal(), "expiry": args.expiry, "account": account.account_id}
        try:
            json.dump(card, handle)
            handle.flush()
            os.fsync(handle.fileno())
        except OSError as exc:
            # The card data is lost with the file: close the account nobody can use.
            out.unlink(missing_ok=True)
            ledger.close_card_account(account.account_id)
            raise BankCommandError(
                f"cannot write --card-out {out}: {exc.strerror}; account {account.account_id} "
                "closed again"
            ) from None
    print(f"opened {account.account_id} card {pan.masked} expiry {args.expiry} "
          f"limit {args.limit} ({args.currency}); card data in {out}")  # fmt: skip
    return 0


def run(args: argparse.Namespace) -> int:
    """Run one bank operation; errors are printed (never with a PAN), status 1."""
    try:
        ledger = open_ledger(load(args.config))
    except (LedgerError, ProvisioningError, ValueError, OSError) as exc:
        print(f"setpay bank: {exc}", file=sys.stderr)
        return 1
    try:
        cmd = args.bank_command
        if cmd == "open-account":
            return _open_account(ledger, args)
        if cmd == "open-merchant":
            merchant = ledger.open_merchant_account(args.merchant_id, args.currency)
            print(f"opened merchant {merchant.merchant_id} account {merchant.account_id} "
                  f"({merchant.currency})")  # fmt: skip
            return 0
        if cmd == "show-merchant":
            merchant = ledger.merchant_account(args.merchant_id)
            print(f"merchant {merchant.merchant_id} account {merchant.account_id} "
                  f"({merchant.currency}) balance {merchant.balance} "
                  f"pending {merchant.pending}")  # fmt: skip
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
    except (BankCommandError, LedgerError, ValueError, OSError) as exc:
        print(f"setpay bank: {exc}", file=sys.stderr)
        return 1
    finally:
        ledger.close()
