"""``setpay bank show-unanswered`` and ``settle-unanswered``: the decisions awaiting their
answer, and the settling by hand of one that can never be answered.

    setpay bank --config FILE show-unanswered [--settled]
    setpay bank --config FILE settle-unanswered --rrpid HEX --reason TEXT [--yes]
        [--younger-ok]

``show-unanswered`` lists each decision the ledger committed whose answer was never
stored and that no operator settled by hand (``gateway.ledger.unanswered``): its RRPID
in hex, what was decided, the merchant, amount and currency where the outcome holds
them, when it was decided (UTC, and its age by this host's clock) and checked, and for
an authorization its hold's state and expiry; oldest first, at most ``MAX_LISTED``, then
how many there are (and which were shown, if not all), and how many more were settled by
hand. Those are kept for good (``gateway.ledger.retention``), so listed with the others
they would fill the listing for good: ``--settled`` lists them instead, with when and why
each was settled, the most recently settled first. It reads the ledger's store alone,
``read_only``, as ``show-batch`` does (``cli.bank_ledger``): no keys, nothing made,
migrated or locked, and no PAN read.

``settle-unanswered`` settles by hand one such decision that can never be answered (its
merchant gone, a certificate it names revoked since, the key it is sealed to lost):
without ``--yes`` it shows the decision and what settling does, and changes nothing;
with ``--yes`` the ledger records, in one transaction, when and why. The outcome stays,
for audit, and the settling moves no money: a capture or credit stands as posted, but an
authorization's hold lapses at its expiry and the sweeper gives the money back to the
card (the merchant, never answered, holds no capture token and can never capture it), so
the preview shows the hold's state and expiry, and the operator settles with the
merchant or its acquirer out of band knowing which. The preview also warns that every
bank process sharing the ledger must run this release (an earlier release's bank would
answer a settled decision at its next retry: nothing here can see one that is still
serving). The merchant's retries are answered UNAVAILABLE from then on, saying so in the
gateway's log, and ``setpay ca prune-gateway`` no longer counts the decision. Refused,
exit 1 and nothing changed: an RRPID that is not hex, an empty reason (or one
``check_reason`` refuses), an RRPID the ledger holds no decision awaiting its answer
under (unknown, answered, fenced) or one settled already, and a ledger not at this
release's schema version: the bank migrates it as it starts, and a bank of an older
release started after that refuses it (one already serving does not notice: the
warning above).

It reads no key, so it cannot tell whether an answer could still be built, and a
decision seconds old is usually one whose answer is on its way (the merchant's next
retry builds it). So a decision younger than ``SETTLE_MIN_AGE_MS`` (12 minutes 30 s: twice
the freshness window, the retry and clock skew allowances, ``gateway.ledger.settle_age`` says
why) by the ledger's own record of when it was decided, or dated ahead of this host's
clock, is refused too, in the preview as with ``--yes``, saying its age, unless the
operator says ``--younger-ok`` (knowing its answer can never be built: the merchant's
certificate revoked, say); the ledger checks the age again as it records the settling.
"""

from __future__ import annotations

import argparse
import string
import sys
from functools import partial

from cli.bank_books import major_units
from cli.bank_ledger import NoLedger, open_existing_store, utc
from gateway.config import BankConfig
from gateway.ledger import LedgerError, StoreUnavailable, wall_clock_ms
from gateway.ledger.limits import MAX_ID_BYTES
from gateway.ledger.pan import echoed
from gateway.ledger.settle_age import (
    SETTLE_MIN_AGE_MS,
    age_said,
    duration,
    too_young,
    young_refusal,
)
from gateway.ledger.unanswered import (
    HoldState,
    Listing,
    UnansweredDecision,
    check_reason,
    list_unanswered,
    settle,
    unanswered_decision,
)
from setcore.currency import minor_unit_on_record
from setcore.names import refused_character

# The ``setpay bank`` operations this module runs, and the help of each.
COMMANDS = {
    "show-unanswered": "list the decisions awaiting their answer (--settled: those settled"
    " by hand)",
    "settle-unanswered": "settle by hand a decision whose answer can never be built "
    "(without --yes: show it and change nothing)",
}
_HEX = frozenset(string.hexdigits)
# What settling does, said before ``--yes`` and after it.
_WHAT_SETTLING_DOES = (
    "the ledger records when and why, and the outcome stays; the settling moves no money:"
    " a capture or credit stands as posted, and an authorization's hold lapses at its"
    " expiry, its money going back to the card (the merchant, never answered, cannot"
    " capture it): settle with the merchant or its acquirer out of band. The merchant's"
    " retries are answered UNAVAILABLE from then on, and setpay ca prune-gateway no"
    " longer counts it"
)
# Said before ``--yes``: a bank of an earlier release sharing the ledger reads no mark and
# would answer the settled decision, and nothing this command can read tells whether one
# still serves (the schema version only says that some bank of this release migrated it).
_EVERY_BANK_THIS_RELEASE = (
    "warning: every bank process sharing this ledger must run this release: a bank of an"
    " earlier release still serving would answer a settled decision at the merchant's"
    " next retry"
)


class UnansweredCommandError(Exception):
    """``show-unanswered`` or ``settle-unanswered`` cannot run as given (its message says
    why); nothing changed."""


def add_parsers(ops: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register ``show-unanswered`` and ``settle-unanswered`` under ``setpay bank``."""
    show = ops.add_parser("show-unanswered", help=COMMANDS["show-unanswered"])
    show.add_argument(
        "--settled", action="store_true",
        help="list those settled by hand instead, the most recently settled first",
    )  # fmt: skip
    s = ops.add_parser(
        "settle-unanswered", help=COMMANDS["settle-unanswered"],
        epilog="exit status: 0 shown or settled; 1 refused, nothing changed",
    )  # fmt: skip
    s.add_argument("--rrpid", required=True, help="the decision's RRPID in hex (show-unanswered)")
    s.add_argument("--reason", required=True, help="why it is settled by hand (kept in the ledger)")
    s.add_argument("--yes", action="store_true", help="settle it (without: show, change nothing)")
    s.add_argument(
        "--younger-ok", action="store_true",
        help=f"settle it even if decided less than {duration(SETTLE_MIN_AGE_MS)} ago (or dated"
        " ahead of this host's clock): only for an answer known never to come",
    )  # fmt: skip


def run(config: BankConfig, args: argparse.Namespace) -> int:
    """Run ``show-unanswered`` or ``settle-unanswered``; the exit status. Errors are
    printed as the other ``setpay bank`` commands print theirs (status 1)."""
    try:
        if args.bank_command == "show-unanswered":
            return _show(config, settled=args.settled)
        return _settle(config, args)
    except BrokenPipeError:
        raise  # standard output's reader went away (``| head``): cli.main ends quietly
    except (UnansweredCommandError, NoLedger, LedgerError, OSError) as exc:
        print(f"setpay bank: {exc}", file=sys.stderr)
        return 1


def _show(config: BankConfig, *, settled: bool) -> int:
    store = open_existing_store(config, read_only=True)
    try:
        listing = store.read(partial(list_unanswered, settled=settled))
    finally:
        store.close()
    now = wall_clock_ms()  # one moment for every line's age and hold
    for decision in listing.decisions:
        print(decision_line(decision, now))
    for line in _show_summary(listing, settled=settled):
        print(line)
    return 0


def _show_summary(listing: Listing, *, settled: bool) -> list[str]:
    """What a listing says after its decisions: how many of its sort the ledger holds,
    which of them it shows when it was cut, and how many of the other sort it left out
    (and how to list those)."""
    shown = len(listing.decisions)
    if settled:
        held, other = listing.settled, listing.awaiting
        none, what = "no decision was settled by hand", "decision(s) settled by hand"
        cut = f"the {shown} settled most recently shown, of {held} {what}"
        left = f"{other} more awaiting their answer: show-unanswered without --settled lists them"
    else:
        held, other = listing.awaiting, listing.settled
        none, what = "no decision awaits its answer", "decision(s) awaiting their answer"
        cut = f"the {shown} oldest shown, of {held} {what}: answer or settle these, then list again"
        left = f"{other} more settled by hand: --settled lists them"
    said = none if not held else cut if shown < held else f"{held} {what}"
    return [said, left] if other else [said]


def _settle(config: BankConfig, args: argparse.Namespace) -> int:
    rrpid = rrpid_bytes(args.rrpid)
    try:
        reason = check_reason(args.reason)
    except LedgerError as exc:
        raise UnansweredCommandError(f"--reason: {exc}; nothing changed") from None
    # Read first, from the store opened ``read_only``: a ledger at another schema version
    # is refused there, never migrated by this command (the module docstring).
    store = open_existing_store(config, read_only=True)
    try:
        found = store.read(partial(unanswered_decision, rrpid=rrpid))
    finally:
        store.close()
    now = wall_clock_ms()
    print(decision_line(found, now))
    if found.settled_at_ms is not None:
        raise UnansweredCommandError(
            f"request {rrpid.hex()} was settled by hand already; nothing changed"
        )
    young = too_young(found.decided_at_ms, now)
    if young and not args.younger_ok:
        raise UnansweredCommandError(young_refusal(rrpid, found.decided_at_ms, now))
    if not args.yes:
        print(f"would settle it by hand: {_WHAT_SETTLING_DOES}")
        held = _hold_said(found, now)
        if held:
            print(held)
        if young:
            age = age_said(found.decided_at_ms, now)
            print(
                f"warning: decided less than {duration(SETTLE_MIN_AGE_MS)} ago ({age}):"
                " --younger-ok settles it all the same, though the merchant's retry may"
                " still get its answer"
            )
        print(_EVERY_BANK_THIS_RELEASE)
        print("nothing changed: run again with --yes to settle it")
        return 0
    # The ledger checks the age again as it records the settling, by its own record and
    # this clock read afresh (one set back since the read is refused there).
    min_age = None if args.younger_ok else SETTLE_MIN_AGE_MS
    settling = partial(
        settle, rrpid=rrpid, reason=reason, now_ms=wall_clock_ms(), min_age_ms=min_age
    )
    store = open_existing_store(config, read_only=False)
    try:
        settled = store.execute(settling)
    except StoreUnavailable as exc:
        raise UnansweredCommandError(
            f"{exc}; the ledger may or may not have recorded the settling: run"
            " show-unanswered once it answers"
        ) from exc
    finally:
        store.close()
    print(decision_line(settled, wall_clock_ms()))
    print(f"settled by hand: {_WHAT_SETTLING_DOES}")
    return 0


def rrpid_bytes(text: str) -> bytes:
    """``--rrpid``'s value as bytes: UnansweredCommandError unless it is hex of 1 to
    ``MAX_ID_BYTES`` bytes (the value is not repeated: a card number typed there by
    mistake would be shown)."""
    if not text or len(text) % 2 or len(text) > 2 * MAX_ID_BYTES or not set(text) <= _HEX:
        raise UnansweredCommandError(
            f"--rrpid is an RRPID in hex, an even number of 2 to {2 * MAX_ID_BYTES} digits"
            f" 0-9 and a-f, as show-unanswered prints it (given: {len(text)} characters);"
            " nothing changed"
        )
    return bytes.fromhex(text)


def decision_line(decision: UnansweredDecision, now_ms: int) -> str:
    """A decision awaiting its answer for the operator, its age and hold as of ``now_ms``:
    no PAN (an outcome holds none, and a merchant ID or reason is shown with any
    card-length run of digits masked)."""
    parts = [decision.rrpid.hex(), decision.kind]
    merchant = "-" if decision.merchant_id is None else _shown(decision.merchant_id)
    parts.append(f"merchant {merchant}")
    if decision.amount is not None and decision.currency is not None:
        digits = minor_unit_on_record(decision.currency)
        major = "" if digits is None else f"{major_units(decision.amount, digits)} "
        parts.append(f"amount {major}({decision.amount} minor units) currency {decision.currency}")
    elif decision.currency is not None:
        parts.append(f"currency {decision.currency}")
    parts.append(f"decided {utc(decision.decided_at_ms)} ({_age_part(decision, now_ms)})")
    parts.append(f"checked {utc(decision.checked_at_ms)}")
    if decision.hold is not None:
        parts.append(_hold_part(decision.hold, decision.currency, now_ms))
    if decision.settled_at_ms is None:
        parts.append("awaiting its answer")
    else:
        parts.append(
            f"settled by hand {utc(decision.settled_at_ms)}: {_shown(decision.reason or '')}"
        )
    return " ".join(parts)


def _age_part(decision: UnansweredDecision, now_ms: int) -> str:
    """A decision's age for ``decision_line``, and, awaiting its answer and too young to
    settle by hand without ``--younger-ok``, that it is."""
    said = age_said(decision.decided_at_ms, now_ms)
    if decision.settled_at_ms is None and too_young(decision.decided_at_ms, now_ms):
        said += f", under {duration(SETTLE_MIN_AGE_MS)}: its answer may still come"
    return said


def _hold_part(hold: HoldState, currency: int | None, now_ms: int) -> str:
    """An authorization's hold for ``decision_line``: lapsing (when), lapsed, or closed."""
    if hold.lapsed(now_ms):
        return f"hold lapsed {utc(hold.expires_at_ms)}: released to the card"
    if hold.status == "pending":
        return f"hold {_money(hold.pending, currency)} pending, lapses {utc(hold.expires_at_ms)}"
    return f"hold closed, {_money(hold.captured, currency)} captured"


def _hold_said(decision: UnansweredDecision, now_ms: int) -> str | None:
    """What becomes of an authorization's money once its decision is settled (the preview,
    before ``--yes``), None for any other decision."""
    hold = decision.hold
    if hold is None:
        return None
    if hold.lapsed(now_ms):
        return (
            f"this authorization's hold lapsed {utc(hold.expires_at_ms)}: its money went"
            " back to the card, and the merchant never captured it"
        )
    if hold.status == "pending":
        return (
            "this authorization's hold is not captured by the settling: it lapses"
            f" {utc(hold.expires_at_ms)}, when the money goes back to the card, and the"
            " merchant, never answered, holds no capture token and can never capture it"
        )
    captured = _money(hold.captured, decision.currency)
    return f"this authorization's hold is closed, {captured} captured"


def _money(amount: int, currency: int | None) -> str:
    """An amount of ``currency``'s minor units for people, in major units where the
    currency's digits are on record."""
    digits = None if currency is None else minor_unit_on_record(currency)
    return f"{amount} minor units" if digits is None else f"{major_units(amount, digits)}"


def _shown(text: str) -> str:
    """Text of the ledger as a line shows it: a card-length run of digits masked, and
    quoted with escapes if it holds a character that would break or turn the line."""
    masked = echoed(text)
    return repr(masked) if refused_character(masked) is not None else masked
