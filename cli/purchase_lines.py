"""A wallet purchase as ``setpay wallet`` prints it, named by the id its book shows it by.

The id is the shortest start of the purchase's XID, 8 hex digits at least, that no other
purchase of the wallet's book shares (``clients.wallet.short_ids``): the merchant picks
XIDs, and one starting as an earlier purchase's does must not make the two look alike.
"""

from __future__ import annotations

from clients.errors import ConfigError
from clients.wallet.merchant_answers import NOT_BOUGHT, SHED
from clients.wallet.purchases import REFUSED, PurchaseBook, PurchaseRecord

# A record's auth_code when the merchant's answer carried no AuthCode (none stands: the
# order was not authorized), shown "-" as ``setpay merchant orders`` shows it: its enum's
# zero, UNSPECIFIED, read like a reason.
NO_AUTH_CODE = ("", "AUTH_CODE_UNSPECIFIED")
ORDER_REJECTED = "COMPLETION_CODE_ORDER_REJECTED"


def record_line(record: PurchaseRecord, short_id: str | None = None) -> str:
    """One purchase for people: its columns stay where they are for any outcome (the id,
    the completion, the AuthCode or "-", then the amounts), what follows is for people.
    ``short_id``: the id its book shows it by (``PurchaseBook.short_id``, longer than the
    XID's first 8 digits when another purchase starts with those); those 8 if not given."""
    shown = record.short_id if short_id is None else short_id
    if record.completion == SHED:
        # Its status was not signed: the merchant may have read the request all the same.
        return (
            f"{shown}  SHED  amount {record.amount} ({record.currency}): the merchant said it "
            "was too busy to read the purchase request, which it may have read all the same "
            f"(ask with `setpay wallet inquire {shown}` before buying again)"
        )
    if record.completion == NOT_BOUGHT:
        # The merchant's statement, not proof: one that read the request may say the same.
        kept = "kept in" if record.signed_error else "not kept (an earlier build) in"
        return (
            f"{shown}  NOT_BOUGHT  {record.refusal.removeprefix('ERROR_CODE_')}  amount "
            f"{record.amount} ({record.currency}): the merchant states, signed, that it holds "
            f"no such purchase (that signed statement {kept} purchases.json): check the "
            "card statement for a payment to it all the same"
        )
    if not record.answered:
        return (
            f"{shown}  SENT  amount {record.amount} ({record.currency}): no answer "
            f"from the merchant yet (ask with `setpay wallet inquire {shown}`)"
        )
    if record.completion == REFUSED:
        return (
            f"{shown}  REFUSED  {record.refusal.removeprefix('ERROR_CODE_')}  amount "
            f"{record.amount} ({record.currency}): the merchant refused the purchase request"
        )
    no_code = record.auth_code in NO_AUTH_CODE
    line = (
        f"{shown}  {record.completion.removeprefix('COMPLETION_CODE_')}  "
        f"{'-' if no_code else record.auth_code.removeprefix('AUTH_CODE_')}  amount "
        f"{record.amount} ({record.currency}) authorized {record.auth_amount} captured "
        f"{record.captured} refunded {record.credited}"
    )
    if record.completion == ORDER_REJECTED and no_code:
        # SET's PRes and InqRes carry no reason for a rejected order; the merchant knows it.
        line += ": the merchant rejected the order and gave no reason (SET's answer has no "
        line += "room for one): ask the merchant why"
    return line


def shown_id(book: PurchaseBook, record: PurchaseRecord) -> str:
    """The id to print for a purchase just made or asked about: its book's; the whole XID
    (which ``find`` always takes) if the book cannot be read again, rather than fail a
    command whose purchase was made and recorded."""
    try:
        return book.short_id(record.xid)
    except ConfigError:
        return record.xid
