"""``setpay bank show-batch`` and ``check-books``: the bank's own reading of its settlement
batches and books, from the ledger alone.

    setpay bank --config FILE show-batch --merchant-id ID --batch BATCH
    setpay bank --config FILE check-books

``show-batch`` prints a merchant's batch as the ledger holds it (``gateway.ledger.reports.
batch_totals``): its state, and for each currency its transactions are in, how many
captures, capture reversals, credits and credit reversals it holds and their sums, in
major units by the currency's ISO 4217 minor unit and, beside them, in the minor units the
ledger counts; then the net the batch settles to the merchant. What the merchant's
``setpay merchant batch query`` reconciles against is the gateway's answer; this is the
bank's side of it, whoever asks. A ``--batch`` that is not a batch id as the ledger mints
them (``batch-`` and ``BATCH_ID_CHARS`` lowercase base32 characters) is a usage error
(exit 2), the value not repeated; a merchant without an account, or a batch not that
merchant's, is an error (exit 1, as ``show-merchant`` and ``show-account`` exit for an
unknown one) in which a card number typed as either is masked.

``check-books`` runs the books audit (``gateway.ledger.books.differences``: the checks
``check_balanced`` makes, listing each difference instead of stopping at the first) on one
snapshot of the ledger, writing nothing, and may run beside the bank. It prints ``books
balance`` and exits 0, or prints each difference (at most ``books.MAX_DIFFERENCES``, and
says when there are more) and exits 5, ``EXIT_DIFFERS``, as ``setpay merchant batch``'s
reconciliation does for figures that disagree: not a failure of the command (1), but
books someone has to look at. A difference names a currency, account, hold or transfer
by its id, never a card number.

Neither command needs the ledger's keys (no PAN is read), so neither opens the key
backend: the ledger's store alone, opened ``read_only``. Neither creates, migrates or
locks a ledger: a SQLite ledger file that is not there, one holding no ledger (an empty
file), a PostgreSQL database or schema without one, or a ledger at another schema version
than this release's is an error (exit 1), where opening the store for writing would have
made an empty ledger (whose books balance and which holds no batch) or migrated the one
there. The SQLite file is read over ``mode=ro`` connections: its mode is left as it is, no
lock file is made, and a write transaction another process holds does not stop the read.
"""

from __future__ import annotations

import argparse
import re
import sys
from functools import partial

from cli.bank_ledger import NoLedger, open_existing_store, utc
from cli.bank_show import merchant_id
from gateway.config import BankConfig
from gateway.ledger import LedgerError, LedgerStore
from gateway.ledger.batches import BATCH_ID_BYTES
from gateway.ledger.books import MAX_DIFFERENCES, differences
from gateway.ledger.outcomes import TransactionKind
from gateway.ledger.reports import BatchTotals, batch_totals
from setcore.currency import minor_unit_on_record

# The books differ: not a failure (1) or a usage error (2). The same status as
# ``cli.merchant_batch.EXIT_DIFFERS``, a reconciliation's figures that disagree.
EXIT_DIFFERS = 5
# The ``setpay bank`` operations this module runs, and the help of each.
COMMANDS = {
    "show-batch": "show a merchant's settlement batch: its state and totals per currency",
    "check-books": "audit the ledger's books on a snapshot, writing nothing (exit 5 when "
    "they do not balance, each difference printed)",
}
# ``gateway.ledger.identifiers.new_id("batch", BATCH_ID_BYTES)``: lowercase base32, five
# bits a character, unpadded.
BATCH_ID_CHARS = -(-BATCH_ID_BYTES * 8 // 5)
_BATCH_ID = re.compile(rf"batch-[a-z2-7]{{{BATCH_ID_CHARS}}}")
# Each kind as the operator reads it, in the order shown.
_KINDS = {
    TransactionKind.CAPTURE: "captures",
    TransactionKind.CAPTURE_REVERSAL: "capture reversals",
    TransactionKind.CREDIT: "credits",
    TransactionKind.CREDIT_REVERSAL: "credit reversals",
}


def batch_id(text: str) -> str:
    """``--batch``'s value: a batch id as the ledger mints them, or argparse's usage error."""
    if _BATCH_ID.fullmatch(text) is None:
        # The value is not repeated: a card number given by mistake would be shown.
        raise argparse.ArgumentTypeError(
            f"a batch id is batch- and {BATCH_ID_CHARS} lowercase letters and digits 2-7, as "
            f"the gateway answered the merchant's batch open (given: {len(text)} characters)"
        )
    return text


def add_parsers(ops: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register ``show-batch`` and ``check-books`` under ``setpay bank``."""
    show = ops.add_parser("show-batch", help=COMMANDS["show-batch"])
    show.add_argument("--merchant-id", type=merchant_id, required=True, help="the merchant's ID")
    show.add_argument(
        "--batch", type=batch_id, required=True, metavar="BATCH",
        help=f"the batch's id (batch- and {BATCH_ID_CHARS} characters)",
    )  # fmt: skip
    ops.add_parser(
        "check-books", help=COMMANDS["check-books"],
        epilog="exit status: 0 the books balance; 1 the ledger could not be read; 5 they "
        "do not, each difference printed",
    )  # fmt: skip


def run(config: BankConfig, args: argparse.Namespace) -> int:
    """Run ``show-batch`` or ``check-books`` on the ledger's store; the exit status. Errors
    are printed as the other ``setpay bank`` commands print theirs (status 1)."""
    try:
        store = open_existing_store(config)
        try:
            if args.bank_command == "show-batch":
                found = store.read(
                    partial(batch_totals, merchant_id=args.merchant_id, batch_id=args.batch)
                )
                for line in batch_lines(found):
                    print(line)
                return 0
            return _check_books(store)
        finally:
            store.close()
    except BrokenPipeError:
        raise  # standard output's reader went away (``| head``): cli.main ends quietly
    except (NoLedger, LedgerError, OSError) as exc:
        print(f"setpay bank: {exc}", file=sys.stderr)
        return 1


def _check_books(store: LedgerStore) -> int:
    """Print ``books balance``, or each difference and how many (``EXIT_DIFFERS``)."""
    found = store.read(partial(differences, limit=MAX_DIFFERENCES + 1))
    if not found:
        print("books balance")
        return 0
    for problem in found[:MAX_DIFFERENCES]:
        print(problem)
    if len(found) > MAX_DIFFERENCES:
        print(f"more than {MAX_DIFFERENCES} differences, the first {MAX_DIFFERENCES} listed: "
              "the books do not balance")  # fmt: skip
    else:
        print(f"{len(found)} difference{'s' if len(found) > 1 else ''}: the books do not balance")
    return EXIT_DIFFERS


def batch_lines(batch: BatchTotals) -> list[str]:
    """A batch for the operator: a line of its state, then its totals by currency."""
    state = f"{batch.status}, opened {utc(batch.opened_at_ms)}"
    if batch.closed_at_ms is not None:
        state += f", closed {utc(batch.closed_at_ms)}"
    lines = [f"merchant {batch.merchant_id} batch {batch.batch_id}: {state}"]
    for currency, kinds in batch.totals.items():
        digits = minor_unit_on_record(currency)
        unit = "no ISO 4217 minor unit" if digits is None else f"exponent {digits}"
        if currency != batch.account_currency:
            unit += f"; not the merchant account's {batch.account_currency}: run check-books"
        lines.append(f"  currency {currency} ({unit}):")
        for kind, name in _KINDS.items():
            figures = kinds[kind]
            lines.append(f"    {name} {figures.count}: {_amount(figures.amount, digits)}")
        lines.append(f"    net to the merchant: {_amount(batch.net(currency), digits)}")
    return lines


def major_units(amount: int, digits: int) -> str:
    """``amount`` minor units as major units with ``digits`` decimals: 4250, 2 is 42.50."""
    sign = "-" if amount < 0 else ""
    units, minor = divmod(abs(amount), 10**digits)
    return f"{sign}{units}.{minor:0{digits}d}" if digits else f"{sign}{units}"


def _amount(amount: int, digits: int | None) -> str:
    """An amount in major units, and the minor units the ledger counts."""
    if digits is None:  # no unit on record: only the ledger's count means anything
        return f"{amount} minor units"
    return f"{major_units(amount, digits)} ({amount} minor units)"
