"""The recorded opening of a merchant's account (``merchant_openings``), through the real
gRPC CA over a real ca.db: what a resend of the request it names gets, and what a
competing request for the same merchant ID gets.

A merchant whose initial request failed after the acquirer opened its account resends
the same bytes while its session lasts (an hour), not only while its RequestDate is
fresh (five minutes): those very bytes were judged fresh when the CA recorded them. And
only the request the row names opens the account: a competitor recorded between another
request's row and its decision (another worker) makes that decision refuse, so the
account is never opened for one request and then taken by the other.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, ExitStack
from dataclasses import replace
from typing import cast

import pytest

from gateway.bank_pki import open_ca_store
from gateway.ca import CertificateAuthority
from gateway.ca.errors import IssuerUnavailable
from gateway.ca.policy import SESSION_LIFETIME_MS
from gateway.ca.store import CaStore, StoreTransaction
from hsm.base import KeyUsage
from setcore.errors import ErrorCode, PeerError
from setcore.freshness import FRESHNESS_WINDOW_MS, now_ms
from setcore.pki.truststore import TrustStore
from setcore.registration_merchant import MerchantRequestState, open_merchant_cert_response
from setpay.v1 import registration_pb2

from .conftest import Bank, serving
from .flows import certificates_naming, merchant_request, new_key, start_merchant
from .stored_answers import stored_answer
from .test_merchant import _merchant
from .test_merchant_interrupted import Interrupting, _lost, _request, _unavailable

S = registration_pb2
REJECTED_BY_AGENT = S.CERT_STATUS_CODE_REJECTED_BY_AGENT
MINUTE_MS = 60 * 1000


class Clock:
    """The CA's clock: the real one, moved on by ``offset`` milliseconds."""

    def __init__(self) -> None:
        self.offset = 0

    def __call__(self) -> int:
        return now_ms() + self.offset


class HookedStore:
    """A CaStore that runs ``hook`` once, just before the second write transaction begun
    after ``arm``: between a merchant request's recorded opening and its decision."""

    def __init__(self, real: CaStore) -> None:
        self._real = real
        self._writes = 0
        self._hook: Callable[[], None] | None = None
        self.ran = False

    def arm(self, hook: Callable[[], None]) -> None:
        self._hook, self._writes = hook, 0

    def write(self) -> AbstractContextManager[StoreTransaction]:
        self._writes += 1
        if self._hook is not None and self._writes == 2:
            hook, self._hook = self._hook, None
            hook()
            self.ran = True
        return self._real.write()

    def __getattr__(self, name: str) -> object:
        return getattr(self._real, name)


def _ca_over(
    stack: ExitStack,
    bank: Bank,
    issuer: Interrupting,
    *,
    clock: Clock | None = None,
    store: Callable[[CaStore], object] = lambda real: real,
) -> Bank:
    """A worker of its own over ``bank``'s keys and ca.db, asking ``issuer``, served on
    port 0; its CA reads ``clock`` and uses ``store`` around its connection to ca.db."""
    real = open_ca_store(bank.config)
    stack.callback(real.close)
    ca = CertificateAuthority(
        bank.pki.authority_keys(), cast(CaStore, store(real)), bank.pki.trust, issuer,
        clock=clock or now_ms,
    )  # fmt: skip
    return replace(bank, ca=ca, issuer=issuer, stub=stack.enter_context(serving(ca)))


def _set_error(
    bank: Bank, request: S.CertRequest, state: MerchantRequestState, trust: TrustStore
) -> int:
    """The SET Error code the CA answers ``request`` with."""
    with pytest.raises(PeerError) as caught:
        open_merchant_cert_response(bank.stub.Cert(request), state, trust)
    return caught.value.code


def test_the_interrupted_request_resent_past_its_freshness_gets_in(ec_bank: Bank) -> None:
    with ExitStack() as stack:
        clock, issuer = Clock(), Interrupting({})
        bank = _ca_over(stack, ec_bank, issuer, clock=clock)
        identity = _merchant("late")
        session = start_merchant(bank, identity)
        sig, kex = new_key(bank, KeyUsage.SIGNATURE), new_key(bank, KeyUsage.KEY_EXCHANGE)
        filled = [(name, "Corner Shop Ltd") for name in session.registration.form.fields]
        dated = now_ms() - 4 * MINUTE_MS
        request, state = merchant_request(session, sig, kex, filled=filled, request_date=dated)
        issuer.after_opening = _lost("the ledger committed; its reply was lost")
        _unavailable(bank, request)
        assert identity.merchant_id in issuer.accounts
        # The ledger is back two minutes on: the request is past its freshness window.
        clock.offset = 2 * MINUTE_MS
        assert clock() - dated > FRESHNESS_WINDOW_MS
        # Other bytes under its RRPID, as old, were never recorded: judged, and too old.
        other, other_state = merchant_request(
            session, sig, kex, filled=filled, request_date=dated, rrpid=state.exchange.rrpid
        )
        code = _set_error(bank, other, other_state, session.trust)
        assert code == ErrorCode.ERROR_CODE_MESSAGE_TOO_OLD
        response = bank.stub.Cert(request)
        outcome = open_merchant_cert_response(response, state, session.trust)
        assert outcome.complete, S.CertStatusCode.Name(outcome.status)
        assert len(certificates_naming(bank, identity.merchant_id)) == 2
        assert stored_answer(bank, state.exchange.rrpid) == response.cert_res


def test_the_interrupted_request_resent_after_its_session_is_too_old(ec_bank: Bank) -> None:
    """The recorded opening lasts as long as the session: past it, the request's date is
    judged again (MESSAGE_TOO_OLD), and the ID stays without certificates."""
    with ExitStack() as stack:
        clock, issuer = Clock(), Interrupting({})
        bank = _ca_over(stack, ec_bank, issuer, clock=clock)
        identity = _merchant("too-late")
        session = start_merchant(bank, identity)
        request, state = _request(bank, session)
        issuer.after_opening = _lost("the ledger committed; its reply was lost")
        _unavailable(bank, request)
        clock.offset = SESSION_LIFETIME_MS + MINUTE_MS
        code = _set_error(bank, request, state, session.trust)
        assert code == ErrorCode.ERROR_CODE_MESSAGE_TOO_OLD
        assert certificates_naming(bank, identity.merchant_id) == []


def test_a_request_recorded_over_by_a_competitor_does_not_open_the_account(
    ec_bank: Bank,
) -> None:
    """R1 is recorded; before its decision, another worker records R2 for the same ID,
    whose decision then fails before the acquirer opens anything. R1's decision would
    open the account (and fail after, its reply lost): R2, resent byte for byte, would
    then get in by its row and settle into the account opened for R1. R1 is refused
    instead, nothing is opened for it, and R2 resent opens the account for itself."""
    with ExitStack() as stack:
        issuer = Interrupting({})
        # The second worker asks the same acquirer's books.
        books = Interrupting({}, merchants=issuer.merchants, accounts=issuer.accounts)
        hooked: list[HookedStore] = []

        def hook(real: CaStore) -> HookedStore:
            hooked.append(HookedStore(real))
            return hooked[-1]

        first = _ca_over(stack, ec_bank, issuer, store=hook)
        second = _ca_over(stack, ec_bank, books)
        identity = _merchant("race")
        s1, s2 = start_merchant(first, identity), start_merchant(second, identity)
        (r1, st1), (r2, st2) = _request(first, s1), _request(second, s2)

        def competitor() -> None:
            # The CA itself, not its gRPC service: this process's server gives R1's call
            # the one turn to compute, which another call would wait for in vain.
            books.before_opening = _lost("the ledger is down")
            with pytest.raises(IssuerUnavailable):
                second.ca.cert(r2)

        hooked[0].arm(competitor)
        issuer.after_opening = _lost("the ledger committed; its reply was lost")
        outcome = open_merchant_cert_response(first.stub.Cert(r1), st1, s1.trust)
        assert hooked[0].ran
        assert outcome.status == REJECTED_BY_AGENT
        assert issuer.accounts == {} and issuer.merchants == []
        issuer.after_opening = None
        outcome = open_merchant_cert_response(second.stub.Cert(r2), st2, s2.trust)
        assert outcome.complete
        assert issuer.merchants == [identity.subject]
        assert outcome.signature is not None
        named = {thumb for thumb, _ in certificates_naming(first, identity.merchant_id)}
        assert outcome.signature.thumbprint in named
        # R1 resent: the ID holds R2's live certificates now.
        outcome = open_merchant_cert_response(first.stub.Cert(r1), st1, s1.trust)
        assert outcome.status == REJECTED_BY_AGENT


def test_a_competitor_for_an_account_opened_for_another_request_is_refused(
    ec_bank: Bank,
) -> None:
    """The account was opened for R1, whose answer was lost: R2 (no AcctData) recorded
    after it cannot take its row, and is refused; R1 resent gets in."""
    with ExitStack() as stack:
        issuer = Interrupting({})
        bank = _ca_over(stack, ec_bank, issuer)
        identity = _merchant("opened")
        s1, s2 = start_merchant(bank, identity), start_merchant(bank, identity)
        (r1, st1), (r2, st2) = _request(bank, s1), _request(bank, s2)
        issuer.after_opening = _lost("the ledger committed; its reply was lost")
        _unavailable(bank, r1)
        outcome = open_merchant_cert_response(bank.stub.Cert(r2), st2, s2.trust)
        assert outcome.status == REJECTED_BY_AGENT
        outcome = open_merchant_cert_response(bank.stub.Cert(r1), st1, s1.trust)
        assert outcome.complete
