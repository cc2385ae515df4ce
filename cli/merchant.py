"""``setpay merchant``: register with the Merchant CA, serve wallets, settle orders.

    setpay merchant [--dir DIR] register --root ROOT.pem [--profile ec|rsa] [--form K=V]...
                                         [--account-file FILE]
    setpay merchant [--dir DIR] renew [--profile ec|rsa]
    setpay merchant [--dir DIR] serve [--metrics-port PORT|any]
    setpay merchant [--dir DIR] forget-gateway
    setpay merchant [--dir DIR] orders [list | new --description D --amount N]
    setpay merchant [--dir DIR] capture ORDER [--amount N]
    setpay merchant [--dir DIR] refund ORDER [--amount N]
    setpay merchant [--dir DIR] reverse ORDER [--keep N]
    setpay merchant [--dir DIR] reverse [ORDER] (--capture OP | --credit OP)
    setpay merchant [--dir DIR] batch open
    setpay merchant [--dir DIR] batch purge --batch ID
    setpay merchant [--dir DIR] batch {close,query} --batch ID [--details N [--start K]]

ORDER is the start of an order's XID as ``orders`` lists it; OP the start of a capture's or
refund's id as the capture and refund commands print it, matched among operations of that
kind only and, given ORDER, among that order's (``cli.merchant_reverse``); an empty one (an
unset shell variable) is a usage error, never "the whole authorization". Output shows ids
shortened and never a card number: the merchant never has one. ``register --root`` pins the
brand root on first use, once the CA's revocation data verified under it, written whole or
not at all (``cli.party_options``); a later ``--root`` naming another root is refused, both
roots named by SHA-256 fingerprint. A command line incomplete or malformed (no
``--root`` before a root is pinned, a ``--form`` without ``=``, a ``--currency`` no account
is kept in) exits 2, as argparse's own errors do. ``orders new`` makes an order in
``--currency``, by default merchant.toml's ``merchant.currency`` (EUR unless set): the
currency of the merchant's settlement account, the bank's ``[ledger]
settlement_currency``, or the gateway declines every authorization of it
CURRENCY_MISMATCH. Given again with the same terms and ``--lid-m`` (its output lost), it
prints the stored offer's initiation again. A command the gateway refuses (a capture
refused, a batch unknown) exits 1; a registration or renewal the Merchant CA pends exits 3
(run it again later); a batch close or query whose totals differ from the merchant's own
operations exits 5, each difference printed (``cli.merchant_batch``); a settlement
command or a batch open, close or purge whose outcome is unknown (no answer, one that did not
verify or of a result code this release cannot read, the merchant's own keys or database
failing on it) exits 4: the request stays sent, and ``serve`` sends it again, as does the same
batch command given again; so do a batch query of such a code and a registration or renewal
answered with a CertStatus this release does not know (nothing installed; an upgraded setpay
asks again). ``orders`` marks a request whose answers did not verify or could not be read,
with when ``serve`` asks again (``clients.merchant.outcome``). ``forget-gateway`` clears the
gateway the merchant takes answers from (the one its first PCertRes named, kept in its
database), for a merchant that changed gateways on purpose: run it with ``serve``
stopped; the next start takes the gateway that answers its first PCertReq. A file the
command cannot read or write (a directory where a file is wanted, a permission) is named
on stderr, exit 1. The settlement account comes from ``--account-file``, a file only its
owner may read (as the passphrase files): ``--account`` puts it on the command line, where
``ps`` and the shell's history show it to others. ``serve --metrics-port`` serves the
merchant's Prometheus metrics (``clients.merchant.metrics``) on that port of
``server.metrics_host`` (loopback by default), in place of ``server.metrics_port``: 0
turns them off, ``any`` takes a port the OS picks; the port is printed once serving.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from cli.currency import currency_code
from cli.merchant_batch import add_batch_parser, check_batch_usage, run_batch
from cli.merchant_reverse import (
    add_reverse_parser,
    check_reverse_usage,
    reverse_operation,
    reverses_operation,
)
from cli.number_options import amount, integer, shown, whole
from cli.order_options import lid_m_hex, new_lid_m, order_description
from cli.party_options import UsageError, parse_form, pin_root
from cli.stop_watcher import StopWatcher
from clients.authority import AuthorityClient
from clients.errors import ClientError, OutcomeUnknown, RegistrationError, UnknownResultCode
from clients.identity import read_root
from clients.merchant.checkout import settled_amounts
from clients.merchant.config import (
    CONFIG_FILE,
    METRICS_ANY_PORT,
    MerchantConfig,
    MetricsPort,
    load,
    parse_metrics_port,
)
from clients.merchant.gateway_client import pinned_since
from clients.merchant.order_store import MAX_LISTED_ORDERS
from clients.merchant.records import Money, Operation, OperationState, Order, OrderState, short
from clients.merchant.records import OperationKind as Kind
from clients.merchant.registration import MerchantRegistrar, Registered
from clients.merchant.runtime import Merchant
from clients.merchant.servicer import GRACE_SECONDS
from clients.merchant.store import MerchantStore
from clients.transport import Caller, open_channel
from gateway.stop_signals import RepeatNotice
from hsm.errors import KeyBackendError, PermanentBackendError
from hsm.pinsource import PinSource
from hsm.uri import open_backend
from setcore.currency import exponent_for
from setcore.enum_names import code_name
from setcore.errors import ErrorCode, SetcoreError
from setcore.pki.truststore import TrustStore
from setcore.profiles import PROFILES, profile_named
from setpay.v1 import authorization_pb2, capture_pb2, registration_pb2

log = logging.getLogger("setpay.merchant")

DIR_ENV = "SETPAY_MERCHANT_DIR"
# A command line incomplete or malformed: argparse's own status for its errors.
EXIT_USAGE = 2
# The Merchant CA's refusal of a request that carries no settlement account for an ID the
# bank holds one for: it sends no reason (the bank logs it), so register says the way out.
REJECTED_BY_AGENT = registration_pb2.CERT_STATUS_CODE_REJECTED_BY_AGENT
NO_ACCOUNT_HINT = (
    "if the bank enrolled this merchant ID or it held certificates before, give the "
    "settlement account id the bank handed you with --account-file FILE (a merchant ID "
    "whose certificates are still valid runs renew instead)"
)
# LID-M printed for a new order: short enough to type, random enough never to repeat.
LID_M_BYTES = 8
# The enum an operation's result code is from: each answer names its own.
_RESULT_CODES = {
    Kind.CAPTURE: authorization_pb2.CapCode,
    Kind.AUTH_REVERSAL: authorization_pb2.AuthRevCode,
    Kind.CAPTURE_REVERSAL: capture_pb2.CapRevOrCredCode,
    Kind.CREDIT: capture_pb2.CapRevOrCredCode,
    Kind.CREDIT_REVERSAL: capture_pb2.CapRevOrCredCode,
}


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register the subcommand."""
    p = sub.add_parser("merchant", help="the merchant: register, serve wallets, settle orders")
    p.add_argument(
        "--dir", type=Path, default=Path(os.environ.get(DIR_ENV, ".")),
        help=f"merchant directory holding {CONFIG_FILE} (default ${DIR_ENV} or .)",
    )  # fmt: skip
    ops = p.add_subparsers(dest="merchant_command", required=True)

    r = ops.add_parser("register", help="get certificates from the Merchant CA")
    r.add_argument("--root", type=Path, help="the brand root (PEM or DER), pinned on first use")
    r.add_argument("--profile", choices=sorted(PROFILES), default="ec")
    r.add_argument("--form", action="append", default=[], metavar="NAME=VALUE")
    account = r.add_mutually_exclusive_group()
    account.add_argument(
        "--account-file", type=Path, metavar="FILE",
        help="file holding the settlement account identification (sealed to the CA); "
        "only its owner may read it (chmod 600)",
    )  # fmt: skip
    account.add_argument(
        "--account",
        help="the settlement account on the command line: unsafe, ps and the shell's "
        "history show it to others; prefer --account-file",
    )

    w = ops.add_parser("renew", help="new keys and certificates, proving the current key")
    w.add_argument("--profile", choices=sorted(PROFILES), default="ec")

    s = ops.add_parser("serve", help="serve wallets (PInit, Purchase, Inquiry)")
    s.add_argument(
        "--metrics-port", type=_metrics_port, metavar="PORT",
        help=f"serve Prometheus metrics on this port (0: off; {METRICS_ANY_PORT}: one the OS "
        "picks); overrides server.metrics_port",
    )  # fmt: skip
    ops.add_parser(
        "forget-gateway", help="clear the gateway pinned at the first start (changing gateways)"
    )

    o = ops.add_parser("orders", help="list orders, or create one (SET Initiation)")
    o_ops = o.add_subparsers(dest="orders_command")
    o_ops.add_parser("list", help="list orders (the default)").add_argument(
        "--limit", type=whole(1, MAX_LISTED_ORDERS), default=50,
        help=f"the newest N orders (1 to {MAX_LISTED_ORDERS}; default 50)",
    )  # fmt: skip
    n = o_ops.add_parser("new", help="create an order and print its SET Initiation")
    n.add_argument("--description", type=order_description, required=True)
    n.add_argument("--amount", type=amount, required=True, help="minor units (cents)")
    n.add_argument(
        "--currency", type=currency_code,
        help="ISO 4217 numeric (default: merchant.toml's merchant.currency, EUR unless set)",
    )  # fmt: skip
    n.add_argument(
        "--exp10", type=integer, help="decimal exponent of the minor unit (default: the currency's)"
    )
    n.add_argument("--lid-m", type=lid_m_hex, help="the order's local id (hex; default random)")

    for name, text in (("capture", "capture an authorized order"), ("refund", "refund")):
        c = ops.add_parser(name, help=text)
        c.add_argument("order", help="the start of the order's XID")
        c.add_argument("--amount", type=amount, help="minor units (default: all that is left)")

    add_reverse_parser(ops)
    add_batch_parser(ops)


def _metrics_port(text: str) -> MetricsPort:
    try:
        return parse_metrics_port(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be a port number (0 to 65535) in digits 0-9 or {METRICS_ANY_PORT}, not "
            f"{shown(text)}"
        ) from None


# -- commands ---------------------------------------------------------------------------


def _with_registrar(
    config: MerchantConfig, step: Callable[[MerchantRegistrar], Registered]
) -> Registered:
    """Run one registration step with the merchant's keys and the CA, closing both."""
    backend = open_backend(config.keys_uri())
    try:
        with open_channel(config.ca.channel(), "CA") as channel:
            registrar = MerchantRegistrar(
                config, backend, AuthorityClient(Caller(channel, "CA")),
                TrustStore(read_root(config.root)),
            )  # fmt: skip
            return step(registrar)
    finally:
        backend.close()


def _account(args: argparse.Namespace) -> str | None:
    """The settlement account: from ``--account-file`` (owner-only, like a passphrase
    file), else ``--account``, else none."""
    if args.account_file is None:
        account: str | None = args.account
        return account
    try:
        return PinSource("file", str(args.account_file)).read()
    except PermanentBackendError as exc:
        raise ClientError(f"--account-file: {exc}") from None


def _register(config: MerchantConfig, args: argparse.Namespace) -> int:
    # Read first: a wrong account file or form costs no root pinned and no keys made.
    account = _account(args)
    form = parse_form(args.form)
    pin_root(config.root, args.root, "merchant", config.ca, config.brand_id)
    profile = profile_named(args.profile)
    try:
        done = _with_registrar(config, lambda r: r.register(profile, form=form, account=account))
    except RegistrationError as exc:
        if exc.status != REJECTED_BY_AGENT or account:
            raise
        raise RegistrationError(f"{exc}; {NO_ACCOUNT_HINT}", exc.status) from exc
    if not done.complete:
        print(
            "certificate request not decided yet by the Merchant CA (pended or in progress): "
            "run register again later"
        )
        return 3
    print(
        f"registered {config.merchant_id}: signature certificate "
        f"{done.signature_thumb.hex()[:16]}, key exchange {done.key_exchange_thumb.hex()[:16]}"
    )
    return 0


def _renew(config: MerchantConfig, args: argparse.Namespace) -> int:
    if not config.root.exists():
        print(
            f"setpay merchant: {config.merchant_id} is not registered yet: run register first",
            file=sys.stderr,
        )
        return 1
    done = _with_registrar(config, lambda registrar: registrar.renew(profile_named(args.profile)))
    if not done.complete:
        print(
            "renewal not decided yet by the Merchant CA (pended or in progress): run renew "
            "again later"
        )
        return 3
    print(
        f"renewed {config.merchant_id}: signature certificate "
        f"{done.signature_thumb.hex()[:16]}, key exchange {done.key_exchange_thumb.hex()[:16]} "
        "(restart serve to use them)"
    )
    return 0


def _serve(config: MerchantConfig, args: argparse.Namespace) -> int:
    if args.metrics_port is not None:
        config = config.with_metrics_port(args.metrics_port)
    merchant = Merchant.open(config)
    try:
        # Heard on a thread of their own, never by a handler setting an Event this thread
        # may be waiting on (``cli.stop_watcher``): the start-up's resume round runs here
        # before anything serves, and must hear the stop too, ending after the request in
        # flight.
        stops = StopWatcher((signal.SIGTERM, signal.SIGINT), merchant.request_stop)
    except BaseException:
        merchant.close()
        raise
    with stops:
        try:
            port = merchant.serve()
            if port == 0:  # stopped while starting: what it had not sent yet waits for a start
                print(f"merchant {config.merchant_id} stopped before serving", flush=True)
                return 0
            print(f"merchant {config.merchant_id} serving on port {port}", flush=True)
            if merchant.metrics_port:
                print(
                    f"merchant {config.merchant_id} metrics on port {merchant.metrics_port}",
                    flush=True,
                )
            stops.wait()
        finally:
            # Still watched while it drains: another stop signal is answered in the log, not
            # the default handlers' end of the process or KeyboardInterrupt, mid-drain.
            grace_ends = time.monotonic() + GRACE_SECONDS
            said = f"merchant {config.merchant_id}: already stopping, its grace period ends"
            stops.answer_repeats(RepeatNotice(log, said, lambda: grace_ends).repeated)
            merchant.close()
    return 0


def _forget_gateway(config: MerchantConfig) -> int:
    store = MerchantStore(config.store)
    try:
        forgotten = store.forget_gateway()
    finally:
        store.close()
    if forgotten is None:
        print("no gateway pinned: the next start takes the one its first PCertRes names")
        return 0
    print(
        f"forgot gateway {forgotten.identity}, pinned since {pinned_since(forgotten)}: "
        "the next start takes the one its first PCertRes names"
    )
    return 0


def order_line(order: Order, store: MerchantStore) -> str:
    """One order for people: short ids, state, amounts, and what of it waits on answers
    that did not verify or could not be read; never card data (there is none)."""
    captured, credited = settled_amounts(store, order.xid)
    auth = order.authorization
    code = (
        code_name(authorization_pb2.AuthCode, auth.auth_code).removeprefix("AUTH_CODE_")
        if auth
        else "-"
    )
    description = order.description.decode("utf-8", "replace")[:24]
    line = (
        f"{order.short_id}  {order.lid_m.hex()[:16]:<16}  {order.state.value:<11}  "
        f"{order.amount.minor:>9} {order.amount.currency:<3}  {code:<12}  "
        f"{(auth.approval_code if auth else '') or '-':<6}  captured {captured:>9}  "
        f"refunded {credited:>9}  {description}"
    )
    if order.state is OrderState.AUTHORIZING and (doubts := _doubts(order)):
        line += f"  [authorization: {doubts}]"
    for op in store.operations(order.xid):
        if op.state is OperationState.SENT and (doubts := _doubts(op)):
            line += f"  [{op.kind.value} {short(op.rrpid)}: {doubts}]"
    return line


def _doubts(request: Order | Operation) -> str:
    """Why a request waits longer between tries, for people; "" if nothing holds it back."""
    said = (
        (request.unreadable, "of a result code this release cannot read: upgrade the merchant;"),
        (request.unverified, "did not verify,"),
    )
    words = [f"{n} answer{'s' * (n > 1)} {what}" for n, what in said if n]
    when = datetime.fromtimestamp(request.retry_after_ms / 1000, UTC)
    return " ".join([*words, f"next try {when:%Y-%m-%d %H:%M:%S} UTC"]) if words else ""


def _orders(config: MerchantConfig, args: argparse.Namespace) -> int:
    store = MerchantStore(config.store)
    try:
        if args.orders_command == "new":
            lid_m = new_lid_m(LID_M_BYTES) if args.lid_m is None else args.lid_m
            currency = config.currency if args.currency is None else args.currency
            exp10 = exponent_for(currency) if args.exp10 is None else args.exp10
            money = Money(currency, args.amount, exp10)
            _, again = store.add_offer_once(
                lid_m, args.description.encode(), money, config.brand_id
            )
            if again:  # stored by a command whose output was lost
                said = f"offer {lid_m.hex()} was stored before: its initiation again"
                print(f"setpay merchant: {said}", file=sys.stderr)
            initiation = {
                "merchant": config.server.listen, "lid_m": lid_m.hex(),
                "description": args.description, "currency": money.currency,
                "amount": money.minor, "exp10": money.exp10, "brand": config.brand_id,
            }  # fmt: skip
            print(json.dumps(initiation))
            return 0
        limit = getattr(args, "limit", 50)
        for order in store.orders(limit):
            print(order_line(order, store))
        return 0
    finally:
        store.close()


def operation_line(operation: Operation) -> str:
    """One settlement operation for people (a failed one with the gateway's SET Error)."""
    state = operation.state.value
    if operation.state is OperationState.FAILED:
        state += f" ({code_name(ErrorCode, operation.error_code)})"
    elif operation.state is OperationState.REFUSED:
        state += f" ({_result_code_name(operation)})"
    elif operation.state is OperationState.SENT:
        doubts = _doubts(operation)
        state += f" (outcome unknown, will retry{': ' + doubts if doubts else ''})"
    return (
        f"{operation.kind.value} {short(operation.rrpid)} for order {short(operation.xid)}: "
        f"{state}, {operation.result_amount} "
        f"{('in batch ' + operation.batch_id) if operation.batch_id else ''}"
    ).rstrip()


def _result_code_name(operation: Operation) -> str:
    """The gateway's code for a refused operation, named from its kind's enum."""
    return code_name(_RESULT_CODES[operation.kind], operation.result_code)


def _settle(config: MerchantConfig, args: argparse.Namespace) -> int:
    if args.merchant_command == "batch":
        check_batch_usage(args)  # before anything is opened, stored or sent
    elif args.merchant_command == "reverse":
        check_reverse_usage(args)
    merchant = Merchant.open(config)
    try:
        merchant.revocation.refresh()
        settlement = merchant.settlement
        command = args.merchant_command
        if command == "batch":
            return run_batch(merchant, args)
        if command == "reverse" and reverses_operation(args):
            operation = reverse_operation(merchant, args)
        else:
            if not args.order:
                raise UsageError("ORDER is required")
            xid = merchant.store.find_order(args.order).xid
            if command == "capture":
                operation = settlement.capture(xid, args.amount)
            elif command == "refund":
                operation = settlement.refund(xid, args.amount)
            else:
                operation = settlement.reverse_authorization(xid, args.keep)
        print(operation_line(operation))
        return 0 if operation.state is OperationState.SUCCEEDED else 1
    finally:
        merchant.close()


def run(args: argparse.Namespace) -> int:
    """Run one merchant command; errors are printed (never with card data: there is none)."""
    try:
        config = load(args.dir)
        command = args.merchant_command
        if command == "register":
            return _register(config, args)
        if command == "renew":
            return _renew(config, args)
        if command == "serve":
            return _serve(config, args)
        if command == "forget-gateway":
            return _forget_gateway(config)
        if command == "orders":
            return _orders(config, args)
        return _settle(config, args)
    except BrokenPipeError:
        raise  # standard output's reader went away (``| head``): cli.main ends quietly
    except UsageError as exc:
        print(f"setpay merchant: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (OutcomeUnknown, UnknownResultCode) as exc:
        print(f"setpay merchant: {exc}", file=sys.stderr)
        return 4
    except (ClientError, SetcoreError, KeyBackendError, ValueError) as exc:
        print(f"setpay merchant: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        # A file of the merchant directory, or one a command names: said with its path,
        # not as a traceback.
        print(f"setpay merchant: {_os_error(exc)}", file=sys.stderr)
        return 1


def _os_error(exc: OSError) -> str:
    """An OSError for people: the file (both of a rename or copy) and the reason."""
    reason = exc.strerror or type(exc).__name__
    if exc.filename is None:
        return str(exc) or reason
    paths = str(exc.filename) + (f" -> {exc.filename2}" if exc.filename2 is not None else "")
    return f"{paths}: {reason}"
