"""The CA answers its key backend's failures as the gateway does (``gateway.answers``).

A failure that may clear (``TransientBackendError``: the token removed, the session pool
exhausted) is UNAVAILABLE: the requester sends the same bytes again later. Any other
(a key deleted, the PIN refused) cannot clear by itself: it is answered with a signed
UNSPECIFIED_FAILURE Error when the CA can still sign one, and its cause is logged in a
line for the operator. Only when the Error cannot be signed either is the answer
UNAVAILABLE, there being no refusal to send. The CA used to answer every
``KeyBackendError`` UNAVAILABLE, so a wallet resent a request the CA could never answer.

Each bank here is its own (its keys get deleted): made by ``init_bank`` with its keys in
a software keystore or on a SoftHSM token, served by a real gRPC server on port 0; keys
are deleted through another backend on the same keystore or token, as another process
would, and the token is removed by moving its directory away, as tests/hsm do.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import grpc
import pytest

from gateway.bank_pki import CA_LABELS, KEX_SUFFIX, bank_keys_uri, load_bank_pki, open_ca_store
from gateway.ca import CertificateAuthority
from gateway.ca import servicer as ca_servicer
from gateway.config import load
from gateway.provisioning import init_bank
from hsm.token_session import ABSENT_RESCAN_SECONDS
from hsm.uri import open_backend
from setcore.errors import ErrorCode, PeerError
from setcore.pan import PAN
from setcore.pki.roles import CARDHOLDER_CA
from setcore.registration import ca_error
from setcore.registration_cardholder import (
    build_card_c_init_request,
    build_reg_form_request,
    open_card_c_init_response,
)
from setpay.v1 import registration_pb2
from tests.hsm.testbed import SoftToken, session_softhsm

from .conftest import CARD, COMPLETE, EXPIRY, PENDED, REVIEW_CARD, Bank, DictIssuer, serving
from .flows import CARD_INITIAL, new_trust, sent_digest

S = registration_pb2
CCA_SIG = CA_LABELS[CARDHOLDER_CA]
CCA_KEX = CCA_SIG + KEX_SUFFIX
UNSPECIFIED_FAILURE = ErrorCode.ERROR_CODE_UNSPECIFIED_FAILURE


@pytest.fixture
def token(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SoftToken]:
    made = session_softhsm(tmp_path_factory).init_token()
    yield made
    shutil.rmtree(made.directory, ignore_errors=True)


def _own_bank(stack: ExitStack, directory: Path, keys: str | None) -> Bank:
    """A bank of its own (EC profile), its CA served; closed by ``stack``."""
    result = init_bank(directory, keys=keys, env={})
    config = load(result.config_path, env={})
    pki = load_bank_pki(config)
    stack.callback(pki.close)
    store = open_ca_store(config)
    stack.callback(store.close)
    issuer = DictIssuer({CARD: (EXPIRY, COMPLETE), REVIEW_CARD: (EXPIRY, PENDED)})
    ca = CertificateAuthority(pki.authority_keys(), store, pki.trust, issuer)
    stub = stack.enter_context(serving(ca))
    return Bank(result.directory, config, pki, ca, issuer, stub, "ec")


@pytest.fixture(params=["keystore", "token"])
def bank(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Bank]:
    """A bank whose keys are in a software keystore, or on a SoftHSM token."""
    keys = None
    if request.param == "token":
        keys = request.getfixturevalue("token").uri()
    with ExitStack() as stack:
        yield _own_bank(stack, tmp_path / "bank", keys)


@pytest.fixture
def keystore_bank(tmp_path: Path) -> Iterator[Bank]:
    with ExitStack() as stack:
        yield _own_bank(stack, tmp_path / "bank", None)


def _delete(bank: Bank, label: str) -> None:
    """Delete a key of the bank's, through a backend of its own (another process)."""
    other = open_backend(bank_keys_uri(bank.config))
    try:
        other.delete(label)
    finally:
        other.close()


def _answered(call: Callable[[], object]) -> object:
    try:
        return call()
    except grpc.RpcError as exc:
        pytest.fail(f"answered {exc.code()} ({exc.details()}), not with an Error")  # type: ignore[attr-defined]


def _logged(caplog: pytest.LogCaptureFixture, level: int) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno == level]


def test_a_key_deleted_is_answered_with_a_signed_error_not_unavailable(
    bank: Bank, caplog: pytest.LogCaptureFixture
) -> None:
    """The Cardholder CA's key-exchange key is deleted between CardCInit and RegForm:
    the RegFormReq sealed to it can never be opened. The Cardholder CA's signature key
    is still there: a signed UNSPECIFIED_FAILURE Error, and the operator reads the
    cause (which key) in one line, with no PAN in it."""
    trust, lid_ee = new_trust(bank), os.urandom(8)
    request, state = build_card_c_init_request(bank.brand_id, lid_ee)
    contact = open_card_c_init_response(bank.stub.CardCInit(request), state, trust)
    _delete(bank, CCA_KEX)
    form_request, _ = build_reg_form_request(contact, PAN(CARD), lid_ee, request_type=CARD_INITIAL)
    with caplog.at_level(logging.INFO, logger=ca_servicer.__name__):
        response = _answered(lambda: bank.stub.RegForm(form_request))
    assert isinstance(response, S.RegFormResponse)
    assert response.WhichOneof("result") == "error"
    error = ca_error(
        response.error, trust, S.CERTIFICATE_TYPE_CARDHOLDER_CA, form_request.header.rrpid,
        request=sent_digest(form_request),
    )  # fmt: skip
    assert isinstance(error, PeerError) and error.code == UNSPECIFIED_FAILURE
    (record,) = _logged(caplog, logging.ERROR)
    assert record.exc_info is None
    assert "RegFormRequest: certificate authority key backend failed: KeyNotFound" in (
        record.getMessage()
    )
    assert CCA_KEX in record.getMessage()
    assert CARD not in caplog.text


def test_the_key_that_signs_the_error_deleted_is_unavailable_as_at_the_gateway(
    keystore_bank: Bank, caplog: pytest.LogCaptureFixture
) -> None:
    """The Cardholder CA's signature key is deleted: CardCInitRes cannot be signed, nor
    an Error. There is no refusal to send: UNAVAILABLE, as the gateway answers (a pin
    of that agreement: the CA answered UNAVAILABLE before too). Both failures are logged
    with their cause."""
    bank = keystore_bank
    _delete(bank, CCA_SIG)
    request, _ = build_card_c_init_request(bank.brand_id, b"lid-ee-unsigned")
    with (
        caplog.at_level(logging.INFO, logger=ca_servicer.__name__),
        pytest.raises(grpc.RpcError) as failed,
    ):
        bank.stub.CardCInit(request)
    assert failed.value.code() == grpc.StatusCode.UNAVAILABLE  # type: ignore[attr-defined]
    assert failed.value.details() == "certificate authority key backend unavailable"  # type: ignore[attr-defined]
    messages = [r.getMessage() for r in _logged(caplog, logging.ERROR)]
    assert len(messages) == 2, messages
    assert "key backend failed: KeyNotFound" in messages[0]
    assert "cannot sign the Error: KeyNotFound" in messages[1]


def test_a_token_removed_is_unavailable_until_it_is_back(
    token: SoftToken, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The token goes away: UNAVAILABLE, logged as an outage (a warning naming the
    cause, no traceback); once it is back the same request is served. (UNAVAILABLE is
    what the CA answered before too: this pins it next to the permanent failures.)"""
    with ExitStack() as stack:
        bank = _own_bank(stack, tmp_path / "bank", token.uri())
        request, state = build_card_c_init_request(bank.brand_id, b"lid-ee-token")
        away = tmp_path / "token-away"
        token.directory.rename(away)
        try:
            with (
                caplog.at_level(logging.INFO, logger=ca_servicer.__name__),
                pytest.raises(grpc.RpcError) as failed,
            ):
                bank.stub.CardCInit(request)
        finally:
            away.rename(token.directory)
        assert failed.value.code() == grpc.StatusCode.UNAVAILABLE  # type: ignore[attr-defined]
        assert failed.value.details() == "certificate authority key backend unavailable"  # type: ignore[attr-defined]
        assert _logged(caplog, logging.ERROR) == []
        (warning,) = _logged(caplog, logging.WARNING)
        assert warning.exc_info is None
        assert "key backend unavailable: TransientBackendError" in warning.getMessage()
        time.sleep(ABSENT_RESCAN_SECONDS)  # until the backend looks for the token again
        trust = new_trust(bank)
        assert open_card_c_init_response(bank.stub.CardCInit(request), state, trust)
