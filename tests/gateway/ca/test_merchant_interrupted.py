"""A merchant's initial registration that fails after the acquirer opened its account.

The acquirer's books open the account in a transaction of their own, inside the CA's,
which can still fail after it: the CertRes cannot be signed (the token went away), or
the acquirer's reply is lost after it committed. The merchant is answered UNAVAILABLE
and sends the same request bytes again: that request gets in, though the account it
opened now exists and its AcctData names none; any other request for the ID without the
account's id is still refused. Had the account not been opened, nobody is held back.

Each test has a CA of its own over a real ca.db, asking an acquirer double that can fail
around the opening (``Interrupting``); the first runs on a SoftHSM token the test takes
away, as tests/hsm do.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, replace
from pathlib import Path

import grpc
import pytest

from gateway.bank_pki import load_bank_pki, open_ca_store
from gateway.ca import CertificateAuthority
from gateway.ca.errors import IssuerUnavailable
from gateway.config import load
from gateway.provisioning import init_bank
from hsm.base import KeyUsage
from hsm.token_session import ABSENT_RESCAN_SECONDS
from setcore.registration_merchant import (
    MerchantIdentity,
    MerchantRequestState,
    open_merchant_cert_response,
)
from setpay.v1 import registration_pb2
from tests.hsm.testbed import SoftToken, session_softhsm

from .conftest import Bank, DictIssuer, serving
from .flows import (
    MerchantSession,
    certificates_naming,
    merchant_request,
    new_key,
    register_merchant,
    start_merchant,
)
from .test_merchant import _merchant

S = registration_pb2
REJECTED_BY_AGENT = S.CERT_STATUS_CODE_REJECTED_BY_AGENT

Failure = Callable[[], None]


@dataclass
class Interrupting(DictIssuer):
    """The acquirer's books as ``DictIssuer`` keeps them; the next opening of an account
    runs ``before_opening`` first (failing: the books are down) or ``after_opening``
    once the account is open (failing: the CA fails after the acquirer committed)."""

    before_opening: Failure | None = None
    after_opening: Failure | None = None

    def merchant_registered(self, merchant_id: str, name: str) -> None:
        before, self.before_opening = self.before_opening, None
        if before is not None:
            before()
        super().merchant_registered(merchant_id, name)
        after, self.after_opening = self.after_opening, None
        if after is not None:
            after()


@pytest.fixture
def token(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SoftToken]:
    made = session_softhsm(tmp_path_factory).init_token()
    yield made
    shutil.rmtree(made.directory, ignore_errors=True)


def _ca_over(stack: ExitStack, bank: Bank, issuer: Interrupting) -> Bank:
    """A CA over ``bank``'s keys and ca.db asking ``issuer``, served on port 0."""
    store = open_ca_store(bank.config)
    stack.callback(store.close)
    ca = CertificateAuthority(bank.pki.authority_keys(), store, bank.pki.trust, issuer)
    return replace(bank, ca=ca, issuer=issuer, stub=stack.enter_context(serving(ca)))


def _token_bank(stack: ExitStack, directory: Path, token: SoftToken, issuer: Interrupting) -> Bank:
    """A bank of its own (EC profile) with its keys on ``token``, its CA asking
    ``issuer``; closed by ``stack``."""
    result = init_bank(directory, keys=token.uri(), env={})
    config = load(result.config_path, env={})
    pki = load_bank_pki(config)
    stack.callback(pki.close)
    bank = Bank(result.directory, config, pki, None, None, None, "ec")  # type: ignore[arg-type]
    return _ca_over(stack, bank, issuer)


Sent = tuple[registration_pb2.CertRequest, MerchantRequestState]


def _request(bank: Bank, session: MerchantSession) -> Sent:
    sig, kex = new_key(bank, KeyUsage.SIGNATURE), new_key(bank, KeyUsage.KEY_EXCHANGE)
    filled = [(name, "Corner Shop Ltd") for name in session.registration.form.fields]
    return merchant_request(session, sig, kex, filled=filled)


def _unavailable(bank: Bank, request: registration_pb2.CertRequest) -> None:
    with pytest.raises(grpc.RpcError) as failed:
        bank.stub.Cert(request)
    assert failed.value.code() == grpc.StatusCode.UNAVAILABLE  # type: ignore[attr-defined]


def _resent_gets_in(
    bank: Bank, identity: MerchantIdentity, session: MerchantSession, sent: Sent
) -> None:
    """Another request for the ID without the account's id is refused; the interrupted
    request, sent again byte for byte, is certified (and its answer kept for a resend)."""
    other, *_ = register_merchant(bank, identity)
    assert other.status == REJECTED_BY_AGENT and other.signature is None
    request, state = sent
    response = bank.stub.Cert(request)
    outcome = open_merchant_cert_response(response, state, session.trust)
    assert outcome.complete, S.CertStatusCode.Name(outcome.status)
    assert len(certificates_naming(bank, identity.merchant_id)) == 2
    assert bank.stub.Cert(request).cert_res == response.cert_res


def test_an_answer_that_could_not_be_signed_after_the_account_was_opened(
    token: SoftToken, tmp_path: Path
) -> None:
    with ExitStack() as stack:
        issuer = Interrupting({})
        bank = _token_bank(stack, tmp_path / "bank", token, issuer)
        identity = _merchant("token-gone")
        session = start_merchant(bank, identity)
        sent = _request(bank, session)
        away = tmp_path / "token-away"

        def take_the_token_away() -> None:
            token.directory.rename(away)

        issuer.after_opening = take_the_token_away
        try:
            _unavailable(bank, sent[0])  # the CertRes could not be signed
        finally:
            if away.exists():
                away.rename(token.directory)
        assert identity.merchant_id in issuer.accounts
        assert certificates_naming(bank, identity.merchant_id) == []
        time.sleep(ABSENT_RESCAN_SECONDS)  # until the backend looks for the token again
        _resent_gets_in(bank, identity, session, sent)


def _lost(message: str) -> Failure:
    def fail() -> None:
        raise IssuerUnavailable(message)

    return fail


def test_the_acquirers_reply_lost_after_it_opened_the_account(ec_bank: Bank) -> None:
    with ExitStack() as stack:
        issuer = Interrupting({})
        bank = _ca_over(stack, ec_bank, issuer)
        identity = _merchant("reply-lost")
        session = start_merchant(bank, identity)
        sent = _request(bank, session)
        issuer.after_opening = _lost("the ledger committed; its reply was lost")
        _unavailable(bank, sent[0])
        assert identity.merchant_id in issuer.accounts
        _resent_gets_in(bank, identity, session, sent)


def test_a_registration_that_failed_before_the_account_was_opened_holds_nobody_back(
    ec_bank: Bank,
) -> None:
    """The acquirer's books were down: no account. Whoever registers the ID next gets it,
    and the first request, sent again, is refused: the ID holds live certificates now."""
    with ExitStack() as stack:
        issuer = Interrupting({})
        bank = _ca_over(stack, ec_bank, issuer)
        identity = _merchant("books-down")
        session = start_merchant(bank, identity)
        request, state = _request(bank, session)
        issuer.before_opening = _lost("the ledger is down")
        _unavailable(bank, request)
        assert identity.merchant_id not in issuer.accounts
        other, *_ = register_merchant(bank, identity)
        assert other.complete
        outcome = open_merchant_cert_response(bank.stub.Cert(request), state, session.trust)
        assert outcome.status == REJECTED_BY_AGENT
