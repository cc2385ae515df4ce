"""The merchant's offers and orders, with each order's authorization, in its own file.

An offer agreed out of band becomes an order at PInit, is purchased, and is authorized
through the one AuthReq stored on it (``Order.auth_request``) before it is first sent
(``MerchantStore``'s docstring says why). Each change of an order is one transaction
that checks the state it moves from (``move_order``); settlement operations that change
the order (an authorization reversal, ``settlement_store``) move it the same way.

An offer has one current order (``offers.xid``), the one its last PInit opened. An
order declined or failed is kept under its own XID (its history, its wallet's Inquiry)
while a PInit opens the offer's next one, so the cardholder may pay with another card,
up to ``MAX_ORDERS_PER_OFFER`` orders in all.

Errors: ``sqlite3`` failures become ``StoreError``; unknown keys ``UnknownOrder``; a
change the order's state forbids, ``OrderStateError`` (an offer that is paid for,
``OfferTaken``; one that has had its orders, ``OfferUsedUp``).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from clients.errors import OrderStateError, UnknownOrder
from clients.merchant.database import Database, now_ms
from clients.merchant.offers import check_offer
from clients.merchant.records import Authorization, Money, Offer, Order, OrderState, short
from clients.merchant.request_rows import AnsweredUnreadably, refuse_answered_unreadably
from clients.merchant.schema import ORDER_COLUMNS, ORDER_FROM, order_from_row

# Listings are for people; a page larger than this is not read by anyone.
MAX_LISTED_ORDERS = 1000
# How many orders one offer may have (an unused one is replaced, not counted). Most cost
# an AuthReq the gateway decided against a card: a cardholder declined tries another
# card or two, a card tester card after card (or one card again and again) against an
# offer it has found. Ten is more than a cardholder needs and few enough to
# stop that; past it the offer is refused, and a new offer is the merchant's decision.
MAX_ORDERS_PER_OFFER = 10
# The orders an offer has, counted in the index on ``orders(lid_m)`` (schema 9), not by
# reading the table whole: every PInit counts them.
OFFER_ORDERS_SQL = "SELECT count(*) FROM orders WHERE lid_m = ?"

# Why an offer whose current order is in this state is not offered again, as the refusal's
# reason (logged; the wallet hears UNKNOWN_LID alone, SET-PROTOCOL.md 7.6) says it: the
# money is held, about to be, or was and was given back (the order will not be fulfilled;
# a new offer is the merchant's call, not a wallet's).
_TAKEN = {
    OrderState.PURCHASED: "is already paid and being authorized",
    OrderState.AUTHORIZING: "is already paid and being authorized",
    OrderState.AUTHORIZED: "is already paid and authorized",
    OrderState.REVERSED: "was paid and its authorization reversed",
}
# What a PInit does with the offer's current order: an unused one is dropped for the new
# one; one that ended without money held stays, as history, beside it.
_REPLACED = (OrderState.INITIATED,)
_KEPT = (OrderState.DECLINED, OrderState.FAILED)


class OfferTaken(OrderStateError):
    """A PInit for an offer whose current order is paid for: ``reason`` says how, ``xid``
    which order, for the merchant's log (the wallet hears the refusal's code alone)."""

    def __init__(self, lid_m: bytes, xid: bytes, state: OrderState) -> None:
        self.reason = _TAKEN.get(state, f"is already {state.value}")
        self.xid = xid
        self.state = state
        super().__init__(f"offer {short(lid_m)} {self.reason} (order {short(xid)})")


class OfferUsedUp(OrderStateError):
    """A PInit for an offer that has had ``MAX_ORDERS_PER_OFFER`` orders, each declined or
    failed: ``reason`` says so, for the merchant's log (the wallet hears the refusal's code
    alone). Another try is the merchant's call: a new offer."""

    def __init__(self, lid_m: bytes, orders: int) -> None:
        self.reason = (
            f"was declined or failed {orders} times; add a new offer (`setpay merchant orders new`)"
        )
        self.orders = orders
        super().__init__(f"offer {short(lid_m)} {self.reason}")


def read_order(conn: sqlite3.Connection, xid: bytes) -> Order:
    """The order with this XID, read on ``conn`` (inside a transaction, as it stands
    there); ``UnknownOrder`` if none."""
    row = conn.execute(
        f"SELECT {ORDER_COLUMNS} FROM {ORDER_FROM} WHERE o.xid = ?",  # noqa: S608 - constant SQL
        (xid,),
    ).fetchone()
    if row is None:
        raise UnknownOrder("no order with this XID")
    return order_from_row(row)


def move_order(
    conn: sqlite3.Connection,
    xid: bytes,
    allowed: Sequence[OrderState],
    target: OrderState,
    **columns: object,
) -> None:
    """Move the order to ``target``, setting ``columns``, inside the caller's write
    transaction; ``OrderStateError`` unless it is in one of ``allowed``."""
    row = conn.execute("SELECT state FROM orders WHERE xid = ?", (xid,)).fetchone()
    if row is None:
        raise UnknownOrder("no order with this XID")
    if OrderState(row[0]) not in allowed:
        raise OrderStateError(f"order {short(xid)} is {row[0]}, not {target.value}-able")
    sets = "".join(f", {name} = ?" for name in columns)
    conn.execute(
        f"UPDATE orders SET state = ?, updated_ms = ?{sets} WHERE xid = ?",  # noqa: S608 - names are ours
        (target.value, now_ms(), *columns.values(), xid),
    )


class OrderStore(Database):
    """Offers, orders and their authorization (``MerchantStore`` is this and more)."""

    # -- offers -----------------------------------------------------------------------

    def add_offer(self, lid_m: bytes, description: bytes, amount: Money, brand_id: str) -> Offer:
        """Record an order agreed out of band, known by its LID-M; ``ConfigError`` for one
        no purchase could complete (``offers``)."""
        check_offer(lid_m, description, amount)
        now = now_ms()
        with self._write() as conn:
            if conn.execute("SELECT 1 FROM offers WHERE lid_m = ?", (lid_m,)).fetchone():
                raise OrderStateError(f"an offer with LID-M {short(lid_m)} exists")
            conn.execute(
                "INSERT INTO offers VALUES (?, ?, ?, ?, ?, ?, ?, NULL)",
                (lid_m, description, amount.currency, amount.minor, amount.exp10, brand_id, now),
            )
        return Offer(lid_m, description, amount, brand_id, now, None)

    def add_offer_once(
        self, lid_m: bytes, description: bytes, amount: Money, brand_id: str
    ) -> tuple[Offer, bool]:
        """``add_offer``, given again: the offer, and whether it was stored before. The
        command that stored it may have died, or lost its reader, before printing its
        initiation, and nothing else prints one: the same terms under the same LID-M
        are that offer again, stored once. Other terms under it are refused
        (``OrderStateError``, naming which differ), nothing changed."""
        try:
            return self.add_offer(lid_m, description, amount, brand_id), False
        except OrderStateError:
            earlier = self.offer(lid_m)
        terms = {
            "description": (earlier.description, description),
            "amount": (earlier.amount, amount),
            "brand": (earlier.brand_id, brand_id),
        }
        differ = [name for name, (then, now) in terms.items() if then != now]
        if differ:
            raise OrderStateError(
                f"an offer with LID-M {short(lid_m)} exists, with another "
                f"{' and '.join(differ)}: give another --lid-m (or none, for a random one)"
            )
        self._read(lambda conn: self._still_offered(conn, lid_m, earlier.xid))
        return earlier, True

    @staticmethod
    def _still_offered(conn: sqlite3.Connection, lid_m: bytes, xid: bytes | None) -> None:
        """Refuse, as a PInit would be (``OfferTaken``, ``OfferUsedUp``), an offer that is
        not offered again: its initiation printed again would send a wallet to a refusal.
        (It still names the LID-M's other terms: same terms, the same offer.)"""
        if xid is not None:
            try:
                current = read_order(conn, xid)
            except UnknownOrder:
                current = None
            if current is not None and current.state in _TAKEN:
                raise OfferTaken(lid_m, xid, current.state)
            if current is not None and current.state in _REPLACED:
                return  # dropped by the next PInit: the count below is not yet reached
        ended = conn.execute(OFFER_ORDERS_SQL, (lid_m,)).fetchone()[0]
        if ended >= MAX_ORDERS_PER_OFFER:
            raise OfferUsedUp(lid_m, ended)

    def offer(self, lid_m: bytes) -> Offer:
        """The offer with this LID-M; ``UnknownOrder`` if none."""
        row = self._one(
            "SELECT lid_m, description, currency, amount, exp10, brand_id, created_ms, xid "
            "FROM offers WHERE lid_m = ?",
            lid_m, "no offer with this LID-M",
        )  # fmt: skip
        lid, description, currency, amount, exp10, brand_id, created, xid = row
        return Offer(lid, description, Money(currency, amount, exp10), brand_id, created, xid)

    # -- orders -----------------------------------------------------------------------

    def open_order(
        self,
        lid_m: bytes,
        xid: bytes,
        trans_ids: bytes,
        chall_m: bytes,
        signer_thumb: bytes | None = None,
    ) -> Order:
        """PInit answered: the offer becomes an order under a fresh XID, with the
        thumbprint of the signature certificate its PInitRes is signed with
        (``Order.signer_thumb``), and that order is the offer's current one.

        A wallet that repeats PInit before purchasing gets a new XID; the unused order
        it replaces is dropped. An order declined or failed stays as it ended, under its
        own XID: its wallet's Inquiry is still answered, and nothing of the new order
        (its PI, its authorization, its captures) is ever its. An offer paid for, being
        authorized or reversed is not offered again: ``OfferTaken`` says which; nor is one
        with ``MAX_ORDERS_PER_OFFER`` orders ended: ``OfferUsedUp``. Either refusal
        changes nothing.

        One transaction reads the current order, replaces it, counts the offer's orders
        and reads the new one back: of two PInits at once, the second finds the first's
        order unused and drops it (the first's wallet, paying, hears UNKNOWN_XID), and
        neither fails for it; nor do two at once open an order past the limit.
        """
        now, initiated = now_ms(), OrderState.INITIATED.value
        with self._write() as conn:
            row = conn.execute("SELECT xid FROM offers WHERE lid_m = ?", (lid_m,)).fetchone()
            if row is None:
                raise UnknownOrder("no offer with this LID-M")
            if row[0] is not None:
                self._end_current(conn, lid_m, row[0])
            # The current order dropped if unused: those left ended declined or failed.
            ended = conn.execute(OFFER_ORDERS_SQL, (lid_m,)).fetchone()[0]
            if ended >= MAX_ORDERS_PER_OFFER:
                raise OfferUsedUp(lid_m, ended)
            conn.execute(
                "INSERT INTO orders (xid, lid_m, trans_ids, chall_m, state, created_ms, "
                "updated_ms, signer_thumb) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (xid, lid_m, trans_ids, chall_m, initiated, now, now, signer_thumb),
            )
            conn.execute("UPDATE offers SET xid = ? WHERE lid_m = ?", (xid, lid_m))
            # Read before the commit: a PInit right after this one drops this order.
            return read_order(conn, xid)

    @staticmethod
    def _end_current(conn: sqlite3.Connection, lid_m: bytes, xid: bytes) -> None:
        """Make way for the offer's next order, inside ``open_order``'s transaction: drop
        the current one ``xid`` if unused, keep it if it ended unpaid; ``OfferTaken`` if
        it is paid for. A state no setpay writes is ``StoreError`` (``read_order``)."""
        try:
            current = read_order(conn, xid)
        except UnknownOrder:  # pointing at no order: nothing to make way for
            return
        if current.state in _REPLACED:
            conn.execute("DELETE FROM orders WHERE xid = ?", (xid,))
        elif current.state not in _KEPT:
            raise OfferTaken(lid_m, xid, current.state)

    def order(self, xid: bytes) -> Order:
        """The order with this XID; ``UnknownOrder`` if none."""
        return self._read(lambda c: read_order(c, xid))

    def find_order(self, prefix: str) -> Order:
        """The order whose XID starts with the hex ``prefix`` (as listings show it)."""
        try:
            wanted = bytes.fromhex(prefix if len(prefix) % 2 == 0 else prefix[:-1])
        except ValueError:
            raise UnknownOrder("an order id is hexadecimal") from None
        rows = self._read(
            lambda c: c.execute(
                f"SELECT {ORDER_COLUMNS} FROM {ORDER_FROM} "  # noqa: S608 - constant SQL
                "WHERE substr(o.xid, 1, ?) = ?",
                (len(wanted), wanted),
            ).fetchall()
        )
        matches = [o for r in rows if (o := order_from_row(r)).xid.hex().startswith(prefix.lower())]
        if len(matches) != 1:
            raise UnknownOrder(
                "no order with this id" if not matches else "the id is ambiguous: give more digits"
            )
        return matches[0]

    def orders(self, limit: int = MAX_LISTED_ORDERS) -> list[Order]:
        """The most recent orders, newest first."""
        limit = max(1, min(limit, MAX_LISTED_ORDERS))
        rows = self._read(
            lambda c: c.execute(
                f"SELECT {ORDER_COLUMNS} FROM {ORDER_FROM} "  # noqa: S608 - constant SQL
                "ORDER BY o.created_ms DESC, o.xid LIMIT ?",
                (limit,),
            ).fetchall()
        )
        return [order_from_row(r) for r in rows]

    def orders_in(self, *states: OrderState) -> list[Order]:
        """Orders in any of ``states``, oldest first (the authorization worker's queue)."""
        marks = ", ".join("?" for _ in states)
        rows = self._read(
            lambda c: c.execute(
                f"SELECT {ORDER_COLUMNS} FROM {ORDER_FROM} "  # noqa: S608 - constant SQL
                f"WHERE o.state IN ({marks}) ORDER BY o.created_ms, o.xid",
                tuple(s.value for s in states),
            ).fetchall()
        )
        return [order_from_row(r) for r in rows]

    def record_purchase(
        self, xid: bytes, cardholder_thumb: bytes, oi_data: bytes, pi: bytes
    ) -> Order:
        """PReq verified: keep OIData, the sealed PI as received and who signed it."""
        with self._write() as conn:
            move_order(
                conn, xid, (OrderState.INITIATED,), OrderState.PURCHASED,
                cardholder_thumb=cardholder_thumb, oi_data=oi_data, pi=pi,
            )  # fmt: skip
        return self.order(xid)

    # -- authorization ----------------------------------------------------------------

    def record_auth_request(
        self, xid: bytes, rrpid: bytes, request: bytes, request_digest: bytes
    ) -> Order:
        """The AuthReq as it will be sent (and re-sent after a crash)."""
        with self._write() as conn:
            move_order(
                conn, xid, (OrderState.PURCHASED,), OrderState.AUTHORIZING,
                auth_rrpid=rrpid, auth_request=request, auth_request_digest=request_digest,
            )  # fmt: skip
        return self.order(xid)

    def renew_auth_request(
        self, xid: bytes, old_rrpid: bytes, rrpid: bytes, request: bytes, request_digest: bytes
    ) -> Order:
        """The AuthReq ``old_rrpid``, refused as too old, gives way to one built afresh;
        ``AnsweredUnreadably`` if its bytes had an answer this release cannot read."""
        with self._write() as conn:
            row = conn.execute(
                "SELECT auth_rrpid, unreadable FROM orders WHERE xid = ?", (xid,)
            ).fetchone()
            if row is not None and row[0] != old_rrpid:
                raise OrderStateError(f"order {short(xid)}: its AuthReq was already replaced")
            if row is not None and row[1]:
                raise AnsweredUnreadably(f"order {short(xid)}: AuthReq {short(old_rrpid)}")
            # The new AuthReq starts unanswered: no wait, no answer counted against it.
            move_order(
                conn, xid, (OrderState.AUTHORIZING,), OrderState.AUTHORIZING,
                auth_rrpid=rrpid, auth_request=request, auth_request_digest=request_digest,
                unverified=0, retry_after_ms=0,
            )  # fmt: skip
        return self.order(xid)

    def record_authorization(self, xid: bytes, result: Authorization, approved: bool) -> Order:
        """The gateway's verified AuthRes."""
        target = OrderState.AUTHORIZED if approved else OrderState.DECLINED
        with self._write() as conn:
            move_order(
                conn, xid, (OrderState.AUTHORIZING,), target,
                auth_code=result.auth_code, auth_amount=result.amount.minor,
                approval_code=result.approval_code, auth_res=result.auth_res,
                cap_token=result.cap_token, acq_card_msg=result.acq_card_msg,
            )  # fmt: skip
        return self.order(xid)

    def record_failure(self, xid: bytes, error_code: int) -> Order:
        """The gateway refused the order's AuthReq with a verified SET Error
        (``error_code``). An order with none sent is ``fail_unsent``'s to end."""
        return self._failed(xid, error_code, (OrderState.PURCHASED, OrderState.AUTHORIZING))

    def fail_unsent(self, xid: bytes, error_code: int) -> Order:
        """The order purchased, no AuthReq the gateway would take can be built: it ends
        failed with ``error_code``, its offer open again. Only while it is purchased: once
        authorizing, an AuthReq was stored and may have been sent (by another process on
        the same file), the gateway may hold money for it, and failing it would let the
        offer be paid twice. An order another process moved on from purchased meanwhile
        (authorizing, its AuthReq to go on, or ended: failed for the same reason, or
        decided) is returned as it is, nothing changed. ``OrderStateError`` for one never
        purchased."""
        try:
            return self._failed(xid, error_code, (OrderState.PURCHASED,))
        except OrderStateError:
            moved = self.order(xid)
            if moved.state is OrderState.INITIATED:
                raise
            return moved

    def _failed(self, xid: bytes, error_code: int, allowed: Sequence[OrderState]) -> Order:
        """The order, in one of ``allowed``, moved to failed with ``error_code``."""
        with self._write() as conn:
            refuse_answered_unreadably(conn, "orders", "xid", xid, f"order {short(xid)}")
            move_order(conn, xid, allowed, OrderState.FAILED, error_code=error_code)
        return self.order(xid)
