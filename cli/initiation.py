"""The order ``setpay wallet purchase`` pays: the SET Initiation a merchant handed out,
read from its file (``--initiation``) or from the command line's terms (``--lid-m``,
``--description``, ``--amount``...), and checked before the wallet is opened: a wrong file
or term costs no passphrase, key work or call.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from cli.number_options import MAX_AMOUNT, bound_text, read_whole
from cli.order_options import lid_m_from_hex, order_description
from cli.party_options import UsageError
from cli.usage_errors import shown_path
from clients.errors import ClientError
from clients.wallet.config import WalletConfig
from clients.wallet.purchases import Initiation
from setcore.currency import exponent_for
from setcore.errors import ErrorCode, PeerError
from setcore.purchase import MAX_ORDER_DESCRIPTION_BYTES

# An initiation is a few fields and a description (at most MAX_ORDER_DESCRIPTION_BYTES,
# which JSON escaping can grow sixfold); anything larger is the wrong file.
MAX_INITIATION_FILE_BYTES = 8 * MAX_ORDER_DESCRIPTION_BYTES
# What a SET Initiation must name; exp10 defaults to the currency's minor unit.
INITIATION_FIELDS = ("lid_m", "description", "currency", "amount")
# The currency of a purchase from flags without --currency: a merchant's orders' own unless
# its merchant.toml names another. SET's PInitRes names none: the initiation file does.
DEFAULT_CURRENCY = 978


def _lid_m(value: object, what: str) -> bytes:
    """An initiation's ``lid_m``, judged as ``--lid-m`` is (``cli.order_options``): read
    with ``bytes.fromhex(str(...))``, ``"00 11"`` was the order 0011, an empty one or a
    JSON number was taken, and one past SET's 32 bytes refused only by the merchant.

    Not refused for looking like a card number, as the option is: the file is the
    merchant's, its ``lid_m`` the id the merchant drew at random unless its operator
    typed one, and a random one is all digits passing the Luhn check 1 time in about
    18,000 (8 bytes). Refused, that order could not be paid at all, and the id is no
    card number: the merchant already printed it, and the wallet sends it back as it
    must. A merchant that checks ``--lid-m`` never offers a typed card number."""
    if not isinstance(value, str):
        raise ClientError(f"{what} is not text: an order's local id in hex")
    try:
        return lid_m_from_hex(value)
    except argparse.ArgumentTypeError as exc:
        raise ClientError(f"{what}: {exc}") from None


def _description(value: object, what: str) -> bytes:
    """An initiation's ``description`` as UTF-8, as ``--description`` is read: JSON's
    ``\\ud800`` escapes make text no UTF-8 carries, refused before with the codec's
    own words ("'utf-8' codec can't encode character ..."); and one that could hold a
    card number (``order_description``), which the wallet would hash into the order it
    signs, and whose merchant kept it in its order book. A merchant that checks
    ``--description`` never offers one; an older one, or another program, could. Its
    words are the merchant's to change: the refusal says so."""
    if not isinstance(value, str):
        raise ClientError(f"{what} is not text")
    try:
        encoded = value.encode("utf-8")
    except UnicodeEncodeError:
        raise ClientError(
            f"{what} is not UTF-8 text: it holds a lone surrogate (an escape \\ud800 to"
            " \\udfff not in a pair)"
        ) from None
    try:
        order_description(value)
    except argparse.ArgumentTypeError as exc:
        raise ClientError(
            f"{what}: {exc} (the merchant's words: ask it for the order again)"
        ) from None
    return encoded


def _number(value: object, what: str) -> int:
    # JSON true/false are ints to Python; an amount is never one. Text is read as the
    # command line's numbers are (``cli.number_options``): "+5", "5_000" or a 5 in
    # fullwidth is no amount a merchant wrote.
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ClientError(f"{what} is not an integer")
    number = value if isinstance(value, int) else read_whole(value)
    if number is None:
        raise ClientError(f"{what} is not an integer")
    return number


def _amount(value: object, what: str) -> int:
    """An initiation's ``amount``, bounded as ``--amount`` is (``cli.number_options``):
    at most ``MAX_AMOUNT`` minor units, which every card number exceeds. Unbounded, a card
    number in the file's amount was taken for the order's, sent in the purchase and kept
    in the wallet's purchase book; refused, the value is not repeated. One below 1 is
    refused with the order's other terms ("amount must be positive")."""
    number = _number(value, what)
    if number > MAX_AMOUNT:
        raise ClientError(
            f"{what} is more than {bound_text(MAX_AMOUNT)} minor units, the bank's largest"
            " amount (not repeated)"
        )
    return number


def read_bounded(path: Path, limit: int, what: str) -> bytes:
    """The bytes of a small file the command reads whole: at most ``limit`` of them. A
    refusal names the file but for a card number typed for it (``wallet register --card``
    given the number, not the bank's card file: ``cli.usage_errors.shown_path``)."""
    try:
        with path.open("rb") as handle:
            data = handle.read(limit + 1)
    except OSError as exc:
        raise ClientError(f"cannot read {shown_path(path)}: {exc.strerror}") from None
    if len(data) > limit:
        raise ClientError(f"{shown_path(path)} is too large to be {what}")
    return data


def _one_value_per_name(pairs: list[tuple[str, object]]) -> dict[str, object]:
    """A JSON object of an initiation as a dict; ``ClientError`` if it names a member
    twice. JSON leaves that open (Python keeps the last value, other readers the first):
    ``"amount": 100`` then ``"amount": 100000`` would be shown one sum and paid another."""
    if len({name for name, _ in pairs}) != len(pairs):
        raise ClientError("names a member more than once: not a SET Initiation to pay")
    return dict(pairs)


def read_initiation(path: Path) -> Initiation:
    """The SET Initiation a merchant handed out (``setpay merchant orders new``'s JSON).

    Its ``brand``, when present, is kept, for ``check_brand``. Its ``merchant`` is read
    by no one: it is the address the merchant listens on (its ``server.listen``, often
    a wildcard), not the target a wallet reaches it by nor anything the merchant signs.
    The merchant is the one ``--merchant`` or the configuration names, and its PInitRes
    proves who it is; a merchant that never offered the LID-M refuses it (UNKNOWN_LID).

    A refusal names the file as ``shown_path`` does: one named by a card number, masked.
    """
    data = read_bounded(path, MAX_INITIATION_FILE_BYTES, "a SET Initiation")
    shown = shown_path(path)
    try:
        raw = json.loads(data, object_pairs_hook=_one_value_per_name)
    except ClientError as exc:
        raise ClientError(f"{shown} {exc}") from None
    except (ValueError, RecursionError):  # nested past the parser's depth: a peer's file
        raise ClientError(f"{shown} is not JSON: expected a SET Initiation") from None
    if not isinstance(raw, dict):
        raise ClientError(f"{shown} is not a SET Initiation (a JSON object)")
    missing = [name for name in INITIATION_FIELDS if name not in raw]
    if missing:
        raise ClientError(f"{shown} has no {', '.join(missing)}: not a complete SET Initiation")
    description = _description(raw["description"], f"{shown}: description")
    currency = _number(raw["currency"], f"{shown}: currency")
    exp10 = raw["exp10"] if "exp10" in raw else exponent_for(currency)
    brand = raw.get("brand", "")
    if not isinstance(brand, str):
        raise ClientError(f"{shown}: brand is not text")
    return Initiation(
        _lid_m(raw["lid_m"], f"{shown}: lid_m"), description, currency,
        _amount(raw["amount"], f"{shown}: amount"), _number(exp10, f"{shown}: exp10"),
        brand_id=brand,
    )  # fmt: skip


def check_brand(initiation: Initiation, config: WalletConfig) -> None:
    """Refuse an initiation for another brand than the wallet's card, before the
    passphrase is asked for: the merchant would only refuse its PInitReq."""
    if initiation.brand_id and initiation.brand_id != config.brand_id:
        raise ClientError(
            f"the order is for brand {initiation.brand_id!r}; this wallet's card is of "
            f"brand {config.brand_id!r}"
        )


def initiation_given(args: argparse.Namespace) -> Initiation:
    """The initiation the command names, refused here if no purchase could complete it:
    ``Shopper.purchase`` would refuse it too, but only after opening the wallet."""
    if args.initiation is not None:
        initiation = read_initiation(args.initiation)
        try:
            initiation.order()
        except ClientError as exc:
            raise ClientError(f"{shown_path(args.initiation)}: {exc}") from None
        return initiation
    # --lid-m is bytes and --description text UTF-8 can carry, read by their argparse
    # types (``cli.order_options``), as ``setpay merchant orders new`` reads them.
    if args.lid_m is None or args.description is None or args.amount is None:
        raise UsageError("give --initiation FILE, or --lid-m, --description and --amount")
    currency = DEFAULT_CURRENCY if args.currency is None else args.currency
    initiation = Initiation(
        args.lid_m, args.description.encode(), currency, args.amount,
        exponent_for(currency) if args.exp10 is None else args.exp10,
    )  # fmt: skip
    initiation.order()
    return initiation


def other_order(refused: PeerError, args: argparse.Namespace) -> Exception:
    """A purchase from flags the merchant refused DIGEST_MISMATCH: its digest of the order
    differs, which says neither which term nor that a currency was assumed."""
    if args.initiation is not None or refused.code != ErrorCode.ERROR_CODE_DIGEST_MISMATCH:
        return refused
    assumed = f"; --currency was not given: {DEFAULT_CURRENCY} (EUR) was assumed"
    assumed = "" if args.currency is not None else assumed
    return ClientError(f"{refused}: the merchant's order is not the one given (its description, "
                       f"amount or currency differ{assumed}); buy it with the merchant's "
                       "initiation file (--initiation)")  # fmt: skip
