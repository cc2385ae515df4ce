"""How old a decision awaiting its answer must be before an operator may settle it by hand
(``unanswered.settle``, ``setpay bank settle-unanswered``) without saying explicitly that
it may be younger.

The command has no keys: it cannot tell whether an answer could still be built. Its age
is the one thing the ledger knows, from the decision's own recorded time
(``requests.created_at_ms``, stamped once the gateway checked the request, so never before
that check) and the clock now. A young decision is the usual kind: every decision not
answered with a prebuilt approval is committed, then answered milliseconds later, and a
gateway that failed in between (a token that stalled, a process that died) has it
answered by the merchant's retry, resent every 5 s (an authorization) or every 30 s once
a minute old (a settlement operation, a batch change). Settled meanwhile, the answer
stored by that retry is refused and the merchant hears UNAVAILABLE for ever, while the
answer could have been built.

So a decision may be settled by hand only once ``SETTLE_MIN_AGE_MS`` old: twice the
freshness window (``setcore.freshness.FRESHNESS_WINDOW_MS``), ``RETRY_ALLOWANCE_MS`` and
``CLOCK_SKEW_ALLOWANCE_MS``. A request's date may lead the gateway's clock by up to the
window as it is checked, and stays fresh until it trails that clock by the window: so a
retry may be checked as a new request is, as of now, for up to two windows after the
check, and a failure then (a token back within seconds) says nothing of the next retry.
After that every retry is checked as of the decision (``checked_at_ms``), the way every
later one will be (a retry gets the stored answer even when its date has aged out), and
the allowance lets the merchant's slowest resending reach the gateway once more that way.
A decision still awaiting its answer after all that had its merchant never retry, or each
retry fail where every later one would: not proof (the key may come back), which the
operator brings, but no longer a decision whose answer is merely on its way.

The age is read off two clocks, not one: the stamp is the deciding gateway host's (the
ledger's clock, read in Python; the database stamps nothing), now is that of the host the
command runs on, another one where they share a PostgreSQL ledger. Hosts sharing a ledger
keep their clocks synchronised (NTP), as the freshness window already assumes, and the
skew allowance lets this host's clock lead the deciding one's by as much as a merchant's
may lead the gateway's, the whole wait above still kept; a larger lead shortens it by the
excess. A decision dated ahead of this host's clock (the hosts' clocks differ, or one was
set back since) has no age to judge by and is taken as too young. ``--younger-ok``
settles one all the same: an operator who knows its answer can never be built (its
merchant's certificate revoked, say) need not wait.
"""

from __future__ import annotations

from datetime import UTC, datetime

from gateway.ledger.errors import LedgerError
from setcore.freshness import FRESHNESS_WINDOW_MS

# The merchant's slowest resending of a request still awaiting its answer (a settlement
# operation's: every 30 s once it is a minute old), with room for a merchant restarting.
RETRY_ALLOWANCE_MS = 2 * 60 * 1000
# How far the clock of the host settling may lead the deciding gateway's (the module
# docstring): the 30 s a merchant's clock may lead the gateway's, both kept on NTP
# (``clients.merchant.renewal.CLOCK_TOLERANCE_MS``); its own, not taken from the above.
CLOCK_SKEW_ALLOWANCE_MS = 30_000
# How old a decision must be before it is settled by hand without the operator saying it
# may be younger (the module docstring): 12 minutes 30 s.
SETTLE_MIN_AGE_MS = 2 * FRESHNESS_WINDOW_MS + RETRY_ALLOWANCE_MS + CLOCK_SKEW_ALLOWANCE_MS
# The units an age is said in, largest first.
_UNITS = (("d", 86_400), ("h", 3_600), ("min", 60), ("s", 1))


class DecisionTooYoung(LedgerError):
    """The decision is younger than the minimum age for settling it by hand, or dated
    ahead of the clock: its answer may still come (the module docstring). Nothing
    changed."""


def duration(ms: int) -> str:
    """``ms`` (not negative) for people, in its largest unit and the next one down:
    ``12 min``, ``12 min 5 s``, ``3 d 4 h``; rounded down, so an age never looks older
    than it is."""
    seconds = max(ms, 0) // 1000
    for index, (name, size) in enumerate(_UNITS):
        if seconds >= size or name == "s":
            said = f"{seconds // size} {name}"
            rest = seconds % size
            if index + 1 < len(_UNITS) and rest >= _UNITS[index + 1][1]:
                smaller, smaller_size = _UNITS[index + 1]
                said += f" {rest // smaller_size} {smaller}"
            return said
    raise AssertionError("unreachable: seconds are a unit")


def _ahead(ms: int) -> str:
    """How far (``ms``, positive) a decision is dated ahead of the clock: under a second is
    said so, not rounded down to ``0 s`` as if it were not ahead."""
    return "less than 1 s" if ms < 1000 else duration(ms)


def age_said(decided_at_ms: int, now_ms: int) -> str:
    """A decision's age as a listing shows it: ``age 12 min 5 s``, or, dated ahead of the
    clock, ``age unknown: 3 s ahead of this host's clock``."""
    age = now_ms - decided_at_ms
    if age < 0:
        return f"age unknown: {_ahead(-age)} ahead of this host's clock"
    return f"age {duration(age)}"


def too_young(decided_at_ms: int, now_ms: int, min_age_ms: int = SETTLE_MIN_AGE_MS) -> bool:
    """Whether a decision made at ``decided_at_ms`` is too young to settle by hand at
    ``now_ms``: younger than ``min_age_ms``, or dated ahead of the clock."""
    age = now_ms - decided_at_ms
    return age < 0 or age < min_age_ms


def young_refusal(
    rrpid: bytes, decided_at_ms: int, now_ms: int, min_age_ms: int = SETTLE_MIN_AGE_MS
) -> str:
    """Why the decision under ``rrpid``, made at ``decided_at_ms``, is not settled by hand
    at ``now_ms`` (``too_young``): its age, the minimum, and what to do. No PAN: an RRPID
    the ledger holds a decision under, times and ages."""
    when = f"{datetime.fromtimestamp(decided_at_ms / 1000, tz=UTC):%Y-%m-%d %H:%M:%S} UTC"
    age = now_ms - decided_at_ms
    minimum = duration(min_age_ms)
    if age < 0:
        said = (
            f"request {rrpid.hex()} was decided at {when},"
            f" {_ahead(-age)} ahead of this host's clock (the hosts' clocks differ, or one"
            " was set back since): its age is unknown, so it is taken as too young"
        )
    else:
        said = (
            f"request {rrpid.hex()} was decided {duration(age)} ago ({when}), less than the"
            f" {minimum} a decision must wait"
        )
    return (
        f"{said} to be settled by hand: the merchant's retry may still get its answer;"
        f" settle it once it is {minimum} old by this host's clock, or now with"
        " --younger-ok if its answer can never be built; nothing changed"
    )


__all__ = [
    "CLOCK_SKEW_ALLOWANCE_MS",
    "RETRY_ALLOWANCE_MS",
    "SETTLE_MIN_AGE_MS",
    "DecisionTooYoung",
    "age_said",
    "duration",
    "too_young",
    "young_refusal",
]
