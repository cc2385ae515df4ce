"""Buying: PInit, the dual-signed purchase request, and later inquiries, over TLS to a merchant.

    PInitReq -> PInitRes: the merchant's signature and chain verified, Chall-C echoed, and
                the gateway key-exchange certificate it names checked to be a gateway's
    PReq     -> PRes:     OI for the merchant, the PI (with the PAN) sealed to that gateway
    InqReq   -> InqRes:   the order's state, signed by the same merchant

The checks are setcore's (``setcore.purchase``). What the wallet keeps of a purchase is in
``purchases.json``: the transaction ids, the merchant (its ID and brand, whose renewed
certificates answer for it too, and the certificate that signed the PInitRes) and its
target, the amount and the last state the merchant reported; never card data. A purchase
is recorded ``SENT`` before its PReq leaves, so that a PRes lost on the way back leaves
a purchase the wallet can still ask about; the PRes, or a later inquiry, replaces that
state with the merchant's. Once the PReq has left, a failure to get a verified answer
(none, one whose checks fail, one the wallet cannot record) is ``PurchaseOutcomeUnknown``,
never a refusal: the card may be authorized. A PReq the merchant says it shed unread at
every attempt (too busy, an unsigned gRPC status: it may have read it all the same) is
recorded ``SHED`` and fails with ``PurchaseNotRead``, for an inquiry to settle with the
merchant's signed answer (``merchant_answers``); until then another purchase of that
order (LID-M) is refused, nothing sent (``ShedUnsettled``): it could pay it twice. A
refusal is the merchant's signed Error (``PeerError``), recorded ``REFUSED`` with its
code. A card whose certificate the revocation data held lists as revoked buys nothing:
checked before PInit and again before the PReq, it fails with ``CertificateRevoked``,
nothing recorded, as every failure before the PReq leaves (``credentials``). Purchases
are filed by XID, which the merchant picks, fresh for each PInit: a PInitRes offering
the XID of a purchase the wallet holds is refused (``ProtocolError`` PI_PREVIOUSLY_USED,
nothing recorded or sent) rather than have the new purchase replace the record of one
the card may have paid. Commands at once each update ``purchases.json`` under a lock.
A purchase is named by the shortest start of its XID no other purchase shares
(``short_ids``).
"""

from __future__ import annotations

import base64
import fcntl
import json
import logging
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import TypeVar

from google.protobuf.message import DecodeError

from clients.errors import (
    ClientError,
    ConfigError,
    NotRead,
    PurchaseNotRead,
    PurchaseOutcomeUnknown,
    ShedUnsettled,
)
from clients.identity import write_atomically
from clients.peers import PeerConfig
from clients.revocation import RevocationFeed
from clients.transport import MAX_MESSAGE_BYTES, Caller, RetryPolicy, open_channel
from clients.wallet import short_ids
from clients.wallet.credentials import refuse_if_revoked

# Re-exported: callers import the Initiation from here, as before it moved.
from clients.wallet.initiation import Initiation as Initiation  # noqa: PLC0414
from clients.wallet.merchant_answers import (
    SHED,
    UnreadablePurchaseAnswer,
    outcome_fields,
    undecided,
    unheld,
)
from setcore.credentials import Credentials
from setcore.currency import exponent_for
from setcore.errors import ErrorCode, PeerError, fail
from setcore.pki.bci import RevocationUnavailable
from setcore.pki.truststore import TrustStore
from setcore.purchase import (
    CardData,
    PurchaseState,
    build_inquiry_request,
    build_pinit_request,
    build_purchase_request,
    open_inquiry_response,
    open_pinit_response,
    open_purchase_response,
)
from setcore.purchase_answer import MerchantIdentity
from setpay.v1 import common_pb2, purchase_pb2, services_pb2

log = logging.getLogger("setpay.wallet")

_SERVICE = services_pb2.DESCRIPTOR.services_by_name["MerchantService"].full_name
# PInit and Inquiry are answered from the merchant's own store.
PINIT_DEADLINE_SECONDS = 10.0
INQUIRY_DEADLINE_SECONDS = 10.0
# A merchant answering after authorization waits on the gateway (whose Authorize deadline
# is 30 s): the purchase gets that and some room for the merchant's own work.
PURCHASE_DEADLINE_SECONDS = 45.0
# The PReq's retries against a merchant that sheds it unread (too busy; its refusal asks
# for 100 ms): the transport's default four attempts give up within about a second, while
# a merchant's burst of Purchases waiting on the gateway lasts seconds. Ten attempts,
# backing off to 2 s, wait out up to 13 s (about half that with the jitter), leaving more
# than 30 s of the deadline for the merchant's own wait on the gateway once it reads it.
PURCHASE_RETRIES = RetryPolicy(attempts=10, first_backoff=0.2, max_backoff=2.0)
# LID-C: the wallet's own label for a transaction.
LID_BYTES = 16
# The state of a purchase whose PReq left and whose PRes has not been verified yet: the
# wallet's own word, not a CompletionCode (the merchant may or may not have the order).
SENT = "SENT"
# The state of a purchase the merchant refused with its signed Error (the code is kept in
# ``refusal``): the wallet's own word too, since SET's CompletionCode has none for it.
REFUSED = "REFUSED"
# purchases.json is the cardholder's shopping history: readable by its owner only. Its
# lock file holds nothing, but is kept as private as what it guards.
PURCHASES_FILE_MODE = 0o600
LOCK_SUFFIX = ".lock"

T = TypeVar("T")


def _method(name: str) -> str:
    return f"/{_SERVICE}/{name}"


@dataclass(frozen=True)
class PurchaseRecord:
    """What the wallet remembers of one purchase (no card data).

    ``merchant_brand`` and ``merchant_id``: the merchant, whose certificates of that ID
    answer for the purchase; "" in a record a development snapshot wrote, whose answers
    only the certificate ``merchant_thumb`` may sign. ``refusal``: the ErrorCode of the
    merchant's signed Error (completion ``REFUSED`` or ``NOT_BOUGHT``), "" otherwise.
    ``cardholder_thumb``: the certificate that paid (hex), which alone may sign an inquiry
    about the purchase once the card's certificate was renewed; "" in a record written
    before renewal existed (paid with the first).
    """

    xid: str
    merchant_target: str
    merchant_thumb: str
    trans_ids: str
    currency: int
    amount: int
    completion: str
    auth_code: str
    auth_amount: int
    captured: int
    credited: int
    merchant_brand: str = ""
    merchant_id: str = ""
    refusal: str = ""
    cardholder_thumb: str = ""

    def purchase_state(self) -> PurchaseState:
        """Enough of the purchase to sign an inquiry about it."""
        trans_ids = common_pb2.TransIDs.FromString(base64.b64decode(self.trans_ids, validate=True))
        # The exponent is not recorded: ``Initiation.order`` admits only the currency's
        # own ISO 4217 minor unit (since before 0.1.0's first release; a development
        # snapshot took any), so it is that. No answer may report more than this.
        agreed = common_pb2.CurrencyAmount(
            currency=self.currency, amount=self.amount, exp10=exponent_for(self.currency)
        )
        merchant = None
        if self.merchant_id:
            merchant = MerchantIdentity(self.merchant_brand, self.merchant_id)
        thumb = bytes.fromhex(self.merchant_thumb)
        # No RRPID, challenge or request digest: those are each inquiry's own.
        return PurchaseState(
            rrpid=b"", chall_c=b"", trans_ids=trans_ids, merchant_thumb=thumb, purch_amt=agreed,
            merchant=merchant,
        )  # fmt: skip

    @property
    def short_id(self) -> str:
        """The XID's first 8 hex digits: the id shown for the purchase only while no other
        purchase of its book starts with them; what names it is ``PurchaseBook.short_id``."""
        return self.xid[: short_ids.SHORT_ID_DIGITS]

    @property
    def answered(self) -> bool:
        """False while no answer of the merchant's about the PReq has been verified."""
        return self.completion not in (SENT, SHED)


_FIELD_TYPES: dict[str, type] = {"int": int, "str": str}


def _record(item: object) -> PurchaseRecord:
    """One purchase as ``purchases.json`` holds it, every field of its type (``TypeError``,
    ``ValueError`` or ``DecodeError`` for one that is not)."""
    if not isinstance(item, dict):
        raise TypeError("a purchase is not a JSON object")
    record = PurchaseRecord(**item)
    for f in fields(record):
        # The annotations are strings here; a field of another type must be added below.
        value, kind = getattr(record, f.name), _FIELD_TYPES[str(f.type)]
        if not isinstance(value, kind) or isinstance(value, bool):
            raise TypeError(f"a purchase's {f.name} is not {kind.__name__}")
    if not bytes.fromhex(record.xid) or not bytes.fromhex(record.merchant_thumb):
        raise ValueError("a purchase has no XID or merchant")
    # One spelling of an XID (lower-case hex, nothing between its digits), as the wallet
    # writes it, so that finding, replacing and refusing compare the same text: a
    # hand-edited record in capitals or with spaces is read as the wallet wrote it.
    record = replace(record, xid=bytes.fromhex(record.xid).hex())
    if record.cardholder_thumb and not bytes.fromhex(record.cardholder_thumb):
        raise ValueError("a purchase names an empty paying certificate")
    if bool(record.merchant_id) != bool(record.merchant_brand):
        raise ValueError("a purchase names its merchant's ID or brand without the other")
    record.purchase_state()
    return record


def _refuse_known(records: list[PurchaseRecord], xid: str) -> None:
    """Raise if ``records`` hold a purchase of ``xid``, naming it by its short id only."""
    for earlier in records:
        if earlier.xid == xid:
            raise fail(
                ErrorCode.ERROR_CODE_PI_PREVIOUSLY_USED,
                f"the merchant offers the XID of earlier purchase "
                f"{short_ids.short_id(xid, (r.xid for r in records))}: "
                "refused, nothing sent, the earlier purchase's record kept",
            )


class PurchaseBook:
    """``purchases.json``: the wallet's purchases, newest last."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._lock = path.with_name(path.name + LOCK_SUFFIX)

    def all(self) -> list[PurchaseRecord]:
        """Every recorded purchase."""
        if not self._path.exists():
            return []
        try:
            raw = json.loads(self._path.read_text())
            return [_record(item) for item in raw]
        except (OSError, ValueError, TypeError, DecodeError) as exc:
            raise ConfigError(f"{self._path} is unreadable: {exc}") from exc

    def find(self, prefix: str) -> PurchaseRecord:
        """The purchase the hex ``prefix`` names: its whole XID, or a start of it that no
        other purchase's shares (``UnknownOrder`` otherwise, ``short_ids.resolve``)."""
        records = self.all()
        xid = short_ids.resolve(prefix, [r.xid for r in records])
        return next(r for r in records if r.xid == xid)

    def short_id(self, xid: str) -> str:
        """The id the wallet shows now for the purchase of ``xid`` (hex), which ``find``
        takes back: the shortest start of it, 8 digits at least, that no other purchase
        of the book shares (``short_ids``)."""
        return short_ids.short_id(xid, (r.xid for r in self.all()))

    def refuse_known(self, xid: str) -> None:
        """``ProtocolError`` PI_PREVIOUSLY_USED when the book holds a purchase of ``xid``
        (hex): a merchant offering it would have the new purchase replace that record."""
        _refuse_known(self.all(), xid)

    def add(self, record: PurchaseRecord) -> None:
        """Record a new purchase, refused as ``refuse_known`` says (nothing written) when
        the book holds its XID: checked under the lock, so that no other command records
        that XID between the check and the write."""
        self.add_named(record)

    def add_named(self, record: PurchaseRecord) -> str:
        """``add``, and the new purchase's ``short_id`` in the book it wrote."""
        with self._locked():
            records = self.all()
            _refuse_known(records, record.xid)
            self._write([*records, record])
        return short_ids.short_id(record.xid, (r.xid for r in records))

    def refuse_shed(self, lid_m: bytes) -> None:
        """``ShedUnsettled`` when the book holds a ``SHED`` purchase of the order ``lid_m``
        (no signed answer has said whether the merchant read its PReq)."""
        records = self.all()
        for record in records:
            if record.completion == SHED and record.purchase_state().trans_ids.lid_m == lid_m:
                raise ShedUnsettled(short_ids.short_id(record.xid, (r.xid for r in records)))

    def save(self, record: PurchaseRecord) -> str:
        """Replace a purchase the wallet holds with what it has since learnt (added if
        gone); a new purchase is ``add``'s, which will not replace another. Its
        ``short_id`` in the book written."""
        with self._locked():
            others = [r for r in self.all() if r.xid != record.xid]
            self._write([*others, record])
        return short_ids.short_id(record.xid, (r.xid for r in others))

    def _write(self, records: list[PurchaseRecord]) -> None:
        data = json.dumps([asdict(r) for r in records], indent=1).encode()
        # Private, whatever the umask: what the cardholder bought, where and for how much.
        write_atomically(self._path, data, mode=PURCHASES_FILE_MODE)

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """The book to this process alone while it reads, changes and writes it back: two
        commands saving at once would each write the list it read, without the other's
        record. Readers need no lock: the file is replaced whole (``write_atomically``)."""
        self._lock.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self._lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, PURCHASES_FILE_MODE)
        try:
            os.fchmod(fd, PURCHASES_FILE_MODE)
            # Blocks without a limit: a holder only reads and writes this one small file.
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock


class Shopper:
    """The wallet's purchases and inquiries, with its credentials, card and trust store."""

    def __init__(
        self,
        credentials: Credentials,
        card: CardData,
        trust: TrustStore,
        revocation: RevocationFeed,
        book: PurchaseBook,
        brand_id: str,
        language: str = "en",
    ) -> None:
        self._credentials = credentials
        self._card = card
        self._trust = trust
        self._revocation = revocation
        self._book = book
        self._brand_id = brand_id
        self._language = language

    def _checked(self, check: Callable[[], T]) -> T:
        """Run a check with current revocation data, fetching it again if it went stale."""
        self._revocation.ensure_fresh()
        try:
            return check()
        except RevocationUnavailable:
            self._revocation.refresh()
            return check()

    def _refuse_if_revoked(self) -> None:
        """``CertificateRevoked`` for a card whose certificate is revoked, with current
        revocation data; data that cannot be had is no reason to stop here (the merchant's
        chain is checked with the same data next, and the gateway checks ours)."""
        try:
            self._checked(
                lambda: refuse_if_revoked(self._credentials, self._trust, self._card.pan.masked)
            )
        except RevocationUnavailable as exc:
            log.warning("the card's certificate not checked for revocation: %s", exc)

    def purchase(
        self,
        merchant: PeerConfig,
        initiation: Initiation,
        *,
        unsafe_rewrite: Callable[[purchase_pb2.PurchaseRequest], None] | None = None,
    ) -> PurchaseRecord:
        """PInit then PReq to ``merchant``; the purchase as the merchant reports it.

        ``unsafe_rewrite`` changes the PReq after it is built and signed; it exists only so
        that ``setpay demo`` can show a tampered payment instruction being refused.
        """
        order = initiation.order()
        self._book.refuse_shed(initiation.lid_m)
        # Before anything leaves: the gateway would refuse a PI signed under a revoked
        # certificate only once the merchant had taken the order.
        self._refuse_if_revoked()
        with open_channel(merchant.channel(), "merchant") as channel:
            caller = Caller(channel, "merchant")
            request, pinit = build_pinit_request(
                self._card.pan, self._brand_id, os.urandom(LID_BYTES), lid_m=initiation.lid_m,
                language=self._language,
            )  # fmt: skip
            response = caller.call(
                _method("PInit"), request.SerializeToString(), purchase_pb2.PInitResponse,
                deadline=PINIT_DEADLINE_SECONDS,
            )  # fmt: skip
            offer = self._checked(lambda: open_pinit_response(response, pinit, self._trust))
            log.info(
                "PInitRes verified: merchant %s, gateway key %s, XID %s",
                offer.merchant.subject_id, offer.gateway.thumbprint.hex()[:8],
                self._book.short_id(offer.trans_ids.xid.hex()),
            )  # fmt: skip
            # Before the PReq is built: an XID the book holds is an earlier purchase's,
            # whose record the new one would replace (``add`` checks again, atomically).
            self._book.refuse_known(offer.trans_ids.xid.hex())
            self._refuse_if_revoked()  # with what the PInitRes's check fetched, if newer
            preq, state = build_purchase_request(self._credentials, offer, order, self._card, pinit)
            if unsafe_rewrite is not None:
                unsafe_rewrite(preq)
            frame = preq.SerializeToString()
            if len(frame) > MAX_MESSAGE_BYTES:
                # gRPC would refuse to send it, after the record below said SENT: refused
                # here, before anything leaves, the purchase never happened.
                raise fail(
                    ErrorCode.ERROR_CODE_MESSAGE_TOO_BIG,
                    f"the PReq would be {len(frame)} bytes, over {MAX_MESSAGE_BYTES}",
                )
            # Recorded before the PReq leaves: once it has, the merchant may hold the order
            # and the card an authorization, whether or not the PRes makes it back.
            sent = PurchaseRecord(
                xid=offer.trans_ids.xid.hex(), merchant_target=merchant.target,
                merchant_thumb=offer.merchant.thumbprint.hex(),
                trans_ids=base64.b64encode(offer.trans_ids.SerializeToString()).decode(),
                currency=order.amount.currency, amount=order.amount.amount, completion=SENT,
                auth_code="", auth_amount=0, captured=0, credited=0,
                merchant_brand=state.merchant.brand_id if state.merchant else "",
                merchant_id=state.merchant.merchant_id if state.merchant else "",
                cardholder_thumb=self._credentials.signature_thumb.hex(),
            )  # fmt: skip
            # Named from here on by its id in the book it joined, which ``find`` takes back.
            shown = self._book.add_named(sent)
            log.info(
                "PReq %s: card %s, %d (%d), PI sealed to the gateway",
                shown, self._card.pan.masked, order.amount.amount, order.amount.currency,
            )  # fmt: skip
            try:
                pres = Caller(channel, "merchant", PURCHASE_RETRIES).call(
                    _method("Purchase"), frame, purchase_pb2.PurchaseResponse,
                    deadline=PURCHASE_DEADLINE_SECONDS,
                )  # fmt: skip
            except NotRead as exc:
                what = f"shed by the merchant: {exc}"
                shown = self._record_state(sent, shown, what, completion=SHED)
                raise PurchaseNotRead(shown, exc) from exc
            except Exception as exc:
                # Sent, whatever failed after: not TransportError alone, any failure.
                raise PurchaseOutcomeUnknown(shown, f"no answer: {exc}", exc) from exc
        try:
            # Revocation data that went stale during the call is fetched again, as for the
            # PInitRes: a stale BCI is no reason to doubt the merchant's answer.
            data = self._checked(lambda: open_purchase_response(pres, state, self._trust))
        except PeerError as exc:
            unknown = undecided(exc)
            if unknown is None:
                what = f"refused: {exc.code_name}"
                self._record_state(sent, shown, what, completion=REFUSED, refusal=exc.code_name)
                raise
            raise PurchaseOutcomeUnknown(shown, unknown, exc) from exc
        except Exception as exc:
            # An answer that does not verify (or could not be checked: the CA unreachable
            # for fresh revocation data, a certificate cryptography cannot read) is not the
            # merchant's word: only a signed Error naming our PReq (PeerError) is.
            raise PurchaseOutcomeUnknown(shown, f"the answer did not verify: {exc}", exc) from exc
        try:
            record = replace(sent, **outcome_fields(data))  # type: ignore[arg-type]
        except UnreadablePurchaseAnswer as exc:
            raise PurchaseOutcomeUnknown(shown, str(exc), exc) from exc
        try:
            shown = self._book.save(record)
        except Exception as exc:
            raise PurchaseOutcomeUnknown(
                shown, f"the verified answer could not be recorded: {exc}", exc
            ) from exc
        log.info("PRes verified: %s %s", shown, record.completion)
        return record

    def _record_state(self, sent: PurchaseRecord, shown: str, what: str, **state: str) -> str:
        """``sent`` recorded in ``state`` in place of SENT, and its id: a refusal (its
        signed Error says the merchant did not process the PReq, SET-PROTOCOL.md 7.6), or
        ``SHED`` (its unsigned status says so: kept, never removed, for an inquiry to
        settle). If it cannot be, the record stays SENT, which an inquiry settles too."""
        try:
            shown = self._book.save(replace(sent, **state))  # type: ignore[arg-type]
        except (OSError, ClientError) as exc:
            log.warning("purchase %s %s, not recorded so: %s", shown, what, exc)
            return shown
        log.info("PReq %s %s", shown, what)
        return shown

    def inquire(self, merchant: PeerConfig, prefix: str) -> PurchaseRecord:
        """InqReq about a recorded purchase; the record updated with the merchant's answer."""
        record = self._book.find(prefix)
        shown = self._book.short_id(record.xid)
        if merchant.target != record.merchant_target:
            log.info("inquiring at %s (the purchase was made at %s)", merchant.target,
                     record.merchant_target)  # fmt: skip
        request, state = build_inquiry_request(self._credentials, record.purchase_state())
        with open_channel(merchant.channel(), "merchant") as channel:
            response = Caller(channel, "merchant").call(
                _method("Inquiry"), request.SerializeToString(), purchase_pb2.InquiryResponse,
                deadline=INQUIRY_DEADLINE_SECONDS,
            )  # fmt: skip
        try:
            data = self._checked(lambda: open_inquiry_response(response, state, self._trust))
            answer = outcome_fields(data)
        except PeerError as exc:
            settled = unheld(record.completion, exc)
            if settled is None:
                raise
            answer = settled
        except UnreadablePurchaseAnswer as exc:
            raise PurchaseOutcomeUnknown(shown, str(exc), exc) from exc
        updated = replace(record, **answer)  # type: ignore[arg-type]
        shown = self._book.save(updated)
        log.info("InqRes verified: %s %s", shown, updated.completion)
        return updated
