"""The numbers ``setpay bench authorize`` takes, read as every command's are
(``cli.number_options``: ASCII digits, a decimal point where a number may have one).

They are read here, when the command runs, rather than by argparse: whether a number is
in range is the plan's to say (``clients.loadtest.plan.Plan``, ``cli.bench``'s option
checks), in words scripts already match, with the same exit status (2, ``PlanError``).
A value not written in digits is refused the same way, naming the option, the range the
plan holds it to and the text given (``shown``), before anything starts.
"""

from __future__ import annotations

import argparse

from cli.number_options import read_decimal, read_whole, shown
from clients.loadtest.channels import MAX_CHANNELS
from clients.loadtest.errors import PlanError
from clients.loadtest.load import MAX_CONCURRENCY, MAX_RATE
from clients.loadtest.plan import MAX_DURATION_SECONDS, MAX_PREPARED, MAX_TIMEOUT_SECONDS
from gateway.config import MAX_WORKERS

# Whole-number options by their attribute: the range the run holds each to, in its words.
WHOLE = {
    "workers": f"--workers must be between 1 and {MAX_WORKERS}",
    "concurrency": f"concurrency must be between 1 and {MAX_CONCURRENCY}",
    "channels": f"channels must be between 1 and {MAX_CHANNELS}",
    "requests": f"requests must be between 1 and {MAX_PREPARED}",
    "cardholders": "--cardholders must be at least 1",
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
