"""Buying: PInit, the dual-signed purchase request, and later inquiries, over TLS to a merchant.

    PInitReq -> PInitRes: the merchant's signature and chain verified, Chall-C echoed, and
                the gateway key-exchange certificate it names checked to be a gateway's
    PReq     -> PRes:     OI for the merchant, the PI (with the PAN) sealed to that gateway
    InqReq   -> InqRes:   the order's state, signed by the same merchant

The checks are setcore's (``setcore.purchase``). What the wallet keeps of a purchase,
and how, is ``purchase_book``'s. A purchase is recorded ``SENT`` before its PReq leaves,
so that a PRes lost on the way back (a deadline, a dropped connection) leaves a purchase
the wallet can still ask about; the PRes, or a later inquiry, replaces that state with
the merchant's (an inquiry another command ran meanwhile may have recorded first: the
PRes is then kept only if the merchant gave it after that inquiry's answer, as when the
inquiry heard ORDER_RECEIVED while the merchant waited on the gateway,
``merchant_answers.given_after``). Once the PReq has left, a failure to get a verified
answer (none, one whose checks fail, one the wallet cannot record) is
``PurchaseOutcomeUnknown``, never a refusal: the card may be authorized. So is a PReq
the merchant says it shed unread at every attempt (too busy: a gRPC status, unsigned, so
it may have read it all the same), recorded ``SHED`` (``PurchaseNotRead``) for an
inquiry to settle with the merchant's signed answer; until then another purchase of that
order (LID-M) at that merchant is refused once its PInitRes names the merchant, before
the PReq is built (``ShedUnsettled``: it could pay the order twice), but for one made
``despite`` it, naming it. A refusal is the merchant's signed Error (setcore's
``PeerError``), recorded as ``REFUSED`` with its code; how answers and Errors are read
(codes of a later release, UNSPECIFIED_FAILURE and PI_PREVIOUSLY_USED, which leave the
outcome unknown, a signed UNKNOWN_XID settling a SHED purchase) is
``merchant_answers``'s. A card whose certificate the revocation data held lists as
revoked buys nothing: checked before PInit, and again before the PReq (the data may have
been fetched again for the PInitRes), it fails with ``CertificateRevoked`` and nothing
recorded, as every failure before the PReq leaves (``credentials``). A PInitRes offering
the XID of a purchase the wallet holds (another merchant's, or the same merchant's
again) is refused, nothing recorded or sent (``PurchaseBook.refuse_known``). Two
commands at once (a purchase and an inquiry, say) each update ``purchases.json`` under a
lock, so neither loses the other's record, nor records a purchase under an XID the other
just recorded; an inquiry's answer is saved only over the record it asked about, never
over a newer one the other saved meanwhile (``inquire``).
"""

from __future__ import annotations

import base64
import logging
import os
from collections.abc import Callable, Collection
from dataclasses import replace
from typing import TypeVar

from clients.errors import (
    ClientError,
    NotRead,
    PurchaseNotRead,
    PurchaseOutcomeUnknown,
)
from clients.peers import PeerConfig
from clients.revocation import RevocationFeed
from clients.transport import MAX_MESSAGE_BYTES, Caller, RetryPolicy, open_channel
from clients.wallet.credentials import refuse_if_revoked

# Re-exported: callers import the Initiation, and the book and its records, from here,
# as before they moved.
from clients.wallet.initiation import Initiation as Initiation  # noqa: PLC0414
from clients.wallet.merchant_answers import (
    SHED,
    UnreadablePurchaseAnswer,
    given_after,
    outcome_fields,
    undecided,
    unheld,
)
from clients.wallet.purchase_book import REFUSED as REFUSED  # noqa: PLC0414
from clients.wallet.purchase_book import SENT as SENT  # noqa: PLC0414
from clients.wallet.purchase_book import PurchaseBook as PurchaseBook  # noqa: PLC0414
from clients.wallet.purchase_book import PurchaseRecord as PurchaseRecord  # noqa: PLC0414
from setcore.credentials import Credentials
from setcore.errors import ErrorCode, PeerError, fail
from setcore.pki.bci import RevocationUnavailable
from setcore.pki.truststore import TrustStore
from setcore.purchase import (
    CardData,
    build_inquiry_request,
    build_pinit_request,
    build_purchase_request,
    open_inquiry_response,
    open_pinit_response,
    open_purchase_response,
)
from setcore.purchase_answer import MerchantIdentity
from setpay.v1 import purchase_pb2, services_pb2

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
# An inquiry whose answer finds the purchase recorded anew since it was read asks again
# about it as it is now: twice in all, then what the book holds is kept (``inquire``).
INQUIRY_ROUNDS = 2

T = TypeVar("T")


def _method(name: str) -> str:
    return f"/{_SERVICE}/{name}"


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
        despite: Collection[str] = (),
        unsafe_rewrite: Callable[[purchase_pb2.PurchaseRequest], None] | None = None,
    ) -> PurchaseRecord:
        """PInit then PReq to ``merchant``; the purchase as the merchant reports it.

        ``despite``: the ids of unsettled (``SHED``) purchases of this order at this
        merchant the cardholder buys it again despite, knowing it may be paid twice: the
        way out when no inquiry can settle them (the merchant gone, its inquiries shed).
        ``unsafe_rewrite`` changes the PReq after it is built and signed; it exists only so
        that ``setpay demo`` can show a tampered payment instruction being refused.
        """
        order = initiation.order()
        # Before anything leaves: an id that names no unsettled purchase of this order.
        acknowledged = self._book.shed_despite(despite, initiation.lid_m)
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
            # Once the merchant is known, before the PReq is built or anything signed: the
            # LID-M is the merchant's own number, which another merchant may use as well.
            self._book.refuse_shed(
                initiation.lid_m, MerchantIdentity.of(offer.merchant), offer.merchant.thumbprint,
                acknowledged,
            )  # fmt: skip
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
                kept = self._record_state(sent, shown, what, completion=SHED)
                if kept is None:
                    # Left SENT, which only an InqRes settles: not to be told it is SHED.
                    why = f"the merchant said it shed it unread ({exc}), not recorded so"
                    raise PurchaseOutcomeUnknown(shown, why, exc) from exc
                raise PurchaseNotRead(kept, exc) from exc
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
            answer = outcome_fields(data)
        except UnreadablePurchaseAnswer as exc:
            raise PurchaseOutcomeUnknown(shown, str(exc), exc) from exc
        record = replace(sent, **answer)  # type: ignore[arg-type]
        try:
            # Over the SENT record only: an inquiry may have recorded since what the
            # merchant did after this answer (a capture), which this must not replace;
            # but one it answered before (``given_after``), while it waited on the
            # gateway, this answer replaces.
            held = self._book.save_unless_changed(sent, record)
            if held != record and given_after(record.completion, held.completion):
                record = replace(held, **answer)  # type: ignore[arg-type]
                held = self._book.save_unless_changed(held, record)
        except Exception as exc:
            raise PurchaseOutcomeUnknown(
                shown, f"the verified answer could not be recorded: {exc}", exc
            ) from exc
        if held != record:
            log.info("PRes verified: %s %s; kept what an inquiry recorded since", shown,
                     record.completion)  # fmt: skip
            return held
        log.info("PRes verified: %s %s", shown, record.completion)
        return record

    def _record_state(
        self, sent: PurchaseRecord, shown: str, what: str, **state: str
    ) -> str | None:
        """``sent`` recorded in ``state`` in place of SENT, and its id: a refusal (its
        signed Error says the merchant did not process the PReq, SET-PROTOCOL.md 7.6), or
        ``SHED`` (its unsigned status says so: kept, never removed, for an inquiry to
        settle). None if it cannot be: the record stays SENT, which only an InqRes
        settles (a signed UNKNOWN_XID settles no SENT purchase, ``merchant_answers``), or
        an inquiry recorded the purchase since (its record kept); the caller says what it
        must of that: a refusal is raised all the same, a SHED purchase is
        ``PurchaseOutcomeUnknown``."""
        changed = replace(sent, **state)  # type: ignore[arg-type]
        try:
            # Over the SENT record only, as the PRes is (``purchase``).
            held = self._book.save_unless_changed(sent, changed)
        except (OSError, ClientError) as exc:
            log.warning("purchase %s %s, not recorded so: %s", shown, what, exc)
            return None
        if held != changed:
            log.info("purchase %s %s; kept what an inquiry recorded since", shown, what)
            return None
        log.info("PReq %s %s", shown, what)
        return shown

    def inquire(self, merchant: PeerConfig, prefix: str) -> PurchaseRecord:
        """InqReq about a recorded purchase; the record updated with the merchant's answer.

        The answer is saved only over the record it asked about: another command that
        saved what it learnt meanwhile (a purchase's PRes, another inquiry's answer) may
        have saved the newer state, which an answer to an earlier question would replace
        (ORDER_RECEIVED over the AUTHORIZED the PRes brought). The merchant is then asked
        again about the record as it is now, ``INQUIRY_ROUNDS`` times at most, after which
        the record the book holds is kept and returned."""
        record = self._book.find(prefix)
        if merchant.target != record.merchant_target:
            log.info("inquiring at %s (the purchase was made at %s)", merchant.target,
                     record.merchant_target)  # fmt: skip
        for _ in range(INQUIRY_ROUNDS):
            answer = self._ask(merchant, record, self._book.short_id(record.xid))
            updated = replace(record, **answer)  # type: ignore[arg-type]
            held = self._book.save_unless_changed(record, updated)
            shown = self._book.short_id(record.xid)
            if held == updated:
                log.info("InqRes verified: %s %s", shown, updated.completion)
                return updated
            log.info("InqRes verified: %s %s, not recorded: the purchase was recorded %s "
                     "since it was read", shown, updated.completion, held.completion)  # fmt: skip
            record = held
        return record

    def _ask(self, merchant: PeerConfig, record: PurchaseRecord, shown: str) -> dict[str, object]:
        """The merchant's verified answer about ``record``, as the fields of the record it
        changes (``outcome_fields``, or a signed Error's ``unheld`` settles); a signed Error
        that settles nothing is raised."""
        request, state = build_inquiry_request(self._credentials, record.purchase_state())
        with open_channel(merchant.channel(), "merchant") as channel:
            response = Caller(channel, "merchant").call(
                _method("Inquiry"), request.SerializeToString(), purchase_pb2.InquiryResponse,
                deadline=INQUIRY_DEADLINE_SECONDS,
            )  # fmt: skip
        try:
            data = self._checked(lambda: open_inquiry_response(response, state, self._trust))
            return outcome_fields(data)
        except PeerError as exc:
            # A PeerError is a signed Error that verified: kept as the merchant's statement.
            signed = response.error.signed_error if response.HasField("error") else b""
            settled = unheld(record.completion, exc, signed)
            if settled is None:
                raise
            return settled
        except UnreadablePurchaseAnswer as exc:
            raise PurchaseOutcomeUnknown(shown, str(exc), exc) from exc
