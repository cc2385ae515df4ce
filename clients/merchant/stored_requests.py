"""Requests stored before they are sent, and sent until the gateway's answer is final.

Authorizations (``authorizer``), settlement operations (``settlement``) and batch
changes (``batches``) go through the same life, written here once: stored byte for byte,
sent; the gateway's answer judged as ``outcome`` says (verified, of a result code this
release reads: saved, the request ends; a verified SET Error: it ends failed, or,
refused as too old, is built afresh once under a new RRPID as ``renewal`` allows, or, as
surely, ends failed where none built afresh could pass (``_never_renewable``: an order
whose PI is past the gateway's bound), but for the codes ``outcome.is_refusal`` holds
back, and not while it answers ``resume`` resending bytes an earlier sending of which
may still be decided at the gateway (``outcome.undecided``: it waits); anything else, a
verified answer of a result code this release cannot read too: it stays sent, "outcome
unknown, will retry"); sent again, the same bytes, by ``resume``. A request once
answered with a code this release cannot read is neither built afresh nor ended failed,
whatever verified SET Error follows: the gateway decided those bytes
(``outcome.answer_gone``). Each kind says how it is sent and its answer saved
(``_exchange``), how it ends failed and how it is built afresh; and, where it differs
for a reason it gives, when its bytes were stored (``_stored_ms``) and how ``resume``
sends one again (``_resend``).

Once a request is stored, nothing that goes wrong ends it but the gateway's verified
word: a failure of the merchant's own (its key backend opening the answer, its store
saving it, an unforeseen fault) leaves it sent and the command hears "outcome unknown",
never a refusal, since the gateway may have applied it.
"""

from __future__ import annotations

import abc
import logging
import threading
from typing import Generic, TypeVar

from clients.errors import OutcomeUnknown, TransportError, UnknownResultCode
from clients.merchant import outcome, renewal
from clients.merchant.gateway_client import GatewayClient, answers_heard
from clients.merchant.gateway_keys import GatewayKeys
from clients.merchant.records import BatchRequest, Operation, Order
from clients.merchant.request_rows import AnsweredUnreadably
from clients.merchant.store import MerchantStore
from setcore.credentials import Credentials
from setcore.errors import PeerError, ProtocolError
from setcore.freshness import now_ms

log = logging.getLogger("setpay.merchant")

# How far past the moment ``resume`` read them a request's stored time may lie before it
# was written by a wall clock stepped back since: none is written after that read but
# by such a clock (the read follows its commit). A margin, not a wait.
CLOCK_STEP_MS = 1_000

R = TypeVar("R", Order, Operation, BatchRequest)
# What only an answer of the gateway's raises: its verified SET Error, or the answer not
# verifying (a revoked signer, say) or its result code unread.
_VERDICTS = (PeerError, ProtocolError, UnknownResultCode)


class StoredRequests(abc.ABC, Generic[R]):
    """Send, judge, end or leave pending, and resume one kind of stored request."""

    #: What the log calls requests of this kind.
    noun = "requests"

    def __init__(
        self,
        store: MerchantStore,
        credentials: Credentials,
        gateway: GatewayClient,
        gateway_keys: GatewayKeys,
        merchant_id: str,
    ) -> None:
        self._store = store
        self._credentials = credentials
        self._gateway = gateway
        self._keys = gateway_keys
        self._merchant_id = merchant_id
        # Until a round of ``resume`` has reached every request waiting, each round sends
        # them all, due or not: a process starting is how an operator asks again now
        # (``outcome``), and a round an unreachable gateway or a stop cut short has not
        # asked. Kept on the object, so per process: a merchant opens one of each kind.
        self._asked_all = False
        # The requests that ended a round of ``resume`` with no answer at all, each with the
        # number of the round it last ended (``_round``): the next rounds send them after
        # the others, the latest last. An outage ends a round at whichever request comes
        # first, but so does a request the gateway answers UNAVAILABLE alone (one decided
        # whose answer it cannot build now, ``gateway.servicer``), for as long as that
        # lasts: sent first in every round, it would keep every request behind it unsent.
        self._ended_round: dict[bytes, int] = {}
        self._round = 0
        # The requests a round of ``resume`` reached while the gateway answered: each
        # answered, or the one a round ended at after the gateway answered another of it.
        # A round the gateway answered has asked every one when those after the one it
        # ended at were all reached before: two requests it cannot answer take turns
        # ending the rounds, neither of them ever the last (``_end_round``).
        self._reached: set[bytes] = set()
        self._sending = _Sending()

    # -- what each kind says for itself ---------------------------------------------------

    @abc.abstractmethod
    def _exchange(self, request: R) -> R:
        """Send the request's stored bytes, check the gateway's answer, save it: the
        request as it ends. Raises what ``GatewayClient`` raises for any other answer,
        and ``UnknownResultCode`` for a verified one whose result code this release
        cannot read (``outcome.require_known``), nothing of it saved."""

    @abc.abstractmethod
    def _fail(self, request: R, error_code: int) -> R:
        """End the request failed: the gateway refused it with a verified SET Error."""

    @abc.abstractmethod
    def _rebuild(self, request: R, error_code: int) -> R | None:
        """Build the request afresh, and store it in place of ``request`` (which ends
        failed with ``error_code``); None if there is nothing left to build it on."""

    @abc.abstractmethod
    def _unanswered(self) -> list[R]:
        """Every request of this kind still sent, oldest first."""

    @abc.abstractmethod
    def _named(self, request: R) -> str:
        """The request for the log and the command line, by short ids."""

    def _stored_ms(self, request: R) -> int:
        """When the request's bytes were stored: after they were dated, before they were
        first sent (what ``renewal`` and ``resume``'s ``stored_before_ms`` go by)."""
        return request.created_ms

    def _never_renewable(self, request: R, sent_ms: int) -> str | None:
        """Why no sending that begins at ``sent_ms`` (the merchant's clock) or later, of
        ``request`` or of one built afresh in its place, can pass the gateway's checks;
        None if one may. Given the moment a refused sending began, a reason ends the
        request failed with the gateway's code rather than built afresh, once no earlier
        sending of it can still be at the gateway (``_renew``). Given the moment its bytes
        were stored, a reason proves that none ever was: every sending of them began
        later, and was refused before the gateway's ledger saw it (``renewal`` says how an
        order's PI past the gateway's bound does both). None for a settlement operation or
        a batch change: nothing of theirs but their own date ages."""
        return None

    def _resend(self, request: R) -> R | None:
        """``resume``'s sending of a request still waiting: as ``_send`` says; None when
        another thread tried it since ``resume`` read it, and nothing was sent."""
        return self._send(request)

    # -- the one life -------------------------------------------------------------------

    def _send(self, request: R, *, renewable: bool = True) -> R:
        """Send a stored request; the request once the gateway's answer is final.

        A verified answer ends it as the answer says (one of a result code this release
        cannot read does not), a verified SET Error ends it failed (not once such an
        answer came: ``_refused``; nor, until ``renewal.decidable_until``, one that
        answers ``resume``'s resend: ``outcome.undecided``); a refusal as too old that
        ``renewal`` lets the merchant build afresh is built afresh and sent, once
        (``renewable``). Anything else raises ``OutcomeUnknown`` and leaves it sent, for
        ``resume``.
        """
        try:
            return self._judged(request, renewable)
        except OutcomeUnknown:
            raise
        except Exception as exc:  # the merchant's own: the gateway may have applied it even so
            raise outcome.pending(self._store, request, self._named(request), exc) from exc

    def _judged(self, request: R, renewable: bool) -> R:
        """``_send``, but for the merchant's own failures, which it lets through."""
        sent_ms = now_ms()  # before sending: the gateway decides no earlier (``renewal``)
        resent = self._sending.resent is not None and self._sending.resent == _bytes_key(request)
        try:
            return self._exchanged(request)
        except UnknownResultCode as exc:  # verified, but not read: counted, put off
            raise outcome.pending(self._store, request, self._named(request), exc) from exc
        except outcome.GATEWAY_FAILURES as exc:
            if not (isinstance(exc, PeerError) and outcome.is_refusal(exc)):
                raise outcome.pending(self._store, request, self._named(request), exc) from exc
            if renewable and renewal.refused_as_stale(exc):
                return self._renew(request, exc, sent_ms)
            if self._undecided_yet(request, resent, sent_ms):
                until = renewal.decidable_until(self._stored_ms(request))
                raise outcome.undecided(
                    self._store, request, self._named(request), exc, until
                ) from exc
            return self._refused(request, exc)

    def _undecided_yet(self, request: R, resent: bool, sent_ms: int) -> bool:
        """True when a verified refusal of a sending that began at ``sent_ms`` is not
        final yet: ``resume`` sent these bytes again (``resent``), and an earlier
        sending of them may still be decided at the gateway (``renewal.may_renew``'s
        bound), refused now by a check it passed (a clock stepped back, a certificate
        expired or revoked since). Not for bytes answered before with a result code this
        release cannot read: the gateway decided them (``_refused``, which says so)."""
        if not resent or renewal.may_renew(self._stored_ms(request), sent_ms):
            return False
        return not self._store.unreadable_answers(request)

    def _exchanged(self, request: R) -> R:
        """``_exchange``, noted for ``resume`` (``_Sending``): the request sent, and
        whether the gateway answered it at all: a verdict on its answer (a verified SET
        Error, one that did not verify or could not be read), or any failure once the
        gateway client had the answer (the merchant's key backend opening it, its store
        saving it: ``answers_heard``). Not a failure before the call (a damaged row), nor
        a call the gateway never answered: during an outage those are no answer."""
        sending = self._sending
        sending.key = _key(request)
        heard = answers_heard()
        try:
            done = self._exchange(request)
        except Exception as exc:
            if isinstance(exc, _VERDICTS) or answers_heard() != heard:
                sending.answered = True
            raise
        sending.answered = True
        return done

    def _refused(self, request: R, error: PeerError, why: str | None = None) -> R:
        """End the request failed, as the gateway's verified refusal says (``why``: what
        the merchant knows of it, for the log); but not one whose bytes had a verified
        answer of a result code this release cannot read
        (``request_rows.AnsweredUnreadably``, told inside the transaction that would end
        it): the gateway decided them, so it stays pending, logged as such
        (``outcome.answer_gone``), never as a failure of the merchant's own."""
        try:
            failed = self._fail(request, error.code)
        except AnsweredUnreadably:
            raise outcome.answer_gone(self._store, request, self._named(request), error) from error
        log.warning(
            "%s refused by the gateway: %s%s",
            self._named(request), error.code_name, f" ({why})" if why else "",
        )  # fmt: skip
        return failed

    def _renew(self, request: R, error: PeerError, sent_ms: int) -> R:
        """A request refused as too old in a sending that began at ``sent_ms``: built
        afresh and sent, failed, or left waiting.

        Never built afresh, nor ended failed, once a verified answer to these bytes
        came, of a result code this release cannot read: the refusal then says only that
        the gateway no longer holds the answer it gave, and a request built afresh would
        be decided a second time (``outcome.answer_gone``). Told from the file as it is
        now, not from ``request`` as it was read (a second sender may have counted one
        since): first before anything is built, then again inside the transaction that
        would store the request built afresh, or end it failed when none can be
        (``request_rows.AnsweredUnreadably``), for one counted while this sender was
        building it.

        Neither built afresh nor ended failed while an earlier sending of these bytes may
        still be inside the gateway, to be decided there yet: it waits, as the refusal
        found it. None can be once this sending began long enough after the bytes were
        stored (``renewal.may_renew``), or when none of them can ever have been let in
        (``_never_renewable`` already as they were stored). Then it ends failed where
        none built afresh could pass (``_never_renewable`` as this sending began), and is
        built afresh otherwise."""
        gone = outcome.answer_gone
        if self._store.unreadable_answers(request):
            raise gone(self._store, request, self._named(request), error) from error
        stored_ms = self._stored_ms(request)
        never = self._never_renewable(request, sent_ms)
        never_let_in = never is not None and self._never_renewable(request, stored_ms) is not None
        if not (never_let_in or renewal.may_renew(stored_ms, sent_ms)):
            # An earlier sending of these bytes may still be inside the gateway.
            if never is not None:
                log.info(
                    "%s: %s; it ends failed once no earlier sending of it can still be"
                    " at the gateway", self._named(request), never,
                )  # fmt: skip
            raise outcome.pending(self._store, request, self._named(request), error) from error
        if never is not None:
            return self._refused(request, error, never)
        try:
            fresh = self._rebuild(request, error.code)
        except AnsweredUnreadably:
            raise gone(self._store, request, self._named(request), error) from error
        if fresh is None:
            return self._refused(request, error)
        log.info(
            "%s refused as too old, so never applied: sent afresh as %s",
            self._named(request), self._named(fresh),
        )  # fmt: skip
        return self._send(fresh, renewable=False)

    def resume(
        self,
        *,
        stored_before_ms: int | None = None,
        due_at_ms: int | None = None,
        stop: threading.Event | None = None,
    ) -> list[R]:
        """Send again, byte for byte, every request of this kind still waiting (one refused
        as too old may be built afresh, as ``_send`` says); those now ended.

        ``stored_before_ms``: only those stored before then (not one a command may still
        be sending). ``due_at_ms``: only those whose answers did not verify (or could not
        be read) that are due again by then (``outcome.next_try``), once a round of this
        process has reached every one waiting; until then every one goes, so that a start
        with the gateway away still asks at once for all of them when it is back.
        ``stop``: once set, the one being sent is the last. Both go by the wall clock,
        which may step back (NTP, an RTC mended): a request stored, or put off until,
        later than this clock could have written (``_stepped_back``) is taken as stored
        long ago, or due, so that a step back holds it no longer than its usual wait
        instead of until the clock is back where it was. A step forward lets them go
        at once: each is sent once, and put off again from the new time if it must be.

        Each on its own: one whose outcome is still unknown is logged (by its short ids
        and the reason, which never holds card data: the merchant has none) and stays
        waiting, and the others still go. No answer at all ends the round: the gateway is
        unreachable, and every other request would wait out the same retries before
        failing the same way. But the gateway may also answer UNAVAILABLE for one request
        alone, for as long as it cannot build that one's answer (``gateway.servicer``): so
        the request that ended a round goes after the others in the rounds that follow
        (the one that ended the latest round last), and never keeps those behind it
        unsent. A round the gateway answered another request of has asked every one when
        it ends at its last request, or at one each after which an earlier round reached
        (``_reached``). A request another thread tried since it was read, or that ended
        meanwhile, was not sent: it is no answer of the gateway's, and moves nothing.
        """
        due = due_at_ms if self._asked_all else None
        unanswered = self._unanswered()
        now = now_ms()  # after the read: no request was stored, nor put off, later
        self._round += 1
        ended_round = self._ended_round
        still = {_key(request) for request in unanswered}
        for gone in [key for key in ended_round if key not in still]:
            del ended_round[gone]
        self._reached &= still
        waiting = sorted(
            (
                request
                for request in unanswered
                if (
                    stored_before_ms is None
                    or self._stored_ms(request) < stored_before_ms
                    or _stepped_back(self._stored_ms(request), now)
                )
                and (
                    due is None
                    or request.retry_after_ms <= due
                    or _stepped_back(request.retry_after_ms, now + outcome.UNVERIFIED_MAX_WAIT_MS)
                )
            ),
            # Oldest first (``sorted`` is stable), but those that ended a round after the
            # others, the one that ended the latest round last.
            key=lambda request: ended_round.get(_key(request), 0),
        )
        ended = []
        answered = False  # the gateway answered a request of this round, however
        sending = self._sending
        for number, request in enumerate(waiting):
            if stop is not None and stop.is_set():
                break
            sending.key, sending.answered = None, False
            # Bytes stored and waiting were sent before (or may have been: a crash
            # between storing and sending): a refusal of this sending is final only
            # once no earlier one can still be decided (``_judged``). Bytes built afresh
            # here have an RRPID of their own, and this is their only sending.
            sending.resent = _bytes_key(request)
            try:
                done = self._resend(request)
            except OutcomeUnknown as exc:  # logged as it was raised
                done, no_answer = None, isinstance(exc.cause, TransportError)
            else:
                no_answer = False
            finally:
                sending.resent = None
            answered = answered or sending.answered
            if no_answer:
                self._end_round(waiting[number:], answered)
                break
            if sending.answered:  # else nothing was sent, and nothing learnt of it
                self._reached.update({_key(request), sending.key or _key(request)})
                ended_round.pop(_key(request), None)
            if done is not None:
                ended.append(done)
        else:
            self._asked_all = True
        return ended

    def _end_round(self, rest: list[R], answered: bool) -> None:
        """End a round of ``resume`` at ``rest[0]``, which had no answer at all, ``rest``
        left unsent; ``answered``: the gateway answered a request of this round."""
        first = rest[0]
        # The request in flight: one built afresh in this round has its own RRPID.
        in_flight = self._sending.key or _key(first)
        if answered:  # reachable for another: the gateway cannot answer this one now
            self._reached.add(in_flight)
            if all(_key(later) in self._reached for later in rest[1:]):
                self._asked_all = True  # those after it were reached in earlier rounds
        self._ended_round.pop(_key(first), None)
        self._ended_round[in_flight] = self._round
        # Not "unreachable" when it answered another of the round (the one it did not is
        # logged as its outcome was raised): an operator would look for an outage.
        log.warning(
            "gateway %s: %d unanswered %s wait for the next resume",
            "reachable, but no answer for one" if answered else "unreachable",
            len(rest), self.noun,
        )  # fmt: skip


class _Sending(threading.local):
    """What the latest ``_exchange`` of this thread came to, for the ``resume`` round
    sending in it (other threads send too: Purchase, a command): which request went
    (``_key``: one built afresh has its own), and whether the gateway answered."""

    key: bytes | None = None
    answered = False
    #: The RRPID of the stored bytes ``resume`` is sending again (``_bytes_key``).
    resent: bytes | None = None


def _stepped_back(at_ms: int, latest_ms: int) -> bool:
    """True when ``at_ms``, a time the merchant's wall clock wrote, lies past the latest
    it could have written by now (``latest_ms``: "now", or "now" and the longest wait it
    adds), beyond ``CLOCK_STEP_MS``: the clock has stepped back since. A plain integer
    test on what ``resume`` read already: no query of its own."""
    return at_ms > latest_ms + CLOCK_STEP_MS


def _bytes_key(request: Order | Operation | BatchRequest) -> bytes | None:
    """The RRPID of the bytes a request holds: an order's AuthReq's (None before it has
    one), an operation's or batch change's own."""
    return request.auth_rrpid if isinstance(request, Order) else request.rrpid


def _key(request: Order | Operation | BatchRequest) -> bytes:
    """What names a waiting request from one round of ``resume`` to the next: an order's
    XID (its AuthReq may be built afresh), an operation's or batch change's RRPID."""
    return request.xid if isinstance(request, Order) else request.rrpid
