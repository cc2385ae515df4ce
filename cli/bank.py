"""``setpay bank``: the issuer's and acquirer's account operations (open, block, unblock,
close, show), and the ledger's retention (prune-ledger).

``open-account`` prints only the masked PAN; the full card data, with the card's new
enrolment code (``gateway.ledger.enrolment``: the secret the Cardholder CA asks for at
registration, of which the ledger keeps only a keyed hash), goes only to the file the
operator names with ``--card-out`` (created with mode 0600), for handing to the
cardholder's wallet. That file is created, exclusively, before the account is opened: an
account is never opened whose card data has nowhere to go. A ``--currency`` no account is
kept in, a ``--bin`` that is not six digits, or an ``--expiry`` that is not YYYYMM of a
year from 2000 to 2099 (no CA or gateway takes another), is a usage error (exit 2),
refused before the ledger is opened; so is a ``--card-out`` that could hold a card number
(``cli.path_options``: the file's name would show it). What the command says names the
``--card-out`` file as typed, but a card number typed with slashes between its groups,
taken as directories, is shown masked (``cli.path_options.shown_output_path``). A ledger
that cannot say whether it opened the account (StoreUnavailable: a commit whose
acknowledgement was lost) leaves the card file, with the card's number, expiry and code
but no account id: it may be the only copy of them; the command says so, and how to find
out (``issue-enrolment-code --card``).

An account's ``--currency`` (``open-account``, ``open-merchant``) is by default the bank's
``[ledger] settlement_currency``, the currency of the merchant accounts its CA opens: an
authorization whose card and merchant accounts differ in currency is declined
CURRENCY_MISMATCH, and an account's currency never changes.

``open-merchant`` and ``show-merchant`` print the merchant's settlement account id: the
bank gives it to the merchant out of band, and the Merchant CA registers a merchant ID
the acquirer already holds an account for only when the request's account data names
that id (``setpay merchant register --account-file``). Either takes only an ID the
Merchant CA registers (``cli.bank_show.merchant_id``), or it is a usage error (exit 2): an
account under another could never be registered, nor closed, nor shown.

``release-card`` forgets a card's refused registrations at the Cardholder CA
(``gateway.ca.card_failures``), so that a card refused outright there registers again at
once: the holder's recourse when someone else's tries locked it. ca.db keeps the count
under a keyed hash of the card number only the ledger keys can compute, so the command
reads the card (its file, or a PAN file) and the ledger keys, and prints the masked PAN
only. It may run beside the bank: ca.db takes each writer in turn (BEGIN IMMEDIATE,
waiting out the others' transactions).

``issue-enrolment-code`` gives a card a new enrolment code, written with the card data
to a new ``--card-out`` file before the ledger takes it: a card opened before codes
existed, whose refused registrations the Cardholder CA counts and locks, is no longer
locked once it has one; a card whose code was lost gets another, and the earlier one
stops working. A ledger that cannot say whether it took the code (StoreUnavailable: a
commit whose acknowledgement was lost) leaves the file, which may hold the card's only
copy of it: the command says so, and is run again.

``prune-ledger`` drops what ``[ledger] retention_days`` lets go (``gateway.ledger.retention``
says what and why): stored answers and used XIDs, in short transactions, beside a running
bank as ``open-account`` is; ``--dry-run`` only counts them. It prints one line per table
and exits 0, or 1 on an error (a bad setting names its key).

``seal-ledger-keys`` rewrites an older bank's plaintext ``ledger.keys`` sealed under the
key backend (``gateway.ledger_keys``), with the same keys; the bank refuses to start on a
plaintext one and names this command. The keys must first be the ledger's own
(``gateway.ledger.key_check``): a plaintext file from elsewhere (an old backup's, another
bank's) is refused, and nothing changes.

Commands of the ledger's store alone, no keys: ``cli.bank_books``, ``cli.bank_unanswered``.
The card a command names, its card file or PAN file, is read by ``cli.bank_card_file``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

from cli import bank_books, bank_unanswered
from cli.bank_card_file import BankCommandError, read_card_pan, read_pan
from cli.bank_show import card_account_id, card_line, merchant_id, merchant_line
from cli.currency import currency_code
from cli.number_options import whole
from cli.path_options import output_path, shown_output_path
from gateway.bank_pki import ProvisioningError, bank_keys_uri, open_ca_store
from gateway.ca.card_failures import release
from gateway.ca.errors import CaError
from gateway.config import CONFIG_FILE, BankConfig, load
from gateway.issuer import open_ledger, open_store
from gateway.ledger import Ledger, LedgerError, StoreUnavailable
from gateway.ledger.enrolment import new_enrolment_code
from gateway.ledger.ledger import wall_clock_ms as ledger_now_ms
from gateway.ledger.limits import MAX_AMOUNT
from gateway.ledger.pruning import prune
from gateway.ledger.retention import DAY_MS
from gateway.ledger_keys import seal_ledger_keys
from hsm.errors import KeyBackendError
from hsm.uri import open_backend
from setcore.errors import SetcoreError
from setcore.pan import (
    MAX_EXPIRY_YEAR,
    MIN_EXPIRY_YEAR,
    PAN,
    check_expiry,
    is_bin,
    random_pan,
)
from setcore.pki.extensions import MAX_MERCHANT_ID_CHARS

# The bank's own issuer BIN when none is given: a BIN in the 4xxxxx range, like a test card.
DEFAULT_BIN = "411111"
# 16-digit PANs, the common length for card brands.
PAN_DIGITS = 16


def _expiry(text: str) -> str:
    """``--expiry``'s value: YYYYMM of a year from ``MIN_EXPIRY_YEAR`` to ``MAX_EXPIRY_YEAR``,
    or argparse's usage error. The ledger takes any year, but no wallet, CA or gateway
    takes a card of another (``setcore.pan.check_expiry``): opened, it could never be
    registered or used to pay."""
    try:
        return check_expiry(text)
    except SetcoreError:
        # The value is not repeated: a card number given by mistake would be shown.
        raise argparse.ArgumentTypeError(
            f"a card expiry is YYYYMM, a month 01 to 12 of a year from {MIN_EXPIRY_YEAR} to "
            f"{MAX_EXPIRY_YEAR} (given: {len(text)} characters)"
        ) from None


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
    o.add_argument(
        "--limit", type=whole(0, MAX_AMOUNT, "(minor units)"), required=True,
        help="credit limit in minor units",
    )  # fmt: skip
    o.add_argument(
        "--currency", type=currency_code,
        help="ISO 4217 numeric (default: the bank's [ledger] settlement_currency)",
    )  # fmt: skip
    o.add_argument(
        "--expiry", type=_expiry, required=True,
        help=f"card expiry YYYYMM, of a year from {MIN_EXPIRY_YEAR} to {MAX_EXPIRY_YEAR}",
    )  # fmt: skip
    o.add_argument(
        "--bin", type=_bin, default=DEFAULT_BIN,
        help=f"issuer BIN for a generated PAN: six digits (default {DEFAULT_BIN})",
    )  # fmt: skip
    o.add_argument("--pan-file", type=Path, help="read the PAN from this file instead")
    o.add_argument("--card-out", type=output_path, required=True, help="write the card data here")
    e = ops.add_parser(
        "issue-enrolment-code",
        help="give a card a new enrolment code (the earlier one stops working), written with "
        "the card data to --card-out",
    )
    code_card = e.add_mutually_exclusive_group(required=True)
    code_card.add_argument("--card", type=Path, help="the card file open-account wrote")
    code_card.add_argument("--pan-file", type=Path, help="read the PAN from this file instead")
    e.add_argument(
        "--card-out", type=output_path, required=True, help="write the new card file here"
    )
    for name, text in (
        ("block-account", "block a card account"),
        ("unblock-account", "unblock a card account"),
        ("close-account", "close a card account"),
        ("show-account", "show a card account (masked PAN)"),
    ):
        q = ops.add_parser(name, help=text)
        q.add_argument("--account", type=card_account_id, required=True, help="card account id")
    m = ops.add_parser(
        "open-merchant", help="open a merchant settlement account (prints its account id)"
    )
    m.add_argument(
        "--merchant-id", type=merchant_id, required=True,
        help=f"the merchant's ID, 1 to {MAX_MERCHANT_ID_CHARS} characters",
    )  # fmt: skip
    m.add_argument(
        "--currency", type=currency_code,
        help="ISO 4217 numeric (default: the bank's [ledger] settlement_currency)",
    )  # fmt: skip
    s = ops.add_parser("show-merchant", help="show a merchant settlement account")
    s.add_argument("--merchant-id", type=merchant_id, required=True)
    r = ops.add_parser(
        "release-card",
        help="let a card refused outright at registration register again (prints whether "
        "the Cardholder CA counted refusals of it)",
    )
    card = r.add_mutually_exclusive_group(required=True)
    card.add_argument("--card", type=Path, help="the card file open-account --card-out wrote")
    card.add_argument("--pan-file", type=Path, help="read the PAN from this file instead")
    g = ops.add_parser(
        "prune-ledger",
        help="drop stored answers and used XIDs older than [ledger] retention_days (may run "
        "beside the bank)",
    )
    g.add_argument("--dry-run", action="store_true", help="count what would go; change nothing")
    ops.add_parser(
        "seal-ledger-keys",
        help="seal a plaintext ledger.keys (an older bank's) under the key backend, with the "
        "same keys",
    )
    bank_books.add_parsers(ops)
    bank_unanswered.add_parsers(ops)


def _release_card(config: BankConfig, ledger: Ledger, args: argparse.Namespace) -> int:
    """Forget the card's refused registrations in ca.db; say whether any were counted."""
    pan = read_card_pan(args.card) if args.card is not None else read_pan(args.pan_file)
    key = ledger.card_refusals_key(pan.reveal())
    store = open_ca_store(config)
    try:
        with store.write() as tx:
            counted = release(tx, key)
    finally:
        store.close()
    if counted is None:
        print(f"card {pan.masked}: no refused registrations counted; nothing to release")
        return 0
    refused = ""
    if counted.locked_until_ms > 0:
        refused = f", refused outright until {_utc(counted.locked_until_ms)}"
    print(f"card {pan.masked}: released {counted.failures} refused registrations counted "
          f"since {_utc(counted.window_start_ms)}{refused}; it may register again")  # fmt: skip
    return 0


def _utc(ms: int) -> str:
    """A Unix-milliseconds time for people, in UTC to the minute."""
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M UTC")


def _create_card_file(path: Path) -> IO[str]:
    """The card file, created now (never over an existing one), readable by its owner only."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        raise BankCommandError(
            f"cannot create --card-out {shown_output_path(path)}: {exc.strerror}"
        ) from None
    return os.fdopen(fd, "w")


def _write_card_file(
    handle: IO[str], out: Path, card: dict[str, str], undo: Callable[[], str]
) -> None:
    """Write the card data into the card file just created, and to disk before the
    command says it is there. On failure the file goes (a partial card file is no card
    file) and ``undo`` takes back what the ledger did for it, saying what."""
    try:
        json.dump(card, handle)
        handle.flush()
        os.fsync(handle.fileno())
    except OSError as exc:
        out.unlink(missing_ok=True)
        raise BankCommandError(
            f"cannot write --card-out {shown_output_path(out)}: {exc.strerror}; {undo()}"
        ) from None


def _currency(config: BankConfig, args: argparse.Namespace) -> int:
    """``--currency``, or else the bank's settlement currency (its merchants' accounts')."""
    given: int | None = args.currency
    return config.settlement_currency if given is None else given


def _open_account(config: BankConfig, ledger: Ledger, args: argparse.Namespace) -> int:
    """Create the card file, open the account, write the card data into the file."""
    pan = read_pan(args.pan_file) if args.pan_file is not None else random_pan(args.bin, PAN_DIGITS)
    currency = _currency(config, args)
    out: Path = args.card_out
    shown = shown_output_path(out)
    handle = _create_card_file(out)
    with handle:
        code = new_enrolment_code()
        try:
            account = ledger.open_card_account(
                pan.reveal(), args.expiry, args.limit, currency, enrolment_code=code
            )
        except (StoreUnavailable, KeyboardInterrupt) as exc:  # either way, not known
            _keep_unconfirmed_card(handle, out, _card_data(pan, args.expiry, None, code))
            raise BankCommandError(
                f"{str(exc) or 'interrupted'}; the ledger may or may not have opened an "
                f"account for the card in {shown} (kept, without an account id: it may be the "
                "only copy of the card's number and enrolment code). Once the ledger answers, run "
                f"issue-enrolment-code --card {shown} with another --card-out: if the account "
                f"was opened, that file is its card (then destroy {shown}); if there is no "
                f"account for the card, destroy {shown} and open the account again"
            ) from exc
        except BaseException:
            out.unlink(missing_ok=True)
            raise

        def close_again() -> str:
            # The card data is lost with the file: close the account nobody can use.
            ledger.close_card_account(account.account_id)
            return f"account {account.account_id} closed again"

        card = _card_data(pan, args.expiry, account.account_id, code)
        _write_card_file(handle, out, card, close_again)
    print(f"opened {account.account_id} card {pan.masked} expiry {args.expiry} "
          f"limit {args.limit} ({currency}); card data in {shown}")  # fmt: skip
    return 0


def _keep_unconfirmed_card(handle: IO[str], out: Path, card: dict[str, str]) -> None:
    """Write the card data of an account the ledger may or may not have opened into its
    card file, which stays: the ledger may hold the account and the hash of its code,
    and the file is then their only other copy (a random card number nobody else knows).
    The wallet and ``issue-enrolment-code --card`` read it as a card file."""
    _write_card_file(
        handle, out, card,
        lambda: "the ledger may or may not have opened an account for the card",
    )  # fmt: skip


def _card_data(pan: PAN, expiry: str, account_id: str | None, code: str) -> dict[str, str]:
    """What a card file holds: the card, its account (None: not known) and its
    enrolment code."""
    card = {"pan": pan.reveal(), "expiry": expiry}
    if account_id is not None:
        card["account"] = account_id
    card["enrolment_code"] = code
    return card


def _issue_enrolment_code(ledger: Ledger, args: argparse.Namespace) -> int:
    """Write the card file with a new code, then give the card that code in the ledger:
    a code the holder could never be given must not replace the one it has."""
    pan = read_card_pan(args.card) if args.card is not None else read_pan(args.pan_file)
    account = ledger.find_card_account(pan.reveal())
    out: Path = args.card_out
    shown = shown_output_path(out)
    code = new_enrolment_code()
    card = _card_data(pan, account.expiry, account.account_id, code)
    with _create_card_file(out) as handle:
        _write_card_file(handle, out, card, lambda: "the card's code is unchanged")
    try:
        ledger.set_enrolment_code(account.account_id, code)
    except (StoreUnavailable, KeyboardInterrupt) as exc:
        # Unknown outcome (a commit whose acknowledgement was lost, or not awaited): the
        # ledger may hold this code, and the file may be its only copy, so the file stays.
        raise BankCommandError(
            f"{str(exc) or 'interrupted'}; the ledger may or may not hold the code in {shown} "
            "(kept): run issue-enrolment-code again with another --card-out once the ledger "
            f"answers, then destroy {shown}"
        ) from exc
    except BaseException:
        out.unlink(missing_ok=True)
        raise
    print(f"card {pan.masked} account {account.account_id}: new enrolment code in {shown}; "
          "any earlier code of the card no longer works, and its refused registrations "
          "no longer lock it")  # fmt: skip
    return 0


def _prune_ledger(config: BankConfig, ledger: Ledger, args: argparse.Namespace) -> int:
    """Prune (or with ``--dry-run`` count) to the configured retention; one line a table."""
    days = config.retention_days
    before = _utc(ledger_now_ms() - days * DAY_MS)
    if args.dry_run:
        counted = ledger.prunable(days)
        print(f"requests: {counted.requests} stored answers and fences would go (before {before})")
        print(f"pi_uses: {counted.pi_uses} used XIDs would go (cards expired before {before})")
        return 0
    pruned = prune(ledger, days)
    print(f"requests: {pruned.requests} stored answers and fences pruned (before {before})")
    print(f"pi_uses: {pruned.pi_uses} used XIDs pruned (cards expired before {before})")
    return 0


def _seal_ledger_keys(config: BankConfig) -> int:
    """``seal-ledger-keys``: before the ledger is opened, which a plaintext file stops;
    its store alone, for the keys to be checked against (a file not the ledger's is
    refused, not sealed)."""
    with open_backend(bank_keys_uri(config)) as backend, open_store(config) as store:
        done = seal_ledger_keys(config, backend, store)
    if not done.sealed_now:
        print(f"{done.path} is already sealed, to key {done.key}: nothing changed")
        return 0
    print(f"{done.path} sealed to key {done.key}, with the same ledger keys; backups made "
          "before hold them in plaintext: destroy them, or keep them as the token is "
          "kept")  # fmt: skip
    return 0


def run(args: argparse.Namespace) -> int:
    """Run one bank operation; errors are printed (never with a PAN), status 1."""
    try:
        config = load(args.config)
        if args.bank_command == "seal-ledger-keys":
            return _seal_ledger_keys(config)
        if args.bank_command in bank_books.COMMANDS:  # no keys: the store alone
            return bank_books.run(config, args)
        if args.bank_command in bank_unanswered.COMMANDS:
            return bank_unanswered.run(config, args)
        ledger = open_ledger(config)
    except BrokenPipeError:
        raise  # standard output's reader went away (``| head``): cli.main ends quietly
    except (LedgerError, ProvisioningError, KeyBackendError, ValueError, OSError) as exc:
        print(f"setpay bank: {exc}", file=sys.stderr)
        return 1
    try:
        cmd = args.bank_command
        if cmd == "open-account":
            return _open_account(config, ledger, args)
        if cmd == "issue-enrolment-code":
            return _issue_enrolment_code(ledger, args)
        if cmd == "release-card":
            return _release_card(config, ledger, args)
        if cmd == "prune-ledger":
            return _prune_ledger(config, ledger, args)
        if cmd == "open-merchant":
            merchant = ledger.open_merchant_account(args.merchant_id, _currency(config, args))
            print(f"opened merchant {merchant.merchant_id} account {merchant.account_id} "
                  f"({merchant.currency})")  # fmt: skip
            return 0
        if cmd == "show-merchant":
            print(merchant_line(ledger.merchant_account(args.merchant_id)))
            return 0
        change = {
            "block-account": ledger.block_card_account,
            "unblock-account": ledger.unblock_card_account,
            "close-account": ledger.close_card_account,
            "show-account": ledger.card_account,
        }[cmd]
        print(card_line(change(args.account)))
        return 0
    except BrokenPipeError:
        raise
    except (BankCommandError, LedgerError, CaError, ValueError, OSError) as exc:
        print(f"setpay bank: {exc}", file=sys.stderr)
        return 1
    finally:
        ledger.close()
