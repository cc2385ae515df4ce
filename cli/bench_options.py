"""The options of ``setpay bench authorize``: its numbers, read as every command's are
(``cli.number_options``: ASCII digits, a decimal point where a number may have one), and
the checks of the options together (``check_options``, ``check_outputs``).

The numbers are read here, when the command runs, rather than by argparse: whether a
number is in range is the plan's to say (``clients.loadtest.plan.Plan``, and
``check_options`` for the bank's side of the run), in words scripts already match, with
the same exit status (2, ``PlanError``). A value not written in digits is refused the
same way, naming the option, the range the plan holds it to and the text given
(``shown``), before anything starts.
"""

from __future__ import annotations

import argparse
import os

from cli.bench_workdir import check_workdir
from cli.number_options import read_decimal, read_whole, shown
from clients.loadtest.channels import MAX_CHANNELS
from clients.loadtest.errors import PlanError
from clients.loadtest.load import MAX_CONCURRENCY, MAX_RATE
from clients.loadtest.plan import (
    MAX_DURATION_SECONDS,
    MAX_PREPARED,
    MAX_TIMEOUT_SECONDS,
    Plan,
)
from clients.loadtest.plot import require
from gateway.config import MAX_WORKERS
from setcore.pan import is_bin

# Minor units of the bank's settlement currency (its cards must be in its merchants'):
# ``cli.bench.DEFAULT_AMOUNT`` a purchase; a limit a day of load cannot exhaust (the
# ledger's maximum is 10^12).
DEFAULT_CREDIT_LIMIT = 10**11
# Most cardholders: each is a certificate from the bank's CA and a card account opened in
# its ledger (a target's is the user's bank, and they stay there), and the warm-up sends
# one AuthReq each. Registering takes about 11 ms a cardholder (ec, the development
# machine: 2,011 in 23 s), so this many take about a minute; it is several times the most
# callers (MAX_CONCURRENCY), so no two calls in flight need share a card's lock. A
# hundred million, unchecked, would register for days.
MAX_CARDHOLDERS = 5000

# Whole-number options by their attribute: the range the run holds each to, in its words.
WHOLE = {
    "workers": f"--workers must be between 1 and {MAX_WORKERS}",
    "concurrency": f"concurrency must be between 1 and {MAX_CONCURRENCY}",
    "channels": f"channels must be between 1 and {MAX_CHANNELS}",
    "requests": f"requests must be between 1 and {MAX_PREPARED}",
    "cardholders": f"--cardholders must be between 1 and {MAX_CARDHOLDERS}",
    "amount": "--amount must be between 1 and the bench cards' credit limit",
}
# Decimal options likewise.
DECIMAL = {
    "rate": f"rates must be above 0 and at most {MAX_RATE:.0f}/s",
    "load_fraction": "--load-fraction must be above 0 and at most 1",
    "duration": f"duration must be above 0 and at most {MAX_DURATION_SECONDS:.0f} s",
    "timeout": f"timeout must be above 0 and at most {MAX_TIMEOUT_SECONDS:.0f} s",
    "p99_max": "--p99-max must be a positive number of milliseconds",
}


def _option(name: str) -> str:
    return "--" + name.replace("_", "-")


def read_numbers(args: argparse.Namespace) -> None:
    """Replace each numeric option's text in ``args`` with its number (defaults are
    numbers already); ``PlanError`` naming the first one not written in digits."""
    for name, must in WHOLE.items():
        text = getattr(args, name)
        if isinstance(text, str):
            number = read_whole(text)
            if number is None:
                raise PlanError(
                    f"{_option(name)} is a whole number in digits 0-9 ({must}), not {shown(text)}"
                )
            setattr(args, name, number)
    for name, must in DECIMAL.items():
        text = getattr(args, name)
        if isinstance(text, str):
            value = read_decimal(text)
            if value is None:
                raise PlanError(
                    f"{_option(name)} is a number in digits 0-9 with an optional decimal "
                    f"point ({must}), not {shown(text)}"
                )
            setattr(args, name, value)
    if isinstance(args.rates, str):
        args.rates = read_rates(args.rates)


def read_rates(text: str) -> tuple[float, ...]:
    """``--rates a,b,c``: numbers as ``read_decimal`` reads them, spaces after a comma
    allowed; ``PlanError`` for anything else (the range is the plan's to check)."""
    parts = [part.strip(" ") for part in text.split(",")]
    rates = tuple(read_decimal(part) for part in parts if part)
    if not rates:
        raise PlanError("no rates given")
    if None in rates:
        raise PlanError(
            "--rates must be numbers separated by commas, in digits 0-9 with an optional "
            f"decimal point ({DECIMAL['rate']}), not {shown(text)}"
        )
    return tuple(rate for rate in rates if rate is not None)


def check_outputs(args: argparse.Namespace, plan: Plan) -> None:
    """Refuse, before anything runs, a report that could not be written once it has."""
    for option, path in (("--json", args.json), ("--plot", args.plot)):
        if path is None:
            continue
        folder = path.parent
        if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
            raise PlanError(f"{option}: cannot write {path.name} in {folder}")
    if args.plot is not None:
        if not plan.has_open_loops:
            raise PlanError("--plot needs open-loop steps (--rate, --rates or --load-fraction)")
        require()


def check_options(args: argparse.Namespace) -> None:
    """Refuse, before anything starts, options that make no runnable run (PlanError)."""
    if args.spawn and args.bank_config is not None:
        raise PlanError("--bank-config is for --target; --spawn makes its own bank")
    if args.spawn and (args.metrics_url or args.ca_target):
        raise PlanError("--metrics-url and --ca-target are for --target (a spawned bank's"
                         " page: --metrics)")  # fmt: skip
    if args.target and (args.keys or args.workdir or args.metrics):
        raise PlanError("--keys, --workdir and --metrics are for --spawn (a target's page:"
                         " --metrics-url)")  # fmt: skip
    if args.workdir is not None:
        check_workdir(args.workdir)  # a file, or an earlier run's bank: refused by path
    if args.workers is not None and not 1 <= args.workers <= MAX_WORKERS:
        raise PlanError(f"--workers must be between 1 and {MAX_WORKERS}")
    if not 1 <= args.cardholders <= MAX_CARDHOLDERS:
        raise PlanError(WHOLE["cardholders"])
    if not is_bin(args.bin):
        raise PlanError("--bin must be 6 digits")
    if not 1 <= args.amount <= DEFAULT_CREDIT_LIMIT:
        raise PlanError(
            f"--amount must be between 1 and {DEFAULT_CREDIT_LIMIT:,} minor units (the bench "
            "cards' credit limit)"
        )
