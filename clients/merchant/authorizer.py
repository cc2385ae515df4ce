"""Authorizing purchases: AuthReq built once, stored, sent (and re-sent) byte for byte.

The PI the cardholder sealed to the gateway is forwarded exactly as received, as the
AuthReq's baggage. The request is stored before it is sent, so after a crash or a
transport failure the very same bytes go out again and the gateway's RRPID idempotency
returns the answer it already committed: one purchase is never authorized twice.

An authorization lives the life of every stored request (``stored_requests``), written
once there: a verified AuthRes of an AuthCode this build defines is final (authorized or
declined), and so is a verified SET Error (the order fails with its code), but for
UNSPECIFIED_FAILURE and a code this build does not define; one refused as too old is
built afresh around the same PI when ``renewal`` says that is safe, and never once a
verified AuthRes came for it (the gateway decided it), nor once its PI is past the
gateway's bound (``_never_renewable``: it ends failed); anything else (no answer, an
answer or Error that does not verify, an approval for another amount, an AuthCode this
build does not define, the merchant's own key backend or store failing on the answer)
leaves the order authorizing, "outcome unknown, will retry", and the same bytes go out
again, as ``settlement`` leaves an operation sent. The gateway may have placed a hold on
the card: failing the order would lose track of it, and declining it on a later release's
AuthCode (an approval variant, say) would have the cardholder told so and buy again while
the hold stands. An answer that never verifies (a trust store missing the gateway's CA),
or one of an AuthCode only an upgraded merchant reads, keeps the order authorizing, seen
in the log and ``setpay merchant orders``, and asked for again less and less often
(``outcome.next_try``).

Where authorization differs from a settlement operation, it says why at the hook:

- The request is an order's, not a row of its own: the AuthReq is built and stored on
  the order by ``authorize`` itself (an order purchased has none yet), its bytes stored
  when the order last moved (``_stored_ms``), and ``resume`` sends one again through
  ``authorize`` (``_resend``), one thread per order at a time.
- Purchase, the worker's queue and its scans may each choose to send one order from a
  read of it: whoever comes second sends nothing if the first has tried it since
  (``order_rows.tried_since``), so that one answer that did not verify counts once, and
  its wait (``outcome.next_try``) is not cut short by a sending chosen before it.
- Whoever asks hears the order, never ``OutcomeUnknown``: the cardholder may be waiting
  (``AnswerMode.AFTER_AUTHORIZATION``), and SET's answer for an authorization not yet
  known is "order received", which is true; the wallet may inquire later.
- Building the AuthReq may itself call out (the gateway's certificates fetched again
  once stale, revocation data for them): a failure there leaves the order purchased,
  nothing stored nor sent, and is met as a sending's would be (``_stored``): "order
  received" to the wallet, and no answer at all ends a ``resume`` round as the gateway
  unreachable.
- Every AuthReq of an order is signed under the signature certificate that signed its
  PInitRes (``Order.signer_thumb``): the cardholder's PI names that one, and the gateway
  refuses an AuthReq signed by another (MERCHANT_MISMATCH, SET 9.3.1). After ``renew``,
  an order purchased before it but built only now (the gateway away, or ``_rebuild``)
  is signed with the earlier key version, which ``renew`` keeps (``_signing_as``). When
  that key is gone or its certificate has expired (``SignerGone``), no AuthReq the
  gateway would take can be built: one refused as too old ends failed with the
  gateway's code (``_rebuild``), and one with none sent ends failed (``_stored``).
- An answer that could not be checked for want of current revocation data fetches it
  for the next try: no caller keeps it current before authorizing, as a settlement
  command does at its start and a serving merchant's resume rounds do (``runtime``). A
  CA away then is no more than the gateway away: the order stays authorizing.

The background worker serves the "order received" answer mode (authorize after the
wallet has its answer) and retries authorizations whose outcome is unknown in either
mode, including those a previous process left unfinished (``resume``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hmac
import logging
import queue
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from cryptography import x509

from clients.errors import ClientError, OutcomeUnknown, SignerGone, TransportError
from clients.identity import certified_versions
from clients.merchant import outcome, renewal
from clients.merchant.gateway_client import GatewayClient, GatewayKeys
from clients.merchant.order_rows import damaged, preq_date_ms, sent_auth_request, tried_since
from clients.merchant.records import Authorization, Money, Order, OrderState, short
from clients.merchant.registration_pending import SIGNATURE_LABEL
from clients.merchant.store import MerchantStore
from clients.merchant.stored_requests import StoredRequests
from clients.revocation import RevocationFeed
from hsm.errors import KeyBackendError
from setcore.amount import same_unit
from setcore.authorization import AuthRequestState, build_auth_request
from setcore.credentials import Credentials
from setcore.encoding import parse_strict, thumbprint
from setcore.enum_names import code_name
from setcore.errors import ErrorCode, SetcoreError, fail
from setcore.freshness import now_ms
from setcore.pki.bci import RevocationUnavailable
from setpay.v1 import authorization_pb2, purchase_pb2

log = logging.getLogger("setpay.merchant")

# How often the worker looks again at authorizations still pending (no answer, or a
# previous process that stopped mid-way; one whose answer did not verify waits longer,
# ``outcome.next_try``): often enough that a gateway back from a short outage sees the
# backlog within seconds, rarely enough to cost nothing idle (a retry the gateway
# already answered is answered from its store).
RETRY_SECONDS = 5.0
# Queued purchases waiting for the worker; more than this and Purchase still answers
# (the order is stored) but the worker finds the overflow on its next scan.
MAX_QUEUED = 1000

APPROVED = authorization_pb2.AUTH_CODE_APPROVED


def _check_authorized_amount(order: Order, header: authorization_pb2.AuthHeader) -> None:
    """The gateway may authorize less than the purchase amount (or nothing, declining),
    never more, nor in another unit: the order keeps its authorization in its own.

    Refused as an answer that does not verify (``ProtocolError``): never recorded, the
    order stays authorizing, as ``settlement`` refuses an answer settling another amount.
    """
    asked, got = order.amount.to_proto(), header.auth_amt
    least = 1 if header.auth_code == APPROVED else 0
    if not same_unit(got, asked) or not least <= got.amount <= asked.amount:
        raise fail(
            ErrorCode.ERROR_CODE_DECODING_FAILURE,
            f"AuthRes gives {got.amount} ({got.currency}, exponent {got.exp10}) for an order "
            f"of {order.amount}",
        )


class Authorizer(StoredRequests[Order]):
    """Turns purchased orders into authorized (or declined) ones through the gateway."""

    noun = "authorizations"

    def __init__(
        self,
        store: MerchantStore,
        credentials: Credentials,
        gateway: GatewayClient,
        gateway_keys: GatewayKeys,
        merchant_id: str,
        revocation: RevocationFeed,
    ) -> None:
        super().__init__(store, credentials, gateway, gateway_keys, merchant_id)
        self._revocation = revocation
        # Orders just purchased, and None to wake the worker when it should stop.
        self._queue: queue.Queue[Order | None] = queue.Queue(MAX_QUEUED)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        # One authorization per order at a time, whether asked by Purchase or the worker:
        # a lock per order in flight, with the number of threads holding or awaiting it.
        self._locks: dict[bytes, tuple[threading.Lock, list[int]]] = {}
        self._locks_guard = threading.Lock()
        # Credentials signing with an earlier signature key, by its certificate's
        # thumbprint (``_signing_as``): found once, not at every AuthReq.
        self._earlier: dict[bytes, Credentials] = {}
        # ``authorize``'s ``answer_by``, per thread: read by ``_exchange``, which
        # ``stored_requests`` calls with the request alone, on the same thread.
        self._answer_by = threading.local()

    @contextmanager
    def _exclusive(self, xid: bytes) -> Iterator[None]:
        """The order to this thread alone; waited for only until the caller's answer is
        due (``authorize``'s ``answer_by``): past it, ``OutcomeUnknown``, nothing sent."""
        with self._locks_guard:
            lock, users = self._locks.setdefault(xid, (threading.Lock(), [0]))
            users[0] += 1
        try:
            left = self._time_left()
            if not lock.acquire(timeout=-1 if left is None else max(0.0, left)):
                raise self._out_of_time(short(xid), "while another thread authorized it")
            try:
                yield
            finally:
                lock.release()
        finally:
            with self._locks_guard:
                users[0] -= 1
                if users[0] == 0:
                    del self._locks[xid]

    def _time_left(self) -> float | None:
        """Seconds before this thread's caller must have its answer (``authorize``'s
        ``answer_by``); None when it set no such bound."""
        answer_by: float | None = getattr(self._answer_by, "at", None)
        return None if answer_by is None else answer_by - time.monotonic()

    def _out_of_time(self, short_id: str, when: str) -> OutcomeUnknown:
        """The caller's answer is due and nothing was sent: the order stays as it is, for
        the worker (purchased or authorizing, both pending). No gateway call was made, so
        none is counted or logged as one that failed."""
        reason = f"the wallet's answer came due {when}; nothing sent, left for the worker"
        log.info("order %s: %s", short_id, reason)
        return OutcomeUnknown(f"order {short_id}", reason, TimeoutError(reason))

    def _in_time(self, short_id: str, before: str) -> None:
        """``_out_of_time`` raised once the caller's answer is due."""
        left = self._time_left()
        if left is not None and left <= 0:
            raise self._out_of_time(short_id, before)

    def authorize(
        self, xid: bytes, *, as_read: Order | None = None, answer_by: float | None = None
    ) -> Order:
        """Authorize one purchased order now; the order as it stands afterwards.

        A verified answer is final: the order is authorized, declined, or failed by the
        gateway's verified SET Error. Anything else (an AuthCode of a later release too)
        leaves it authorizing, outcome unknown, and the worker sends the same bytes again
        (``outcome``); or, its AuthReq not built now, purchased, for the worker to build
        (``_stored``). If another thread is authorizing the same order, this waits for it
        and reports its outcome.

        ``as_read``: the order as the caller read it when it chose to send it; if another
        thread has tried it since (``order_rows.tried_since``), that try stands and nothing
        is sent. Without it, the order is sent whatever was tried before (a caller asking
        now).

        ``answer_by`` (``time.monotonic()``): when the caller must have its answer (a
        wallet waiting for its PRes): the AuthReq's wait for the gateway ends then,
        leaving the order authorizing, for the worker to send again, as any lost answer;
        nor does the wait for another thread authorizing it, nor is an AuthReq built or
        sent once it is due (the order then stays as it is, for the worker).
        """
        self._answer_by.at = answer_by
        try:
            self._in_time(short(xid), "before its turn")
            done = self._authorize(xid, as_read)
        except OutcomeUnknown:  # logged as it was raised; "authorizing", or "purchased" yet
            done = None
        finally:
            self._answer_by.at = None
        return self._store.order(xid) if done is None else done

    def _authorize(self, xid: bytes, as_read: Order | None) -> Order | None:
        """``authorize``, but an outcome left unknown raises ``OutcomeUnknown``, and an
        order another thread tried since ``as_read``, still pending, is None."""
        # Purchase and the worker may both ask for one order: the order's moves end its
        # authorization once (a second save of the same answer is refused), and an order
        # purchased must have one AuthReq stored, not two.
        with self._exclusive(xid):
            order = self._store.order(xid)
            if order.state not in (OrderState.PURCHASED, OrderState.AUTHORIZING):
                return order  # ended meanwhile, by another thread
            if as_read is not None and tried_since(as_read, order):
                log.debug("order %s: tried by another thread meanwhile", order.short_id)
                return None
            try:
                if order.state is OrderState.PURCHASED:
                    self._in_time(order.short_id, "before its AuthReq was built")
                stored = self._stored(order)
                if stored.state is not OrderState.AUTHORIZING:
                    return stored  # ended unsent (``_stored``)
                return self._send(stored)
            except OutcomeUnknown as exc:
                if isinstance(exc.cause, RevocationUnavailable):
                    self._fetch_revocation(order)
                raise

    def _fetch_revocation(self, order: Order) -> None:
        """Fetch revocation data now, so that the same answer is checked at the next try."""
        try:
            self._revocation.refresh()
        except (ClientError, SetcoreError) as exc:
            # The CA away (or data that does not verify) changes nothing for the order:
            # it stays authorizing, the wallet hears "order received" as for the gateway
            # away, and the next try fetches again.
            log.warning("order %s: revocation data not fetched now: %s", order.short_id, exc)

    def _stored(self, order: Order) -> Order:
        """The order authorizing, its AuthReq stored (built now if it has none).

        Building may need the gateway's certificates fetched again (a PCertReq, revocation
        data from the CA), the key backend and the store: any of them failing leaves the
        order purchased, nothing sent, and raises ``OutcomeUnknown`` as a sending would,
        so that the wallet hears "order received" and ``resume`` takes no answer from
        the gateway at all as "gateway unreachable". But for ``SignerGone``: the order
        ends failed (INVALID_CERTIFICATE), unless another process stored an AuthReq.
        """
        if order.state is OrderState.AUTHORIZING:
            return order
        try:
            wire, state = self._build(order)
            return self._store.record_auth_request(
                order.xid, state.rrpid, wire, state.request_digest
            )
        except SignerGone as exc:
            # No retry can change this, and nothing was ever sent: the gateway holds
            # nothing for the order, so ending it loses no hold. Said once, not every round.
            left = self._store.fail_unsent(order.xid, ErrorCode.ERROR_CODE_INVALID_CERTIFICATE)
            if left.state is OrderState.FAILED:  # else another process stored an AuthReq
                log.error("order %s: failed, nothing sent: %s", order.short_id, exc)
            return left
        except Exception as exc:  # the order's AuthReq is not built: nothing is lost
            quiet = isinstance(exc, TransportError)  # the gateway or the CA away
            known = isinstance(exc, ClientError | SetcoreError | KeyBackendError)
            reason = f"AuthReq not built now, nothing sent: {type(exc).__name__}: {exc}"
            log.log(
                logging.WARNING if quiet else logging.ERROR,
                "order %s: stays purchased, will retry (%s)", order.short_id, reason,
                exc_info=None if known else exc,
            )  # fmt: skip
            raise OutcomeUnknown(f"order {order.short_id}", reason, exc) from exc

    def _build(self, order: Order) -> tuple[bytes, AuthRequestState]:
        """A new AuthReq for the order (a fresh RRPID and date), its PI as baggage."""
        oi_data, pi = order.oi_data, order.pi
        if oi_data is None or pi is None:
            raise damaged(order, "the OIData and PI of its purchase")
        oi = parse_strict(purchase_pb2.OIData, oi_data)
        request, state = build_auth_request(
            self._signing_as(order), self._keys.recipient(), pi, order.trans_ids_proto(),
            oi_data, order.description, order.amount.to_proto(), oi.od_salt,
            order.amount.to_proto(), self._merchant_id,
        )  # fmt: skip
        return request.SerializeToString(), state

    def _signing_as(self, order: Order) -> Credentials:
        """The credentials that sign the order's AuthReq: the signature key whose
        certificate signed its PInitRes (the one the PI names), the current one but after
        a renewal. ``SignerGone`` when that key is gone or its certificate has expired:
        the gateway would refuse any AuthReq for the order, so none is built."""
        wanted, current = order.signer_thumb, self._credentials
        if wanted is None or hmac.compare_digest(wanted, current.signature_thumb):
            return current
        signing = self._earlier.get(wanted)
        if signing is None:
            versions = certified_versions(current.backend, SIGNATURE_LABEL)
            found = next(((k, der) for k, der in versions if thumbprint(der) == wanted), None)
            if found is None:
                raise SignerGone(
                    f"order {order.short_id} cannot be authorized: the signature key whose "
                    f"certificate {wanted.hex()[:16]} its PI names is no longer held"
                )
            key, der = found
            # The key-exchange key stays the current one: the answer is sealed to the
            # certificate the AuthReq names, and every certified one opens it.
            signing = dataclasses.replace(current, signature_key=key, signature_cert=der)
            self._earlier[wanted] = signing
        expiry = x509.load_der_x509_certificate(signing.signature_cert).not_valid_after_utc
        if expiry <= datetime.now(UTC):
            raise SignerGone(
                f"order {order.short_id} cannot be authorized: the signature certificate "
                f"{wanted.hex()[:16]} its PI names expired at {expiry:%Y-%m-%d %H:%M} UTC"
            )
        return signing

    # -- the stored request's life (``stored_requests``) --------------------------------

    def _exchange(self, order: Order) -> Order:
        """Send the order's stored AuthReq; the order once the gateway's verified answer
        is saved."""
        request, state = sent_auth_request(order)
        self._in_time(order.short_id, "before its AuthReq was sent")
        left = self._time_left()
        log.info("order %s: AuthReq %s sent to the gateway", order.short_id, short(state.rrpid))
        if left is None:
            result = self._gateway.authorize(request, state)
        else:
            result = self._gateway.authorize(request, state, deadline=left)
        header = result.data.auth_res_payload.auth_header
        _check_authorized_amount(order, header)
        outcome.require_known(authorization_pb2.AuthCode, header.auth_code)
        authorization = Authorization(
            auth_code=header.auth_code,
            amount=Money.from_proto(header.auth_amt),
            approval_code=header.response_data.approval_code,
            auth_res=result.data.SerializeToString(),
            cap_token=result.baggage.cap_token,
            acq_card_msg=result.baggage.acq_card_msg,
        )
        approved = header.auth_code == APPROVED
        done = self._store.record_authorization(order.xid, authorization, approved)
        log.info(
            "order %s: %s %s, approval code %s",
            order.short_id, code_name(authorization_pb2.AuthCode, header.auth_code),
            authorization.amount, authorization.approval_code or "-",
        )  # fmt: skip
        return done

    def _fail(self, request: Order, error_code: int) -> Order:
        return self._store.record_failure(request.xid, error_code)

    def _rebuild(self, request: Order, error_code: int) -> Order | None:
        """Built afresh around the same PI, the order's AuthReq replaced (the order stays
        authorizing). Safe beside ``renewal``'s reasons: the gateway's ledger records
        each PI's XID before deciding, so a PI is never authorized twice, whatever the
        RRPID. None when no AuthReq the gateway would take can be built (``SignerGone``):
        sending the refused bytes again would only be refused again, every round, so the
        order ends failed with the gateway's verified code."""
        _, sent = sent_auth_request(request)
        try:
            wire, state = self._build(request)
        except SignerGone as exc:
            log.error("%s: not built afresh: %s", self._named(request), exc)
            return None
        return self._store.renew_auth_request(
            request.xid, sent.rrpid, state.rrpid, wire, state.request_digest
        )

    def _never_renewable(self, request: Order, sent_ms: int) -> str | None:
        # The order's PI, past the gateway's bound by the margin: none around it passes.
        return renewal.pi_past_bound(preq_date_ms(request), sent_ms)

    def _unanswered(self) -> list[Order]:
        return self.pending()

    def _named(self, request: Order) -> str:
        return f"order {request.short_id}: AuthReq {short(request.auth_rrpid or b'')}"

    def _stored_ms(self, request: Order) -> int:
        # An order is made at PInit, long before its AuthReq; the AuthReq is stored (or
        # replaced) as the order last moves, and nothing moves an authorizing order but
        # its answer (``postpone`` leaves ``updated_ms`` alone).
        return request.updated_ms

    def _resend(self, request: Order) -> Order | None:
        # What ``resume`` read may be stale by now (Purchase authorizing the order in
        # another thread), and an order purchased has no AuthReq yet: ``authorize``'s
        # lock and fresh read decide.
        return self._authorize(request.xid, request)

    # -- background worker ------------------------------------------------------------

    def submit(self, order: Order) -> None:
        """Queue an order just purchased for the worker (dropped if the queue is full: the
        scan finds it). A scan may send it first: the worker then leaves it to the scans."""
        try:
            self._queue.put_nowait(order)
        except queue.Full:
            log.warning(
                "authorization queue full; order %s waits for the next scan", order.short_id
            )

    def start(self) -> None:
        """Start the worker thread (first scanning for unfinished authorizations)."""
        self._thread = threading.Thread(target=self._run, name="authorizer", daemon=True)
        self._thread.start()

    def stop(self, timeout: float | None = None) -> None:
        """Stop the worker after the authorization in progress, if any."""
        self._stop.set()
        with contextlib.suppress(queue.Full):
            self._queue.put_nowait(None)
        if self._thread is not None:
            self._thread.join(timeout)

    def pending(self) -> list[Order]:
        """Orders whose authorization is not finished."""
        return self._store.orders_in(OrderState.PURCHASED, OrderState.AUTHORIZING)

    def _run(self) -> None:
        # The scans send every pending AuthReq, even one put off after answers that did
        # not verify (``outcome.next_try``), until one has reached them all (``resume``):
        # a restart is how an operator asks now, the gateway away at start or not.
        while not self._stop.is_set():
            try:
                self.resume(due_at_ms=now_ms(), stop=self._stop)
                self._drain()
            except ClientError as exc:
                log.error("authorization worker: %s", exc)
                self._stop.wait(RETRY_SECONDS)
            except Exception:  # the worker must outlive any one round's fault (a lost token)
                log.exception("authorization worker: unexpected failure; trying again later")
                self._stop.wait(RETRY_SECONDS)

    def _drain(self) -> None:
        try:
            order = self._queue.get(timeout=RETRY_SECONDS)
        except queue.Empty:
            return
        while not self._stop.is_set() and order is not None:
            self.authorize(order.xid, as_read=order)
            try:
                order = self._queue.get_nowait()
            except queue.Empty:
                return
