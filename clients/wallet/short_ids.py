"""The ids the wallet names its purchases by: the shortest start of each XID that is its own.

A purchase is filed by its XID, which the merchant picks; the wallet names it to people
(its messages, logs and purchase lines) by the start of that XID, and ``inquire`` takes
such a start back (``PurchaseBook.find``). Eight hex digits tell random XIDs apart, but a
merchant can offer an XID that starts as an earlier purchase's does, and two purchases
shown alike could only be told apart by their whole XIDs. So the id shown for a purchase
is the shortest start of its XID, eight hex digits at least, that no other purchase of
the book shares: any id the wallet shows finds that purchase alone. An id shown earlier
stays a start of the XID; once a later purchase shares it, ``find`` refuses it as
ambiguous, naming each candidate by its longer id, and never finds the other purchase.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from clients.errors import UnknownOrder

# The fewest hex digits a shown id has (32 bits: random XIDs share them rarely).
SHORT_ID_DIGITS = 8
# The most candidates an ambiguous id's error names: a start of one or two digits may
# match every purchase of the book.
CANDIDATES_NAMED = 8


def _shared(a: str, b: str) -> int:
    """How many leading hex digits ``a`` and ``b`` share."""
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def short_id(xid: str, others: Iterable[str]) -> str:
    """The id shown for the purchase of ``xid`` (lower-case hex, as the book writes it)
    beside the XIDs ``others`` (``xid`` itself among them or not): one digit past the
    longest start it shares with another, and no fewer than ``SHORT_ID_DIGITS``. An XID
    that is the whole start of another's (not one the protocol lets in, 32 bytes each, but a
    hand-edited book may hold one) is shown whole, and ``resolve`` takes a whole XID for
    that purchase alone."""
    digits = SHORT_ID_DIGITS
    for other in others:
        if other != xid:
            digits = max(digits, _shared(xid, other) + 1)
    return xid[:digits]


def resolve(prefix: str, xids: Sequence[str]) -> str:
    """The one XID of ``xids`` that the id ``prefix`` names: the XID it spells whole, or
    else the only one starting with it. ``UnknownOrder`` for an id that is not hex
    digits, names none, or starts several (the error names each by its own id, to give
    instead); the id itself is not repeated (a mistyped card number is digits too)."""
    wanted = prefix.lower()
    if not wanted or any(c not in "0123456789abcdef" for c in wanted):
        raise UnknownOrder("no such purchase: a purchase id is hex digits, the start of its XID")
    if wanted in xids:
        return wanted
    matches = [xid for xid in xids if xid.startswith(wanted)]
    if not matches:
        raise UnknownOrder("no such purchase")
    if len(matches) > 1:
        named = [short_id(xid, xids) for xid in matches[:CANDIDATES_NAMED]]
        more = len(matches) - len(named)
        raise UnknownOrder(
            f"ambiguous purchase id: {len(matches)} purchases start with it: "
            f"{', '.join(named)}{f' and {more} more' if more else ''}; give one of these ids"
        )
    return matches[0]
