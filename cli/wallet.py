"""``setpay wallet``: register a card with the Cardholder CA, buy, ask, show.

    setpay wallet [--dir DIR] register --card CARD.json [--root ROOT.pem] [--profile ec|rsa]
    setpay wallet [--dir DIR] purchase (--initiation FILE | --lid-m HEX --description D
                                        --amount N [--currency 978]) [--merchant HOST:PORT]
    setpay wallet [--dir DIR] inquire ORDER [--merchant HOST:PORT]
    setpay wallet [--dir DIR] show

The passphrase that seals the card comes from $SETPAY_WALLET_PASSPHRASE or the
configured passphrase file; a ``soft:DIR`` keystore whose key URI names no pin-source
(``keys = "soft:keys"``, the default) reads its own from $SETPAY_KEYSTORE_PASSPHRASE.
``CARD.json`` is what ``setpay bank open-account --card-out`` wrote. Output shows the
card as BIN and last four only. A registration the Cardholder CA pends exits 3 (run
``register`` again later).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from dataclasses import replace
from pathlib import Path

from clients.errors import ClientError
from clients.identity import read_root
from clients.peers import PeerConfig, check_target
from clients.wallet.config import CONFIG_FILE, WalletConfig, load
from clients.wallet.purchases import Initiation, PurchaseBook, PurchaseRecord
from clients.wallet.runtime import Wallet
from clients.wallet.vault import PASSPHRASE_ENV as CARD_PASSPHRASE_ENV
from clients.wallet.vault import passphrase_source, read_passphrase
from hsm.errors import KeyBackendError
from hsm.uri import PASSPHRASE_ENV as KEYSTORE_PASSPHRASE_ENV
from setcore.currency import exponent_for
from setcore.errors import SetcoreError
from setcore.pan import PAN, InvalidPAN
from setcore.profiles import PROFILES, profile_named
from setcore.purchase import MAX_ORDER_DESCRIPTION_BYTES

DIR_ENV = "SETPAY_WALLET_DIR"
# A card file from the bank is a few fields; anything larger is the wrong file.
MAX_CARD_FILE_BYTES = 4096
# An initiation is a few fields and a description (at most MAX_ORDER_DESCRIPTION_BYTES,
# which JSON escaping can grow sixfold); anything larger is the wrong file.
MAX_INITIATION_FILE_BYTES = 8 * MAX_ORDER_DESCRIPTION_BYTES
# What a SET Initiation must name; exp10 defaults to the currency's minor unit.
INITIATION_FIELDS = ("lid_m", "description", "currency", "amount")


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register the subcommand."""
    p = sub.add_parser(
        "wallet",
        help="the cardholder's wallet: register, purchase, inquire",
        description=(
            f"The cardholder's wallet. The card is sealed under ${CARD_PASSPHRASE_ENV} (or "
            f"wallet.toml's passphrase_file); a soft: keystore whose key URI names no "
            f'pin-source (keys = "soft:keys", the default) reads its passphrase from '
            f"${KEYSTORE_PASSPHRASE_ENV}."
        ),
    )
    p.add_argument(
        "--dir", type=Path, default=Path(os.environ.get(DIR_ENV, ".")),
        help=f"wallet directory holding {CONFIG_FILE} (default ${DIR_ENV} or .)",
    )  # fmt: skip
    ops = p.add_subparsers(dest="wallet_command", required=True)

    r = ops.add_parser("register", help="get a certificate for the card from the Cardholder CA")
    r.add_argument("--card", type=Path, required=True, help="card file from the bank (JSON)")
    r.add_argument("--root", type=Path, help="the brand root (PEM or DER), pinned on first use")
    r.add_argument("--profile", choices=sorted(PROFILES), default="ec")
    r.add_argument("--form", action="append", default=[], metavar="NAME=VALUE")

    b = ops.add_parser("purchase", help="buy: PInit then the dual-signed purchase request")
    b.add_argument("--initiation", type=Path, help="SET Initiation JSON from the merchant")
    b.add_argument("--lid-m", help="the merchant's order id (hex)")
    b.add_argument("--description", help="the order description agreed with the merchant")
    b.add_argument("--amount", type=int, help="minor units (cents)")
    b.add_argument("--currency", type=int, default=978)
    b.add_argument("--exp10", type=int, help="default: the currency's minor unit")
    b.add_argument("--merchant", help="merchant HOST:PORT (default: wallet.toml)")

    q = ops.add_parser("inquire", help="ask the merchant about a purchase")
    q.add_argument("order", help="the start of the purchase's XID")
    q.add_argument("--merchant", help="merchant HOST:PORT (default: where it was bought)")

    ops.add_parser("show", help="the card (BIN and last four only) and its certificate")


def _merchant(config: WalletConfig, target: str | None) -> PeerConfig:
    peer = config.require_merchant()
    return peer if target is None else replace(peer, target=check_target(target, "--merchant"))


def _hex(text: object, what: str) -> bytes:
    try:
        return bytes.fromhex(str(text))
    except ValueError:
        raise ClientError(f"{what} is not hexadecimal") from None


def _number(value: object, what: str) -> int:
    # JSON true/false are ints to Python; an amount is never one.
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ClientError(f"{what} is not an integer")
    try:
        return int(value)
    except ValueError:
        raise ClientError(f"{what} is not an integer") from None


def _read_bounded(path: Path, limit: int, what: str) -> bytes:
    """The bytes of a small file the command reads whole: at most ``limit`` of them."""
    try:
        with path.open("rb") as handle:
            data = handle.read(limit + 1)
    except OSError as exc:
        raise ClientError(f"cannot read {path}: {exc.strerror}") from None
    if len(data) > limit:
        raise ClientError(f"{path} is too large to be {what}")
    return data


def read_initiation(path: Path) -> Initiation:
    """The SET Initiation a merchant handed out (``setpay merchant orders new``'s JSON)."""
    data = _read_bounded(path, MAX_INITIATION_FILE_BYTES, "a SET Initiation")
    try:
        raw = json.loads(data)
    except ValueError:
        raise ClientError(f"{path} is not JSON: expected a SET Initiation") from None
    if not isinstance(raw, dict):
        raise ClientError(f"{path} is not a SET Initiation (a JSON object)")
    missing = [name for name in INITIATION_FIELDS if name not in raw]
    if missing:
        raise ClientError(f"{path} has no {', '.join(missing)}: not a complete SET Initiation")
    if not isinstance(raw["description"], str):
        raise ClientError(f"{path}: description is not text")
    currency = _number(raw["currency"], f"{path}: currency")
    exp10 = raw["exp10"] if "exp10" in raw else exponent_for(currency)
    return Initiation(
        _hex(raw["lid_m"], f"{path}: lid_m"), raw["description"].encode(), currency,
        _number(raw["amount"], f"{path}: amount"), _number(exp10, f"{path}: exp10"),
    )  # fmt: skip


def _initiation(args: argparse.Namespace) -> Initiation:
    """The initiation the command names, refused here if no purchase could complete it:
    ``Shopper.purchase`` would refuse it too, but only after opening the wallet."""
    if args.initiation is not None:
        initiation = read_initiation(args.initiation)
        try:
            initiation.order()
        except ClientError as exc:
            raise ClientError(f"{args.initiation}: {exc}") from None
        return initiation
    if args.lid_m is None or args.description is None or args.amount is None:
        raise ClientError("give --initiation FILE, or --lid-m, --description and --amount")
    initiation = Initiation(
        _hex(args.lid_m, "--lid-m"), args.description.encode(), args.currency, args.amount,
        exponent_for(args.currency) if args.exp10 is None else args.exp10,
    )  # fmt: skip
    initiation.order()
    return initiation


def record_line(record: PurchaseRecord) -> str:
    """One purchase for people."""
    if not record.answered:
        return (
            f"{record.short_id}  SENT  amount {record.amount} ({record.currency}): no answer "
            f"from the merchant yet (ask with `setpay wallet inquire {record.short_id}`)"
        )
    return (
        f"{record.short_id}  {record.completion.removeprefix('COMPLETION_CODE_')}  "
        f"{record.auth_code.removeprefix('AUTH_CODE_')}  amount {record.amount} "
        f"({record.currency}) authorized {record.auth_amount} captured {record.captured} "
        f"refunded {record.credited}"
    )


def read_card(path: Path) -> tuple[PAN, str]:
    """The PAN and expiry of a card file (``setpay bank open-account --card-out``)."""
    data = _read_bounded(path, MAX_CARD_FILE_BYTES, "a card file")
    try:
        raw = json.loads(data)
        if not isinstance(raw, dict):
            raise TypeError("not a JSON object")
        return PAN(str(raw["pan"])), str(raw["expiry"])
    except (ValueError, KeyError, TypeError, InvalidPAN) as exc:
        # The parse error is not chained: its text could quote the card number.
        raise ClientError(f"{path} is not a card file ({type(exc).__name__})") from None


def _register(wallet: Wallet, args: argparse.Namespace, passphrase: str) -> int:
    config = wallet.config
    pan, expiry = read_card(args.card)
    form = dict(item.partition("=")[::2] for item in args.form)
    done = wallet.registrar(passphrase).register(
        pan, expiry, profile_named(args.profile), form=form
    )
    if not done.complete:
        print("certificate request pended by the Cardholder CA: run register again later")
        return 3
    print(
        f"registered card {pan.masked}: certificate {done.certificate_thumb.hex()[:16]}; "
        f"card sealed in {config.card_file.name}"
    )
    return 0


def _pin_root(config: WalletConfig, root: Path | None) -> None:
    if config.root.exists():
        return
    if root is None:
        raise ClientError(f"no pinned brand root at {config.root}: give --root")
    read_root(root)
    config.root.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(root, config.root)


def run(args: argparse.Namespace) -> int:
    """Run one wallet command; errors are printed (with the masked PAN at most)."""
    try:
        command = args.wallet_command
        # Read before anything is opened: a wrong file costs no passphrase or key work.
        initiation = _initiation(args) if command == "purchase" else None
        config = load(args.dir)
        if command == "register":
            _pin_root(config, args.root)
        passphrase = read_passphrase(passphrase_source(config.passphrase_file))
        wallet = Wallet.open(config)
        try:
            if command == "register":
                return _register(wallet, args, passphrase)
            if command == "show":
                s = wallet.summary(passphrase)
                state = "registered" if s.registered else "pended" if s.pending else "unregistered"
                print(f"card {s.masked_pan} expiry {s.expiry} {state}")
                if s.certificate_thumb:
                    print(f"certificate {s.certificate_thumb} {s.certificate_subject} "
                          f"valid until {s.certificate_not_after:%Y-%m-%d}")  # fmt: skip
                print(f"{s.purchases} purchases")
                return 0
            shopper = wallet.shopper(passphrase)
            if initiation is not None:
                record = shopper.purchase(_merchant(config, args.merchant), initiation)
            else:
                target = args.merchant
                if target is None:
                    target = PurchaseBook(config.purchases_file).find(args.order).merchant_target
                record = shopper.inquire(_merchant(config, target), args.order)
            print(record_line(record))
            return 0
        finally:
            wallet.close()
    except (ClientError, SetcoreError, KeyBackendError, ValueError, OSError) as exc:
        print(f"setpay wallet: {exc}", file=sys.stderr)
        return 1
