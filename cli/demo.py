"""``setpay demo``: the whole SET story on one machine, printed as it happens.

A bank (CAs, gateway, issuer ledger), a merchant and a wallet run in this process on
loopback ports the OS chooses, over real TLS (mutual between merchant and gateway), with
real keys (software keystores, or the PKCS#11 token ``--keys`` names for the bank) and
real SQLite stores. The story: the ten steps of DESIGN.md section 1, then a partial
capture, a partial refund, an authorization reversed, a decline over the credit limit, a
tampered payment instruction refused by the gateway, and the settlement batch closed, its
totals checked against the bank's ledger. Nothing is simulated.

Every outcome the story tells is checked as it happens: one that is not what it must be
stops the demo, which then says on stderr at which step and why, and exits 1. Without
``--dir`` the demo works in a new temporary directory and removes it at the end, keys and
passphrase files with it (and, with ``--keys``, the bank's keys it made on the token), so
that nothing secret outlives a run and the next run starts as the first did: also when
SIGINT, SIGTERM or SIGHUP stops it, which it says in one line on stderr. SIGKILL runs no
cleanup: the directory's reaper removes it once the demo is gone (``cli.bench_workdir``);
the bank's keys it made on a token stay there, with no process left to delete them.
"""

from __future__ import annotations

import argparse
import logging
import os
import secrets
import signal
import sys
import traceback
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from cli.bank import DEFAULT_BIN
from cli.demo_parts import (
    Stopped,
    StopSignals,
    Workdir,
    configure_wallet,
    delete_bank_keys,
    refusing_a_used_key_backend,
    scan_for_pan,
    stop_on_purpose,
    stopped_by_signals,
    tamper,
)
from cli.story import Story, money, story_logging
from clients.authority import AuthorityClient
from clients.identity import write_certificates
from clients.merchant.config import load as load_merchant_config
from clients.merchant.config import write_config as write_merchant_config
from clients.merchant.reconciliation import reconcile
from clients.merchant.records import Money, Operation, OperationState
from clients.merchant.registration import MerchantRegistrar
from clients.merchant.runtime import Merchant
from clients.peers import PeerConfig
from clients.transport import Caller, open_channel
from clients.wallet.config import load as load_wallet_config
from clients.wallet.purchases import Initiation
from clients.wallet.runtime import Wallet
from gateway.bank_files import write_new
from gateway.config import load as load_bank_config
from gateway.ledger.enrolment import new_enrolment_code
from gateway.process import RunningBank, start_bank
from gateway.provisioning import init_bank
from hsm.uri import open_backend
from setcore.pan import PAN, random_pan
from setcore.pki.truststore import TrustStore
from setcore.profiles import PROFILES, profile_named
from setpay.v1 import gateway_admin_pb2

EUR = 978
# The demo card: a 500.00 EUR limit, so a 600.00 EUR order is over it.
CREDIT_LIMIT = 50_000
# The first order, what the merchant captures and refunds of it, and an order reversed.
ORDER_AMOUNT, CAPTURED, REFUNDED, REVERSED_AMOUNT = 4250, 3000, 1000, 1500
EXPIRY = "203012"
MERCHANT_ID = "demo-shop"
# The passphrase files each party's directory holds, named relative to it in the
# configuration the demo writes, so that a directory --dir keeps works where it is moved.
KEYSTORE_PASSPHRASE_FILE = "keys.pass"  # noqa: S105 - a file name, not a passphrase
CARD_PASSPHRASE_FILE = "card.pass"  # noqa: S105 - a file name, not a passphrase
KEYS_URI = f"soft:keys;pin-source=file:{KEYSTORE_PASSPHRASE_FILE}"
# Random bytes in each passphrase the demo makes: 192 bits, past any guessing whatever
# the key derivation's cost.
PASSPHRASE_BYTES = 24


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the subcommand."""
    p = sub.add_parser("demo", help="run the whole SET story on this machine")
    p.add_argument("--dir", type=Path, help="work directory (default: a new temporary one)")
    p.add_argument("--profile", choices=sorted(PROFILES), default="ec")
    p.add_argument("--keys", help="key URI for the bank's keys (default: a software keystore)")
    p.add_argument("--json", action="store_true", help="one JSON document instead of text")


class DemoFailed(Exception):
    """An outcome of the story is not the one it must be."""


def _expect(condition: bool, what: str) -> None:
    """Go on only if ``condition`` holds; else the demo fails, saying ``what`` was wrong."""
    if not condition:
        raise DemoFailed(what)


def _settled(operation: Operation, what: str) -> Operation:
    _expect(
        operation.state is OperationState.SUCCEEDED,
        f"the {what} was {operation.state.value}, not succeeded",
    )
    return operation


def _money(amount: int) -> str:
    return money(amount, EUR)


class Demo:
    """The story, step by step, over real servers."""

    def __init__(
        self,
        base: Path,
        profile: str,
        keys: str | None,
        story: Story,
        *,
        temporary: bool = False,
        stops: StopSignals | None = None,
    ) -> None:
        self.base, self.profile, self.keys, self.story = base, profile, keys, story
        self.stops = stops or StopSignals()
        # A temporary bank's keys go with it: those on a token named by --keys too.
        self.temporary = temporary
        self.stack = ExitStack()
        # The wallet's card has a passphrase of its own, apart from its keystore's (and
        # the merchant's): one file must not open both, least of all the merchant's.
        self.card_passphrase = secrets.token_urlsafe(PASSPHRASE_BYTES)
        self.settlement_currency = EUR  # init's; the bank's own once ``bank`` made it

    def _party_dir(self, name: str, tls_files: tuple[str, ...]) -> Path:
        """``name``'s directory: the bank's TLS files it needs, and ``keys.pass``, its
        keystore's passphrase (its own: no other party's file opens its keys)."""
        directory = self.base / name
        (directory / "tls").mkdir(parents=True)
        # Created with their final mode (O_EXCL, never over a planted file): written first
        # and chmod-ed after, a key or the passphrase would be readable by all for a moment
        # in a directory others may enter (--dir keeps the umask's modes).
        for file in tls_files:
            data = (self.base / "bank" / "tls" / file).read_bytes()
            write_new(directory / "tls" / file, data, private=file.endswith(".key"))
        keystore_passphrase = secrets.token_urlsafe(PASSPHRASE_BYTES)
        write_new(directory / KEYSTORE_PASSPHRASE_FILE, keystore_passphrase.encode(), private=True)
        return directory

    def bank(self) -> tuple[RunningBank, tuple[PAN, str]]:
        s = self.story
        s.step(1)
        # A stop signal waits until the deletion of the keys init makes is registered:
        # stopped between the two, the demo left them on the token. (Stopped inside
        # init_bank, init deletes what it made; but the deletion cannot be registered
        # before it, as init refuses a token that holds a bank's keys already, and those
        # are not the demo's to delete.)
        with self.stops.held(), refusing_a_used_key_backend(self.keys):
            result = init_bank(
                self.base / "bank", profile=self.profile, keys=self.keys, merchant_tls=True
            )
            config = load_bank_config(result.config_path)
            self.settlement_currency = config.settlement_currency
            if self.temporary and self.keys is not None:
                # Registered first, so it runs last: after the bank has stopped using them.
                self.stack.callback(delete_bank_keys, config)
        s.say("bank", f"brand root, three CAs and gateway keys made ({self.profile} profile)")
        running = start_bank(
            config, listen="127.0.0.1:0", ca_listen="127.0.0.1:0", sweep_holds=True
        )
        self.stack.callback(stop_on_purpose, running)
        pan, code = random_pan(DEFAULT_BIN), new_enrolment_code()
        account = running.ledger.open_card_account(
            pan.reveal(), EXPIRY, CREDIT_LIMIT, self.settlement_currency, enrolment_code=code
        )
        s.say("bank", f"account {account.account_id}: card {pan.masked}, expiry {EXPIRY}, "
                      f"limit {_money(CREDIT_LIMIT)}, sent with its enrolment code")  # fmt: skip
        s.say("issuer", "keeps the PAN in its ledger AES-GCM sealed, found by an HMAC index, "
                        "and only a keyed hash of the enrolment code")  # fmt: skip
        return running, (pan, code)

    def wallet(self, running: RunningBank, card: tuple[PAN, str]) -> Wallet:
        s = self.story
        s.step(2)
        directory = self._party_dir("wallet", ("root.pem",))
        write_new(directory / CARD_PASSPHRASE_FILE, self.card_passphrase.encode(), private=True)
        configure_wallet(directory, KEYS_URI, CARD_PASSPHRASE_FILE, f"127.0.0.1:{running.ca_port}")
        config = load_wallet_config(directory)
        write_certificates(config.root, [running.pki.root_der])
        wallet = Wallet.open(config)
        self.stack.callback(wallet.close)
        pan, code = card
        registered = wallet.registrar(self.card_passphrase).register(
            pan, EXPIRY, profile_named(self.profile), enrolment_code=code
        )
        _expect(registered.complete, "the Cardholder CA issued no certificate")
        der = wallet.backend.certificate(wallet.backend.get(wallet.config.key_label)) or b""
        _expect(der != b"", "the wallet holds no certificate after registering")
        _expect(pan.reveal().encode() not in der, "the cardholder certificate shows the PAN")
        s.say("CA", "saw the PAN, expiry and CardSecret (sealed to it); the certificate it "
                    "issued holds only a keyed hash of the account")  # fmt: skip
        shown = wallet.summary(self.card_passphrase).masked_pan
        s.say("wallet", f"certificate {registered.certificate_thumb.hex()[:16]}: no PAN in it "
                        f"(wallet shows {shown})")  # fmt: skip
        return wallet

    def merchant(self, running: RunningBank) -> Merchant:
        s = self.story
        s.step(3)
        tls = ("root.pem", "merchant-client.pem", "merchant-client.key",
               "merchant-server.pem", "merchant-server.key")  # fmt: skip
        directory = self._party_dir("merchant", tls)
        gateway = PeerConfig(
            f"127.0.0.1:{running.port}", directory / "tls/root.pem",
            directory / "tls/merchant-client.pem", directory / "tls/merchant-client.key",
        )  # fmt: skip
        ca = PeerConfig(f"127.0.0.1:{running.ca_port}", directory / "tls/root.pem")
        # merchant.currency (of ``orders new`` in a --dir kept) is the bank's: the default
        # (EUR) matches it by chance, and an order in another is declined CURRENCY_MISMATCH.
        write_merchant_config(
            directory, merchant_id=MERCHANT_ID, name="Demo Shop", gateway=gateway, ca=ca,
            keys=KEYS_URI, listen="127.0.0.1:0", currency=self.settlement_currency,
            tls_cert="tls/merchant-server.pem", tls_key="tls/merchant-server.key",
        )  # fmt: skip
        config = load_merchant_config(directory)
        write_certificates(config.root, [running.pki.root_der])
        backend = open_backend(config.keys_uri())
        try:
            with open_channel(config.ca.channel(), "CA") as channel:
                registrar = MerchantRegistrar(
                    config, backend, AuthorityClient(Caller(channel, "CA")),
                    TrustStore(running.pki.root_der),
                )  # fmt: skip
                registrar.register(profile_named(self.profile))
        finally:
            backend.close()
        merchant = Merchant.open(config)
        self.stack.callback(merchant.close)
        merchant.serve()
        configure_wallet(self.base / "wallet", KEYS_URI, CARD_PASSPHRASE_FILE,
                         f"127.0.0.1:{running.ca_port}", f"127.0.0.1:{merchant.port}")  # fmt: skip
        s.sees("merchant", "its own keys and the gateway's key-exchange certificate",
               "any card data")  # fmt: skip
        return merchant

    def buy(
        self, wallet: Wallet, merchant: Merchant, description: bytes, amount: int, **kw: Any
    ) -> Any:
        lid_m, price = os.urandom(8), Money(self.settlement_currency, amount)  # the card's
        merchant.store.add_offer(lid_m, description, price, merchant.config.brand_id)
        peer = PeerConfig(f"127.0.0.1:{merchant.port}", self.base / "wallet" / "tls" / "root.pem")
        return wallet.shopper(self.card_passphrase).purchase(
            peer, Initiation(lid_m, description, price.currency, amount), **kw
        )

    def purchase(self, wallet: Wallet, merchant: Merchant, description: bytes, amount: int) -> Any:
        """A purchase that must be authorized in full."""
        record = self.buy(wallet, merchant, description, amount)
        self.story.say("wallet", f"PRes: {record.completion}, {record.auth_code}, "
                                 f"authorized {_money(record.auth_amount)}")  # fmt: skip
        _expect(
            record.completion == "COMPLETION_CODE_AUTHORIZATION_PERFORMED"
            and record.auth_code == "AUTH_CODE_APPROVED" and record.auth_amount == amount,
            f"the order for {_money(amount)} was not authorized in full: {record.completion}, "
            f"{record.auth_code or 'no authorization'}, {_money(record.auth_amount)}",
        )  # fmt: skip
        return record

    def run(self) -> dict[str, Any]:
        """The whole story; a summary of what it showed. Raises at the first outcome that
        is not the one it must be."""
        try:
            return self._story()
        finally:
            self.stops.begin_cleanup()
            self.stack.close()

    def _story(self) -> dict[str, Any]:
        """The story itself; ``run`` cleans up after it."""
        s = self.story
        running, card = self.bank()
        pan = card[0]
        wallet = self.wallet(running, card)
        merchant = self.merchant(running)
        s.step(4)
        s.say("customer", f"orders '2 SET paperbacks' for {_money(ORDER_AMOUNT)} at demo-shop")
        s.sees("gateway", "nothing yet", "the order description, ever (only its salted hash)")
        record = self.purchase(wallet, merchant, b"2 SET paperbacks", ORDER_AMOUNT)
        s.sees("merchant", "the order, the amount, the dual signature, DD(PI)",
               "the PAN, the expiry, PANSecret (sealed to the gateway)")  # fmt: skip
        s.sees("gateway", "the PAN, the amount, the order's salted hash HOD",
               "the order description")  # fmt: skip
        xid = bytes.fromhex(record.xid)

        s.section(f"The merchant ships part of the order and captures {_money(CAPTURED)}")
        batch_id = _settled(merchant.settlement.capture(xid, CAPTURED), "capture").batch_id
        s.say("demo", f"the other {_money(ORDER_AMOUNT - CAPTURED)} of the authorization stays "
                      "held on the card until the merchant captures or reverses it, or the "
                      "authorization expires")  # fmt: skip
        s.section(f"The customer returns one item: the merchant refunds {_money(REFUNDED)}")
        _settled(merchant.settlement.refund(xid, REFUNDED), "refund")

        s.section(
            f"A second order ({_money(REVERSED_AMOUNT)}) is cancelled before it ships: "
            "the merchant reverses its authorization"
        )
        cancelled = self.purchase(wallet, merchant, b"a city map", REVERSED_AMOUNT)
        _settled(
            merchant.settlement.reverse_authorization(bytes.fromhex(cancelled.xid)),
            "authorization reversal",
        )
        s.say("demo", f"a reversal names the amount that stays authorized: 0.00 EUR, so "
                      f"the whole hold of {_money(REVERSED_AMOUNT)} is released")  # fmt: skip
        account = running.ledger.find_card_account(pan.reveal())
        s.say(
            "issuer",
            f"card {account.masked_pan}: owes {_money(account.posted_debt)}, "
            f"held {_money(account.pending)}, available {_money(account.available)}",
        )
        owes, held = CAPTURED - REFUNDED, ORDER_AMOUNT - CAPTURED
        _expect(
            (account.posted_debt, account.pending) == (owes, held),
            f"the issuer ledger should show {_money(owes)} owed and {_money(held)} held",
        )

        s.section("A third order over the credit limit (600.00 EUR) is declined")
        declined = self.buy(wallet, merchant, b"a very large telescope", 60_000)
        s.say("wallet", f"PRes: {declined.completion}, {declined.auth_code}")
        _expect(
            declined.auth_code == "AUTH_CODE_DECLINED",
            f"the order over the credit limit was answered {declined.auth_code or 'nothing'}",
        )

        s.section("A tampered payment instruction: one bit of the sealed PI flipped")
        s.say("wallet", "(demo only) flips a bit inside the PI after signing it")
        tampered = self.buy(wallet, merchant, b"1 bookmark", 300, unsafe_rewrite=tamper)
        s.say("wallet", f"PRes: {tampered.completion}, {tampered.auth_code or 'no authorization'}")
        s.sees("merchant", "a dual signature that verifies (it covers digests, not ciphertext)",
               "that the PI was tampered with; only the gateway can tell")  # fmt: skip
        _expect(
            tampered.completion == "COMPLETION_CODE_ORDER_REJECTED",
            f"the tampered payment instruction was answered {tampered.completion}",
        )

        settled = self.settle(running, merchant, batch_id)
        running.ledger.check_balanced()
        leaks = scan_for_pan(self.base / "merchant", pan)
        s.section("PAN scan of every merchant file")
        s.say(
            "demo",
            f"card {pan.masked} in no merchant file" if not leaks else f"FOUND IN {leaks}",
        )
        _expect(not leaks, f"the card's PAN is in merchant files: {leaks}")
        return {
            "ok": True,
            "approved": True,
            "captured": CAPTURED,
            "held": ORDER_AMOUNT - CAPTURED,
            "refunded": REFUNDED,
            "reversed": True,
            "batch": settled,
            "declined": declined.auth_code,
            "tampered": tampered.completion,
            "pan_in_merchant_files": False,
            "ledger": "balanced",
        }

    def settle(self, running: RunningBank, merchant: Merchant, batch_id: str) -> dict[str, Any]:
        """Close the batch the capture and the refund were filed in: the totals the gateway
        signs must be the merchant's own and the bank ledger's."""
        s = self.story
        s.section("End of the day: the merchant closes its settlement batch")
        data = merchant.batches.administer(gateway_admin_pb2.BATCH_OPERATION_CLOSE, batch_id)
        status = gateway_admin_pb2.BatchAdminStatus.Name(data.status)
        _expect(
            data.status == gateway_admin_pb2.BATCH_ADMIN_STATUS_SUCCESS
            and data.HasField("batch_status") and data.batch_status.closed,
            f"batch {batch_id} was not closed: {status}",
        )  # fmt: skip
        totals = data.batch_status
        got = (totals.captured_total.amount, totals.credited_total.amount, totals.net_total.amount)
        s.say("merchant", f"batch {batch_id} closed, signed by the gateway: captured "
                          f"{_money(got[0])}, refunded {_money(got[1])}, net {_money(got[2])} "
                          "to the merchant")  # fmt: skip
        net = CAPTURED - REFUNDED
        _expect(
            got == (CAPTURED, REFUNDED, net),
            f"batch {batch_id} should show {_money(CAPTURED)} captured, {_money(REFUNDED)} "
            f"refunded and {_money(net)} net",
        )
        _expect(
            reconcile(batch_id, totals, merchant.store.operations()).agrees,
            f"batch {batch_id}'s totals differ from the merchant's own operations",
        )
        ledger = running.ledger.batch_summary(MERCHANT_ID, batch_id)
        s.say("bank", f"ledger: batch {ledger.status}, captured {_money(ledger.captured_net)}, "
                      f"credited {_money(ledger.credited_net)}, net {_money(ledger.net)}: the "
                      "figures the merchant was sent")  # fmt: skip
        _expect(
            (ledger.status, ledger.captured_net, ledger.credited_net, ledger.net)
            == ("closed", *got),
            f"the bank's ledger holds other figures for batch {batch_id}",
        )
        return {"id": batch_id, "captured": got[0], "credited": got[1], "net": got[2]}


def _closing(summary: dict[str, Any]) -> str:
    """The successful story in one sentence, for people (JSON has the summary itself)."""
    batch = summary["batch"]
    return (
        f"Every outcome was as it must be: {_money(ORDER_AMOUNT)} authorized, "
        f"{_money(CAPTURED)} captured (the other {_money(ORDER_AMOUNT - CAPTURED)} still held on "
        f"the card) and {_money(REFUNDED)} refunded, {_money(REVERSED_AMOUNT)} "
        f"released by a reversal, batch {batch['id']} closed with {_money(batch['net'])} net "
        "to the merchant, the order over the limit declined, the tampered payment "
        "instruction refused by the gateway, no merchant file holding the card number, and "
        "the issuer ledger balanced"
    )


def run(args: argparse.Namespace) -> int:
    """Run the demo; exit 0 when the story went as it must, 1 (saying where) when not, and
    128 plus the signal's number when SIGINT, SIGTERM or SIGHUP stops it (after the
    cleanup of a normal end; a signal during the cleanup lets it finish, then is said)."""
    given = args.dir
    if given is not None and given.exists() and (not given.is_dir() or any(given.iterdir())):
        print(f"setpay demo: {given} is not an empty directory", file=sys.stderr)
        return 2
    work = Workdir()
    try:
        with stopped_by_signals() as stops:
            code = _run(args, stops, work)
            stops.raise_noted()
            return code
    except Stopped as stopped:
        name = signal.Signals(stopped.signum).name
        if args.dir is not None:
            left = f"{args.dir} kept"
        elif work.left_behind:
            left = f"its temporary directory {work.path} could not be removed (said above)"
        else:
            left = "its temporary directory removed"
        print(f"setpay demo: stopped by {name}; {left}", file=sys.stderr)
        return 128 + stopped.signum


def _run(args: argparse.Namespace, stops: StopSignals, work: Workdir) -> int:
    temporary = args.dir is None
    with ExitStack() as cleanup:
        if temporary:
            with stops.held():  # a stop after its making: removed, as after the story
                base = cleanup.enter_context(work.made())
        else:
            base = args.dir
        # Registered last, run first: the removal is not cut short by a signal.
        cleanup.callback(stops.begin_cleanup)  # also when the story never began
        base.mkdir(parents=True, exist_ok=True)
        # Absolute from here on: the configurations it writes are read relative to their
        # own directories, where a path relative to the current directory would be doubled.
        base = base.resolve()
        story = Story(json_mode=args.json)
        if not args.json:
            kept = "removed at the end; --dir DIR keeps one" if temporary else "kept"
            # Flushed: a supervisor reading a pipe learns the directory before any stop.
            print(f"setpay demo in {base} ({args.profile} profile; {kept})", flush=True)
        try:
            with story_logging(story):
                demo = Demo(base, args.profile, args.keys, story, temporary=temporary, stops=stops)
                summary = demo.run()
        except Exception as exc:  # noqa: BLE001 - any failure ends the story, said plainly
            reason = str(exc) if isinstance(exc, DemoFailed) else f"{type(exc).__name__}: {exc}"
            failure = f"at {story.where()}: {reason}"
            story.finish({"ok": False, "failure": failure})
            print(f"setpay demo: FAILED {failure}", file=sys.stderr)
            if logging.getLogger().isEnabledFor(logging.DEBUG):
                traceback.print_exc()
            return 1
    story.finish(summary, _closing(summary))
    return 0
