"""An order's row as the authorizer (``authorizer``) reads it: the AuthReq stored on it,
the order date its TransIDs carry, whether another thread tried it since a read, and a
row that lacks what its state says it holds.

setpay writes an order's parts together (``record_purchase``, ``record_auth_request``),
so a row without them was changed by hand or damaged: sending nothing is all that is
safe, and the error names the order (``damaged``).
"""

from __future__ import annotations

from clients.errors import StoreError
from clients.merchant.records import Order
from setcore.authorization import AuthRequestState


def damaged(order: Order, missing: str) -> StoreError:
    """The error for an order whose row lacks ``missing``, which its state says it holds."""
    return StoreError(
        f"merchant database damaged: order {order.short_id} is {order.state.value} "
        f"without {missing}"
    )


def tried_since(read: Order, now: Order) -> bool:
    """True when the order read ``now`` (under its lock) shows a try since it was ``read``:
    its AuthReq stored or replaced, or an answer that did not verify or could not be
    read counted. A try that got no answer at all leaves no trace, and sending again at
    once is then no more than the fast retries do (``outcome``)."""
    return (now.state, now.auth_rrpid, now.unverified, now.unreadable, now.retry_after_ms) != (
        read.state, read.auth_rrpid, read.unverified, read.unreadable, read.retry_after_ms,
    )  # fmt: skip


def sent_auth_request(order: Order) -> tuple[bytes, AuthRequestState]:
    """The order's stored AuthReq bytes, and what the gateway's answer to them is checked
    against; ``StoreError`` if the order has none (``damaged``)."""
    rrpid, request, digest = order.auth_rrpid, order.auth_request, order.auth_request_digest
    if not (rrpid and request and digest):
        raise damaged(order, "its AuthReq")
    return request, AuthRequestState(rrpid, order.xid, digest)


def preq_date_ms(order: Order) -> int:
    """The order date (PReqDate) the merchant gave the order's TransIDs at PInit, which the
    cardholder's PI must repeat for any AuthReq around it to pass the gateway."""
    return order.trans_ids_proto().preq_date_unix_ms
