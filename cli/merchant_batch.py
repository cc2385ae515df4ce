"""``setpay merchant batch``: open, close, purge and query settlement batches; reconcile.

    setpay merchant [--dir DIR] batch open
    setpay merchant [--dir DIR] batch purge --batch ID
    setpay merchant [--dir DIR] batch {close,query} --batch ID [--details N [--start K]]

``--details N`` lists up to N of the batch's transactions (1 to MAX_TRANSACTION_DETAILS, the
gateway's page), after sequence number K with ``--start K`` (0, the first page, by
default); when the batch holds more, the command says the ``--start`` of the next page.
An opened batch holds nothing yet and a purged one no longer lists anything, so open and
purge take neither. ``--batch ID`` is 1 to MAX_BATCH_ID_CHARS characters (the protocol's
bound, which the gateway decodes against): an empty one (an unset shell variable) or a
longer one is a usage error before anything is opened, signed or stored. Sent, it was
refused as DECODING_FAILURE, and a close of batch "" whose answer was lost stayed pending
where a pending open waits, holding up every ``batch open``.

``close`` and ``query`` reconcile (SET-PROTOCOL.md 7.5): the gateway's totals of each kind
(captures, refunds, and their reversals: count and sum) against the merchant's own
operations the gateway answered as filed in that batch. The command prints that the batch
agrees, or each difference, and then exits 5 (``EXIT_DIFFERS``): the batch's figures stand
as printed, and someone has to look (``clients.merchant.reconciliation``). An open batch's
figures are the gateway's at the moment it answered: an operation filed after that shows
as a difference, and the output says so. The exit statuses are in each command's --help.
"""

from __future__ import annotations

import argparse

from cli.number_options import shown, whole
from cli.party_options import UsageError
from clients.merchant.reconciliation import reconcile, reconciliation_lines
from clients.merchant.runtime import Merchant
from setcore.capture import MAX_BATCH_ID_CHARS
from setcore.enum_names import code_name
from setcore.gateway_admin import MAX_STARTING_POINT, MAX_TRANSACTION_DETAILS, TransactionPage
from setpay.v1 import gateway_admin_pb2

# The gateway's batch totals and the merchant's operations disagree: not a refusal (1),
# a usage error (2), a pending request (3) or an unknown outcome (4).
EXIT_DIFFERS = 5

_OPERATIONS = {
    "open": gateway_admin_pb2.BATCH_OPERATION_OPEN,
    "close": gateway_admin_pb2.BATCH_OPERATION_CLOSE,
    "purge": gateway_admin_pb2.BATCH_OPERATION_PURGE,
    "query": gateway_admin_pb2.BATCH_OPERATION_REQUEST,
}
_HELP = {
    "open": "open a batch",
    "close": "close a batch: its captures and refunds go to settlement; reconcile it",
    "purge": "retire the detail of a closed batch",
    "query": "show and reconcile a batch's totals (and, with --details, its transactions)",
}
# What the gateway answers with a page of transactions and totals worth reconciling: a
# batch just opened holds nothing, and a purged one lists nothing.
_LISTED = frozenset({"close", "query"})
# The exit statuses of close and query, in their --help: a script that reconciles reads
# them, and the docstring is not where it looks.
_EXITS = {
    "close": (
        "exit status: 0 the batch agrees with the merchant's operations; 1 refused (the "
        "batch unknown, already closed) or failed; 2 a usage error; 4 outcome unknown: the "
        "close stays sent, and serve (or the same command) sends it again; 5 the totals "
        "differ, each difference printed, or the gateway sent none"
    ),
    "query": (
        "exit status: 0 the batch agrees with the merchant's operations (an open batch's "
        "figures are those of the moment the gateway answered); 1 refused (the batch "
        "unknown) or failed; 2 a usage error; 4 the gateway answered a status this release "
        "cannot read: upgrade the merchant (nothing is kept, ask again after); 5 the totals "
        "differ, each difference printed, or the gateway sent none"
    ),
}


# ``--details``: a page the gateway serves, never one it refuses after a close.
_details = whole(1, MAX_TRANSACTION_DETAILS, "(the gateway's page)")
# ``--start``: a sequence number the gateway can look up (``MAX_STARTING_POINT``).
_start = whole(0, MAX_STARTING_POINT, "(a batch sequence number)")


def batch_id(text: str) -> str:
    """``--batch``: the id of a batch the gateway can name. An empty one is no batch (the
    key a waiting open is kept under), a longer one one the gateway refuses to decode."""
    if not text or len(text) > MAX_BATCH_ID_CHARS:
        raise argparse.ArgumentTypeError(
            f"a batch id as batch open printed it, 1 to {MAX_BATCH_ID_CHARS} characters, not "
            + (shown(text) if text else "empty")
        )
    return text


def add_batch_parser(ops: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register ``batch`` and its operations under the merchant's subcommands."""
    b = ops.add_parser("batch", help="settlement batches at the gateway")
    b_ops = b.add_subparsers(dest="operation", required=True)
    for name, text in _HELP.items():
        one = b_ops.add_parser(name, help=text, description=text, epilog=_EXITS.get(name))
        if name == "open":  # the gateway names the batch it opens
            one.set_defaults(batch="")
        else:  # the gateway cannot guess which batch to close, purge or show
            one.add_argument(
                "--batch", type=batch_id, required=True, metavar="ID",
                help=f"the batch's id (1 to {MAX_BATCH_ID_CHARS} characters)",
            )  # fmt: skip
        if name in _LISTED:
            one.add_argument(
                "--details", type=_details, metavar="N",
                help=f"list up to N transactions (1 to {MAX_TRANSACTION_DETAILS})",
            )  # fmt: skip
            one.add_argument(
                "--start", type=_start, metavar="K",
                help="list those after sequence number K (as the previous page said; "
                "default 0, the first page)",
            )  # fmt: skip
        else:
            one.set_defaults(details=None, start=None)


def check_batch_usage(args: argparse.Namespace) -> None:
    """What argparse cannot say alone, refused before anything is opened or sent."""
    if args.start is not None and args.details is None:
        raise UsageError("--start pages a list: give --details N with it")


def run_batch(merchant: Merchant, args: argparse.Namespace) -> int:
    """Run one batch operation: print the gateway's answer and, for close and query, the
    reconciliation; the exit status."""
    page = TransactionPage(args.start or 0, args.details) if args.details else None
    # A query answered with a status this release cannot read raises UnknownResultCode,
    # which ``cli.merchant`` exits 4 with, as every outcome unknown.
    data = merchant.batches.administer(_OPERATIONS[args.operation], args.batch, page=page)
    status = code_name(gateway_admin_pb2.BatchAdminStatus, data.status)
    batch_id = data.batch_id or args.batch
    named = f"batch {batch_id or '-'}: " + status.removeprefix("BATCH_ADMIN_STATUS_")
    if data.status != gateway_admin_pb2.BATCH_ADMIN_STATUS_SUCCESS:
        print(named)
        return 1
    listed = args.operation in _LISTED
    if not data.HasField("batch_status"):
        # Said before anything else: no zeros printed as if they were the batch's totals.
        print(f"{named}: the gateway sent no totals" + ("; not reconciled" if listed else ""))
        return EXIT_DIFFERS if listed else 0
    summary = data.batch_status
    print(
        f"{named}{' closed' if summary.closed else ''}; captured "
        f"{summary.captured_total.amount} in {summary.capture_count}, refunded "
        f"{summary.credited_total.amount} in {summary.credit_count}, captures reversed "
        f"{summary.capture_reversed_total.amount} in {summary.capture_reversal_count}, "
        f"refunds reversed {summary.credit_reversed_total.amount} in "
        f"{summary.credit_reversal_count}; net {summary.net_total.amount}"
    )
    for detail in data.transaction_details:
        print(
            f"  {detail.batch_sequence_num:>6}  {detail.kind:<16} {detail.xid.hex()[:8]} "
            f"{detail.amount.amount:>9}"
        )
    if data.next_starting_point:
        # The page this answer is: a close given again sends the one stored and waiting,
        # with the page that command asked for, whatever --details this one gave (or none).
        # A page followed by more is full.
        page_size = len(data.transaction_details)
        print(
            f"  more after {data.next_starting_point}: batch query --batch {batch_id} "
            f"--details {page_size} --start {data.next_starting_point}"
        )
    if not listed:
        return 0
    result = reconcile(batch_id, summary, merchant.store.operations())
    for line in reconciliation_lines(result):
        print(line)
    if not summary.closed:
        print(
            f"batch {batch_id} is open: these are the gateway's figures when it answered; an "
            "operation filed in it since shows as a difference until it is queried again"
        )
    return 0 if result.agrees else EXIT_DIFFERS
