"""``setpay wallet``: register a card with the Cardholder CA, renew, buy, ask, show.

    setpay wallet [--dir DIR] register --card CARD.json [--root ROOT.pem] [--profile ec|rsa]
                                       [--form NAME=VALUE ...]
    setpay wallet [--dir DIR] renew [--card CARD.json] [--profile ec|rsa] [--form NAME=VALUE ...]
    setpay wallet [--dir DIR] purchase (--initiation FILE | --lid-m HEX --description D
                                        --amount N [--currency 978]) [--merchant HOST:PORT]
                                       [--despite ORDER ...]
    setpay wallet [--dir DIR] inquire ORDER [--merchant HOST:PORT]
    setpay wallet [--dir DIR] show

The passphrase that seals the card comes from $SETPAY_WALLET_PASSPHRASE or the
configured passphrase file; a ``soft:DIR`` keystore whose key URI names no pin-source
(``keys = "soft:keys"``, the default) reads its own from $SETPAY_KEYSTORE_PASSPHRASE.
``CARD.json`` is what ``setpay bank open-account --card-out`` wrote: the card number and
its enrolment code in clear, to delete once the card is registered (the wallet keeps
them sealed, and gives the code again at renewals); the command warns when others can
read it. ``--root`` pins the brand root on first use, once the CA's revocation data
verified under it (``cli.party_options``); a later ``--root`` naming another root is
refused. ``--form`` fills in a field of the form the Cardholder CA hands out (a
name it does not ask for is refused); fields not given are sent empty (but
``enrolment-code``, from the card file; a wallet registered before its card had a code,
or whose card the bank gave a new one, gives it at its next renewal with ``renew --card
CARD.json``, the card file the bank wrote with it: a code given as ``--form`` is on the
command line, where other users' ``ps`` and the shell's history show it).
``renew`` asks for a new certificate for the registered card, with a new version of
its key, before the current one ends (a cardholder certificate lasts at most a year, and
never past the card); the current certificate is used until the new one is stored, and
is kept for inquiries about the purchases it paid for, until it expires (the merchant
checks an inquiry's signer as of the inquiry). Output shows the card as BIN and last four
only.

A purchase request the merchant said (unsigned) it was too busy to read is recorded SHED
(it may have been read all the same), and another purchase of that order at that
merchant is refused until ``inquire`` settles it; ``--despite ORDER`` buys it again all
the same, naming the SHED purchase (it may pay the order twice: for a merchant gone, or
whose inquiries are shed too). The SHED record is kept either way.

Exit status: 0 done (a purchase prints the merchant's verified answer, a decline
included); 1 refused or failed (a SET Error from the merchant or the CA, a wrong file or
passphrase, a failure before the purchase request left, a purchase refused for an
unsettled SHED one); 2 usage error (an option missing or malformed); 3 a registration or
renewal the Cardholder CA pends (run ``register`` or ``renew`` again later); 4 a
purchase whose outcome is unknown: its request left and no answer the wallet could
verify and read came back (none, one whose checks failed, one carrying a completion code
or AuthCode this release does not define, one it could not record, or the merchant's
unsigned word that it was too busy to read it), so the card may be authorized; the
purchase keeps its record (SENT or SHED, or after an inquiry the state an earlier answer
left), and ``setpay wallet inquire ORDER`` asks the merchant what became of it; 4 too
for a registration or renewal the Cardholder CA answered with a status this release does
not know (pended or refused, it cannot tell): nothing is installed, the request is kept,
and ``register`` or ``renew`` asks about it again once setpay is upgraded.
"""

from __future__ import annotations

import argparse
import os
import stat
import sys
from datetime import UTC, datetime
from pathlib import Path

from cli.card_file import MAX_CARD_FILE_BYTES, CardFileError, parse_card_file
from cli.currency import currency_code
from cli.initiation import (
    DEFAULT_CURRENCY,
    check_brand,
    initiation_given,
    other_order,
    read_bounded,
)

# Re-exported: callers import read_initiation from here, as before it moved.
from cli.initiation import read_initiation as read_initiation  # noqa: PLC0414
from cli.number_options import amount, integer, shown
from cli.order_options import lid_m_hex, order_description
from cli.party_options import UsageError, parse_form, pin_root

# Re-exported: callers import record_line from here, as before it moved.
from cli.purchase_lines import record_line as record_line  # noqa: PLC0414
from cli.purchase_lines import shown_id
from cli.usage_errors import shown_path
from clients.errors import (
    ClientError,
    ConfigError,
    PurchaseOutcomeUnknown,
    RegistrationError,
    RegistrationOutcomeUnknown,
)
from clients.peers import PeerConfig, check_target
from clients.wallet.config import CONFIG_FILE, WalletConfig, load
from clients.wallet.purchases import PurchaseBook
from clients.wallet.runtime import PENDING_PENDED, PENDING_SENT, Wallet, WalletSummary
from clients.wallet.vault import PASSPHRASE_ENV as CARD_PASSPHRASE_ENV
from clients.wallet.vault import passphrase_source, read_passphrase
from hsm.errors import KeyBackendError
from hsm.uri import PASSPHRASE_ENV as KEYSTORE_PASSPHRASE_ENV
from setcore.errors import PeerError, SetcoreError
from setcore.pan import MAX_EXPIRY_YEAR, MIN_EXPIRY_YEAR, PAN
from setcore.profiles import PROFILES, profile_named
from setpay.v1 import registration_pb2

DIR_ENV = "SETPAY_WALLET_DIR"
# Exit statuses beside 0 and 1 (the module docstring says when each is given).
EXIT_USAGE = 2
EXIT_PENDED = 3
EXIT_OUTCOME_UNKNOWN = 4
REJECTED_BY_ISSUER = registration_pb2.CERT_STATUS_CODE_REJECTED_BY_ISSUER
FORM_HELP = (
    "a field of the Cardholder CA's form (repeatable; a name the form does not ask for is "
    "refused, fields not given are sent empty)"
)


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register the subcommand."""
    p = sub.add_parser(
        "wallet",
        help="the cardholder's wallet: register, purchase, inquire",
        description=(
            f"The cardholder's wallet. The card is sealed under ${CARD_PASSPHRASE_ENV} (or "
            f"wallet.toml's passphrase_file); a soft: keystore whose key URI names no "
            f'pin-source (keys = "soft:keys", the default) reads its passphrase from '
            f"${KEYSTORE_PASSPHRASE_ENV}. Exit status: 0 done, 1 refused or failed, 2 usage "
            f"error, 3 registration or renewal pended (run it again later), 4 purchase outcome "
            f"unknown (the card may be authorized: run setpay wallet inquire ORDER), or a "
            f"registration or renewal answered with a status this release does not know "
            f"(upgrade setpay, then run it again)."
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
    r.add_argument("--form", action="append", default=[], metavar="NAME=VALUE", help=FORM_HELP)

    n = ops.add_parser(
        "renew",
        help="a new certificate for the registered card, with a new key",
        description=(
            "Renew the registered card's certificate before it ends: a new version of the "
            "key, the request signed by it and by the current certificate. The current "
            "certificate is used until the new one is stored, and kept for inquiries about "
            "the purchases it paid for until it expires (the merchant checks an inquiry's "
            "signer as of the inquiry). Exit status 3 when the Cardholder CA pends the "
            "renewal: run renew again later; 4 when it answers a status this release does "
            "not know: upgrade setpay, then run renew again. A revoked or ended certificate "
            "cannot be renewed: register the card again."
        ),
    )
    n.add_argument(
        "--card", type=Path,
        help="the card file from the bank with the card's new enrolment code (JSON): the "
        "way to give the code, which --form would show on the command line",
    )  # fmt: skip
    n.add_argument("--profile", choices=sorted(PROFILES), default="ec")
    n.add_argument(
        "--form", action="append", default=[], metavar="NAME=VALUE",
        help=f"{FORM_HELP}; give an enrolment code with --card, not here",
    )  # fmt: skip

    b = ops.add_parser(
        "purchase",
        help="buy: PInit then the dual-signed purchase request",
        description=(
            "Buy: PInit, then the dual-signed purchase request. Exit status 4 when the "
            "request left and no answer the wallet could verify came back: the card may be "
            "authorized (the merchant's unsigned word that it was too busy to read it "
            "included); run setpay wallet inquire ORDER to learn the outcome."
        ),
    )
    b.add_argument("--initiation", type=Path, help="SET Initiation JSON from the merchant")
    b.add_argument("--lid-m", type=lid_m_hex, help="the merchant's order id (hex)")
    b.add_argument(
        "--description", type=order_description,
        help="the order description agreed with the merchant",
    )  # fmt: skip
    b.add_argument("--amount", type=amount, help="minor units (cents)")
    b.add_argument("--currency", type=currency_code, help=(
        f"ISO 4217 numeric code of the merchant's order (default {DEFAULT_CURRENCY} (EUR); "
        "the merchant's --initiation file names it)"))  # fmt: skip
    b.add_argument("--exp10", type=integer, help="default: the currency's minor unit")
    b.add_argument("--merchant", type=_target, help="merchant HOST:PORT (default: wallet.toml)")
    b.add_argument(
        "--despite", action="append", default=[], metavar="ORDER",
        help="buy the order again despite this unsettled (SHED) purchase of it at this "
        "merchant, which may pay it twice (repeatable; the SHED record is kept)",
    )  # fmt: skip

    q = ops.add_parser("inquire", help="ask the merchant about a purchase")
    q.add_argument("order", help="the start of the purchase's XID")
    q.add_argument(
        "--merchant", type=_target, help="merchant HOST:PORT (default: where it was bought)"
    )

    ops.add_parser("show", help="the card (BIN and last four only) and its certificate")


def _target(text: str) -> str:
    """A ``--merchant`` value, refused by argparse (exit 2) before any passphrase is read
    or key opened, like every other malformed option."""
    try:
        return check_target(text, "--merchant")
    except ConfigError:
        raise argparse.ArgumentTypeError(f"must be HOST:PORT, not {shown(text)}") from None


def _merchant(config: WalletConfig, target: str | None, origin: str = "--merchant") -> PeerConfig:
    """The merchant's peer, at ``target`` if given; ``origin``: what named that target,
    said with it when the call fails."""
    peer = config.require_merchant()
    return peer if target is None else peer.with_target(target, origin)


def read_card(path: Path) -> tuple[PAN, str]:
    """The PAN and expiry of a card file (``read_card_file``)."""
    pan, expiry, _ = read_card_file(path)
    return pan, expiry


def read_card_file(path: Path) -> tuple[PAN, str, str | None]:
    """The PAN, expiry and enrolment code (None: the card has none) of a card file
    (``setpay bank open-account --card-out``): a number that is a card number, an expiry
    that is a month not yet over (UTC), a code that is text (the CA judges the rest).

    The fields are parsed as the bank parses them (``cli.card_file``); whether the card
    has expired is the wallet's own check. A refusal names the file as ``shown_path``
    does: a file named by the card number is named masked."""
    data = read_bounded(path, MAX_CARD_FILE_BYTES, "a card file")
    shown = shown_path(path)
    try:
        card = parse_card_file(data)
    except CardFileError as exc:
        if exc.field == "expiry":
            years = f"a year from {MIN_EXPIRY_YEAR} to {MAX_EXPIRY_YEAR}"
            raise ClientError(f"{shown}: the card's expiry is not YYYYMM of {years}") from None
        # The error's type where one refused it (the JSON parser's, InvalidPAN's).
        said = f" ({exc.error})" if exc.error is not None else f": {exc}"
        raise ClientError(f"{shown} is not a card file{said}") from None
    now = datetime.now(UTC)
    if int(card.expiry) < now.year * 100 + now.month:
        raise ClientError(f"{shown}: the card expired ({card.expiry[4:]}/{card.expiry[:4]})")
    return card.pan, card.expiry, card.enrolment_code


def _warn_if_shared(path: Path) -> None:
    """A card file others can read gives them the card number: say so, and what to do
    (naming the file as ``shown_path`` does, as ``read_card_file`` refusals do)."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return
    if mode & (stat.S_IRGRP | stat.S_IROTH):
        print(f"setpay wallet: warning: {shown_path(path)} holds the card number in clear and "
              "others can read it: delete it once the card is registered (the wallet keeps "
              "the card sealed)", file=sys.stderr)  # fmt: skip


def _register(wallet: Wallet, passphrase: str, card: tuple[PAN, str, str | None], profile: str,
              form: dict[str, str]) -> int:  # fmt: skip
    pan, expiry, code = card
    done = wallet.registrar(passphrase).register(
        pan, expiry, profile_named(profile), form=form, enrolment_code=code
    )
    if not done.complete:
        print(f"certificate request of card {done.masked_pan} not decided yet by the Cardholder "
              "CA (pended or in progress): run register again later")  # fmt: skip
        return EXIT_PENDED
    print(f"registered card {done.masked_pan}: certificate {done.certificate_thumb.hex()[:16]}; "
          f"card sealed in {wallet.config.card_file.name}")  # fmt: skip
    return 0


def _renew(wallet: Wallet, passphrase: str, profile: str, form: dict[str, str],
           card: tuple[PAN, str, str | None] | None) -> int:  # fmt: skip
    given = (card[0], card[2]) if card is not None else None
    try:
        done = wallet.registrar(passphrase).renew(profile_named(profile), form=form, card=given)
    except RegistrationError as exc:
        if exc.status != REJECTED_BY_ISSUER:
            raise
        # The CA's one refusal does not say why (a wrong code and an ended card look alike),
        # but the likeliest cause a renewal can fix is a code the wallet does not hold.
        raise RegistrationError(
            f"{exc}; if the bank gave the card an enrolment code, renew with `setpay wallet "
            "renew --card CARD.json`, the card file it wrote with the code",
            exc.status,
        ) from exc
    if not done.complete:
        print(f"renewal of the certificate of card {done.masked_pan} not decided yet by the "
              "Cardholder CA (pended or in progress): run renew again later (the current "
              "certificate is used meanwhile)")  # fmt: skip
        return EXIT_PENDED
    print(f"renewed the certificate of card {done.masked_pan}: certificate "
          f"{done.certificate_thumb.hex()[:16]}")  # fmt: skip
    return 0


def _show(summary: WalletSummary) -> None:
    s = summary
    if s.registered and s.pending == PENDING_SENT:
        state = "registered, renewal sent, no answer read yet (run renew again)"
    elif s.registered and s.pending == PENDING_PENDED:
        state = "registered, renewal pended or in progress at the CA (run renew again later)"
    elif s.registered:
        state = "registered"
    elif s.pending == PENDING_SENT:
        state = "certificate request sent, no answer read yet (run register again)"
    elif s.pending == PENDING_PENDED:
        state = "certificate request pended or in progress at the CA (run register again later)"
    else:
        state = "unregistered"
    print(f"card {s.masked_pan} expiry {s.expiry} {state}")
    if s.certificate_thumb:
        print(f"certificate {s.certificate_thumb} {s.certificate_subject} "
              f"valid until {s.certificate_not_after:%Y-%m-%d}")  # fmt: skip
    print(f"{s.purchases} purchases")


def run(args: argparse.Namespace) -> int:
    """Run one wallet command; errors are printed (with the masked PAN at most)."""
    try:
        command = args.wallet_command
        # Read before anything is opened: a wrong file costs no passphrase, key work or call.
        initiation = initiation_given(args) if command == "purchase" else None
        renew_card = command == "renew" and args.card is not None
        card = read_card_file(args.card) if command == "register" or renew_card else None
        form = parse_form(args.form) if command in ("register", "renew") else {}
        if card is not None:
            _warn_if_shared(args.card)
        config = load(args.dir)
        if initiation is not None:
            check_brand(initiation, config)
        if command == "register":
            pin_root(config.root, args.root, "wallet", config.require_ca(), config.brand_id)
        passphrase = read_passphrase(passphrase_source(config.passphrase_file))
        wallet = Wallet.open(config)
        try:
            if command == "register" and card is not None:
                return _register(wallet, passphrase, card, args.profile, form)
            if command == "renew":
                return _renew(wallet, passphrase, args.profile, form, card)
            if command == "show":
                _show(wallet.summary(passphrase))
                return 0
            shopper = wallet.shopper(
                passphrase, inquiring=args.order if command == "inquire" else None
            )
            book = PurchaseBook(config.purchases_file)
            if initiation is not None:
                merchant = _merchant(config, args.merchant)
                try:
                    record = shopper.purchase(merchant, initiation, despite=args.despite)
                except PeerError as exc:
                    raise other_order(exc, args)  # noqa: B904  the refusal, or it said again
            else:
                target, origin = args.merchant, "--merchant"
                if target is None:
                    target = book.find(args.order).merchant_target
                    origin = "merchant_target in purchases.json (--merchant names another)"
                record = shopper.inquire(_merchant(config, target, origin), args.order)
            print(record_line(record, shown_id(book, record)))
            return 0
        finally:
            wallet.close()
    except BrokenPipeError:
        raise  # standard output's reader went away (``| head``): cli.main ends quietly
    except UsageError as exc:
        print(f"setpay wallet: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (PurchaseOutcomeUnknown, RegistrationOutcomeUnknown) as exc:
        print(f"setpay wallet: {exc}", file=sys.stderr)
        return EXIT_OUTCOME_UNKNOWN
    except (ClientError, SetcoreError, KeyBackendError, ValueError, OSError) as exc:
        print(f"setpay wallet: {exc}", file=sys.stderr)
        return 1
