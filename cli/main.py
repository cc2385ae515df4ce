"""The ``setpay`` command: one front door with subcommands.

Each subcommand lives in its own module exposing ``add_parser(subparsers)`` and
``run(args) -> int``; this module only wires them, hardens the process before anything
else when it is the program (``cli.hardening``: no core file, not dumpable) and sets up
logging. It imports only the module of the subcommand the command line names: one whose
code (or a library under it) fails to import breaks that subcommand alone, not ``setpay
wallet`` beside it, and ``setpay --help`` lists every subcommand from the table below
without importing any. A program whose standard output is a pipe its reader closed
(``setpay ca list | head -1``) ends quietly, with EXIT_READER_GONE, not a traceback; but
a command that had already failed, and lost only the rest of its output, keeps its own
status (``setpay bench ... | head`` exits 3, not 141, for a run in doubt).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import signal
import sys
from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING, NoReturn

from cli import hardening, stdout_reader, usage_errors

if TYPE_CHECKING:
    from _typeshed import SupportsWrite

# Subcommand -> (module, its line in ``setpay --help``), in the order the help lists them.
# Each line repeats the one the module's add_parser gives (a test holds them equal), so
# that the listing imports no module.
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "init": ("cli.init", "create a new bank directory"),
    "bank": ("cli.bank", "issuer account operations"),
    "ca": ("cli.ca", "certificate authority operations"),
    "gateway": ("cli.gateway", "run the bank's gRPC services"),
    "merchant": ("cli.merchant", "the merchant: register, serve wallets, settle orders"),
    "wallet": ("cli.wallet", "the cardholder's wallet: register, purchase, inquire"),
    "demo": ("cli.demo", "run the whole SET story on this machine"),
    "bench": ("cli.bench", "load-test the authorization path"),
    "health": ("cli.health", "check a setpay server's health (exit 0 when SERVING)"),
    "keys": ("cli.keys", "manage keys in a key backend"),
}
# What ``--log-level`` takes, in any case: the names of logging's levels, and the two
# aliases logging itself accepts (WARN, FATAL).
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "WARN", "ERROR", "CRITICAL", "FATAL")
# The exit status of a command whose reader went away (``setpay ca list | head -1``): the
# shell's for a program SIGPIPE ended, 128 + its number, as ``ls | head`` gives. Python
# ignores SIGPIPE (a write raises BrokenPipeError instead), and setpay leaves it so: a
# server must not die of a peer that hung up.
EXIT_READER_GONE = 128 + signal.SIGPIPE


def build_parser(wired: Collection[str] | None = None) -> argparse.ArgumentParser:
    """The argument parser: the subcommands in ``wired`` (every one by default) with their
    own options, their modules imported; the others by name and help line only."""
    parser = _Parser(prog="setpay", description="SET (Secure Electronic Transaction) over gRPC.")
    parser.add_argument(
        "--log-level", type=str.upper, choices=LOG_LEVELS, default="WARNING",
        help="DEBUG, INFO, WARNING (default), ERROR or CRITICAL, in any case",
    )  # fmt: skip
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module_name, help_line) in SUBCOMMANDS.items():
        if wired is None or name in wired:
            importlib.import_module(module_name).add_parser(sub)
        else:
            # Stands in for the subcommand: listed by --help, and found by a first parse
            # that leaves the subcommand's own arguments (and -h) unread.
            sub.add_parser(name, help=help_line, add_help=False)
    return parser


class _Parser(argparse.ArgumentParser):
    """argparse's parser (its subcommands' too: ``add_subparsers`` makes them of the
    parent's class), but for a help whose reader has gone and a usage error's card number.

    argparse ignores a failed write: unbuffered, ``setpay --help | true`` exited 0, where
    buffered its flush failed in ``main``: 141. The help's write to standard output now
    raises, and ``main`` ends either as cut off. Its messages to standard error (a usage
    error's) are still argparse's: lost, they change nothing of the status (2).

    A usage error repeats what was typed (``unrecognized arguments: 1111 1111 1111``):
    its message is said, with the same words and status, with no card number in it
    (``cli.usage_errors``). What is one is judged on the message and on the words the
    parser was given (``_typed``): only those tell the rest of a card in one word
    (``--description 4539 148803436467`` leaves ``148803436467``) from a number. They are
    kept by the parse itself, not by ``main``, so that the program, ``main(argv)`` and a
    parser a test builds mask alike; a subcommand's parser is given the words after its
    name, and says the errors about them.
    """

    # The words the last parse was given (``sys.argv[1:]`` when none were).
    _typed: tuple[str, ...] = ()

    def parse_known_args(  # type: ignore[override] # typeshed's overloads, one signature
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        self._typed = tuple(sys.argv[1:] if args is None else args)
        return super().parse_known_args(args, namespace)

    def error(self, message: str) -> NoReturn:
        super().error(usage_errors.without_card_numbers(message, self._typed))

    def _print_message(self, message: str, file: SupportsWrite[str] | None = None) -> None:
        if message and file is not None and file is sys.stdout:
            file.write(message)  # BrokenPipeError: ``main``'s reader gone
            return
        super()._print_message(message, file)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the setpay command line; returns the exit status.

    Without ``argv`` this is the program (the ``setpay`` console script, ``python -m
    cli.main``): it reads ``sys.argv`` and hardens its own process first. With ``argv`` it
    is a call from inside another program (a test), whose process it leaves as it was: the
    hardening lasts for the whole process (a hard limit cannot be raised again), and would
    be the test session's from then on.
    """
    if argv is None:
        # Before any secret is read or any worker forked: they inherit it.
        hardened = hardening.harden_process(os.environ)
        try:
            code = _run(sys.argv[1:], hardened)
        except SystemExit as done:  # argparse's answer to --help, or to a usage error
            if not _flushed() and done.code in (0, None):
                return EXIT_READER_GONE
            raise
        except BrokenPipeError as broken:
            # Cut off while writing: what it had still to say is lost, whatever it would
            # have returned.
            stdout_reader.gone(broken)
            return EXIT_READER_GONE
        # Now, not at exit: a reader gone is seen here. Only a command that succeeded
        # ends as cut off; a failure keeps its own status (1), so that a gone reader does
        # not hide it (the bench keeps its run's status itself: ``cli.bench._report``).
        if not _flushed() and code == 0:
            return EXIT_READER_GONE
        return code
    return _run(list(argv), None)


def _flushed() -> bool:
    """Flush standard output: False if its reader has gone (what was left to write is
    dropped), BrokenPipeError if another pipe broke."""
    try:
        sys.stdout.flush()
    except BrokenPipeError as broken:
        stdout_reader.gone(broken)
        return False
    return True


def _run(words: list[str], hardened: hardening.Outcome | None) -> int:
    # The first parse imports nothing: it finds the subcommand, or itself answers
    # ``setpay --help`` and a wrong subcommand (exit 2). The words up to the subcommand's
    # name are the top-level options: parsed strictly, so an unknown one is refused
    # (exit 2) before the subcommand's module is imported, not after an ImportError.
    listing = build_parser(wired=())
    named, _ = listing.parse_known_args(words)
    listing.parse_args(words[: words.index(named.command) + 1])
    args = build_parser(wired=(named.command,)).parse_args(words)
    logging.basicConfig(
        level=getattr(logging, args.log_level),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if hardened is not None:
        hardening.report(hardened, logging.getLogger("setpay"))
    module = importlib.import_module(SUBCOMMANDS[args.command][0])
    code: int = module.run(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
