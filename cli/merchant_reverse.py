"""``setpay merchant reverse``: which authorization, capture or refund a reversal undoes.

    setpay merchant [--dir DIR] reverse ORDER [--keep N]
    setpay merchant [--dir DIR] reverse [ORDER] (--capture OP | --credit OP)

OP is the start of a capture's or refund's id as the capture and refund commands print
it, matched only among the merchant's operations of that kind: ``--capture`` never names a
refund or a reversal that starts alike, nor ``--credit`` a capture. Given ORDER (matched as
capture and refund match it: any start of its XID that names one order), the operation
must be one of that order's: an operator who names one order and pastes another's capture
id is refused, naming the order that capture is of, and nothing is signed, stored or sent
(the command used to reverse the other order's capture). Without ORDER, OP is matched
among every order's operations of its kind.

OP takes, as ORDER does, any start that names one operation: no fewer digits than that
are needed, since a start shared by two is refused as ambiguous ("give more digits"), and
with ORDER the ones it could name are that order's few captures or refunds. An empty OP or
ORDER (an unset shell variable) is a usage error, never "every operation" or "the whole
authorization". An id is never repeated in an error (a card number mistyped is digits
too): the operations are named by their own ids' first digits.
"""

from __future__ import annotations

import argparse
import re

from cli.number_options import MAX_AMOUNT, shown, whole
from cli.party_options import UsageError
from clients.errors import ClientError
from clients.merchant.records import Operation, short
from clients.merchant.records import OperationKind as Kind
from clients.merchant.runtime import Merchant
from clients.merchant.store import MerchantStore

# An operation id's start as the capture and refund commands print it: ASCII hex only
# (``int(text, 16)`` took a sign, underscores, spaces and other scripts' digits, none of
# which any id starts with).
_HEX = re.compile(r"[0-9a-fA-F]+")
# What each option reverses, as errors name it.
_NOUNS = {Kind.CAPTURE: "capture", Kind.CREDIT: "refund"}
# ``--keep``: what stays of an authorization, 0 (none) up to less than what it authorized,
# itself at most the bank's largest amount. Bounded so as the option is read, a card number
# typed into it is a usage error that does not repeat it, before the order book is opened;
# the order's own bounds (at least what is captured, below what is authorized) are checked
# after, with the order.
_KEEP = whole(0, MAX_AMOUNT, "(minor units; the bank's largest amount)")


def add_reverse_parser(ops: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register ``reverse`` under the merchant's subcommands."""
    v = ops.add_parser("reverse", help="reverse an authorization, a capture or a refund")
    v.add_argument(
        "order", nargs="?",
        help="the start of the order's XID (with --capture or --credit: the order the "
        "operation must be of)",
    )  # fmt: skip
    what = v.add_mutually_exclusive_group()
    what.add_argument(
        "--keep", type=_KEEP, default=0, help="authorization: amount that stays (default 0)"
    )
    what.add_argument(
        "--capture", type=_operation_prefix, metavar="OP", help="reverse this capture (its id)"
    )
    what.add_argument(
        "--credit", type=_operation_prefix, metavar="OP", help="reverse this refund (its id)"
    )


def _operation_prefix(text: str) -> str:
    """An operation id's start: an empty one would name every operation, and the reverse
    command without its ``--capture`` or ``--credit`` reverses the authorization."""
    if not text.strip():
        raise argparse.ArgumentTypeError(
            "an operation id, as capture and refund print it, not empty"
        )
    if not _HEX.fullmatch(text):
        raise argparse.ArgumentTypeError(
            f"an operation id is hexadecimal, 0-9 and a-f, not {shown(text)}"
        )
    return text


def reverses_operation(args: argparse.Namespace) -> bool:
    """Whether the reverse command names a capture or a refund (not the authorization)."""
    return args.capture is not None or args.credit is not None


def check_reverse_usage(args: argparse.Namespace) -> None:
    """What argparse cannot say alone, refused before anything is opened or sent: an
    ORDER given empty (an unset shell variable) is no order, never "any order"."""
    if args.order is not None and not args.order.strip():
        raise UsageError("ORDER is empty: give the start of the order's XID")


def reverse_operation(merchant: Merchant, args: argparse.Namespace) -> Operation:
    """Reverse the capture (``--capture``) or refund (``--credit``) named, checked to be of
    ORDER when it is given, before anything is built."""
    if args.credit is not None:
        kind, prefix = Kind.CREDIT, args.credit
    else:
        kind, prefix = Kind.CAPTURE, args.capture
    xid = None if args.order is None else merchant.store.find_order(args.order).xid
    rrpid = operation_id(merchant.store, kind, prefix, xid)
    if kind is Kind.CREDIT:
        return merchant.settlement.reverse_credit(rrpid)
    return merchant.settlement.reverse_capture(rrpid)


def operation_id(store: MerchantStore, kind: Kind, prefix: str, xid: bytes | None) -> bytes:
    """The RRPID of the one operation of ``kind`` (of the order ``xid``, if given) whose id
    starts with ``prefix``; ``ClientError`` when none does or several do."""
    noun = _NOUNS[kind]
    wanted = prefix.lower()
    named = [op for op in store.operations(xid) if _is(op, kind, wanted)]
    if len(named) > 1:
        raise ClientError(f"the {noun} id is ambiguous: give more digits")
    if named:
        return named[0].rrpid
    if xid is None:
        raise ClientError(f"no {noun} has this id")
    elsewhere = [op for op in store.operations() if _is(op, kind, wanted)]
    if len(elsewhere) == 1:
        raise ClientError(
            f"{noun} {short(elsewhere[0].rrpid)} is of order {short(elsewhere[0].xid)}, "
            f"not of order {short(xid)}: nothing reversed"
        )
    raise ClientError(f"order {short(xid)} has no {noun} with this id")


def _is(operation: Operation, kind: Kind, wanted: str) -> bool:
    return operation.kind is kind and operation.rrpid.hex().startswith(wanted)
