"""A request the gateway decided, sent again after the key-exchange certificate it is
sealed to was revoked (``setpay ca renew-gateway`` for a compromised key, then ``setpay
ca revoke``), and after that certificate's key was deleted.

A merchant whose answer was lost sends the same bytes again. Sealed to a certificate
revoked since, they no longer open with the older key (``gateway.opening_keys``: a
revoked certificate opens nothing new). The gateway decided them all the same: the hold
is placed, the capture posted. The resend must get that decision, never a refusal the
merchant records as a failure while the money has moved.

(a) The decision and its answer were stored: the stored answer, whatever the envelope.
(b) The decision was stored but its answer was not (the gateway failed in between): the
    answer is built from the request opened with the older key, as of the moment it was
    first checked, for as long as the bank holds that key. Before, it was refused as
    sealed to another, and the request answered UNAVAILABLE at every retry while the
    certificate stayed on its CRL (a year). ``setpay ca prune-gateway`` keeps the key
    while such a decision awaits its answer; deleted by hand all the same, nothing opens
    the request again, and it stays UNAVAILABLE (the operator's query in OPERATIONS, "A
    token that fails between a decision and its answer") until the key is restored.

Real parts: a served bank renewed as an operator does (stopped, ``renew_gateway_keys``,
started), ``setpay ca revoke`` through the CLI, the bank's revocation watcher, and the
merchant's own gateway client to read the answers as a merchant does.
"""

from __future__ import annotations

import argparse
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from cli import ca
from clients.errors import TransportError
from gateway import settlement as gateway_settlement
from gateway.gateway_pruning import prune_gateway_keys
from gateway.pruning_ledger import UnansweredDecisions
from setcore.authorization import AuthRequestState, open_auth_response
from setcore.capture import CaptureItem, CaptureState, build_capture_request, open_capture_response
from setcore.errors import ErrorCode, PeerError
from setpay.v1 import authorization_pb2 as a
from setpay.v1 import capture_pb2

from .actors import (
    Cardholder,
    Merchant,
    World,
    auth_request,
    eur,
    purchase,
    register_cardholder,
    register_merchant,
    send_unsigned_answers,
)
from .test_gateway_renewal import REVOCATION_SECONDS, Served, merchant_client
from .test_gateway_renewal_hosts import answered
from .test_rotation_lost_older_key import _delete_key

APPROVED = a.AUTH_CODE_APPROVED


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    bank = Served(tmp_path / "bank")
    yield bank
    bank.stop()


def _revoke_older(served: Served, merchant: Merchant, cardholder: Cardholder) -> None:
    """``setpay ca revoke --thumb`` the key-exchange certificate ``merchant`` seals to,
    and wait until the bank's watcher has it: a fresh AuthReq sealed to it is refused."""
    parser = argparse.ArgumentParser(prog="setpay")
    ca.add_parser(parser.add_subparsers(dest="command", required=True))
    config = str(served.directory / "setpay.toml")
    thumb = merchant.gateway_kex.thumbprint.hex()
    assert ca.run(parser.parse_args(["ca", "revoke", "--config", config, "--thumb", thumb])) == 0
    deadline = time.monotonic() + REVOCATION_SECONDS
    while True:
        probe = auth_request(merchant, purchase(merchant, cardholder, 100))
        if answered(served.world, merchant, *probe) == "ERROR_CODE_WRONG_RECIPIENT":
            return
        assert time.monotonic() < deadline, "the revocation never reached the bank"
        time.sleep(0.2)


def _delete_older_key(served: Served) -> World:
    """Stop the bank, delete the older key-exchange key (version 1), start it again."""
    served.stop()
    _delete_key(served)
    return served.start()


def _capture(
    world: World, merchant: Merchant, cardholder: Cardholder, amount: int
) -> tuple[capture_pb2.CaptureRequest, CaptureState]:
    """An approved authorization, and a CapReq for it sealed to ``merchant``'s certificate."""
    bought = purchase(merchant, cardholder, amount)
    request, state = auth_request(merchant, bought)
    result = open_auth_response(
        world.gateway.Authorize(request), merchant.credentials, state, merchant.trust,
        gateway_identity=merchant.gateway_identity,
    )  # fmt: skip
    assert result.auth_code == a.AUTH_CODE_APPROVED
    item = CaptureItem(bought.order.trans_ids, state.rrpid, result.baggage.cap_token, eur(amount))
    return build_capture_request(
        merchant.credentials, merchant.gateway_kex.recipient(), [item], merchant.merchant_id
    )


def _captured(world: World, merchant: Merchant, request: Any, state: Any) -> str:
    """How ``world``'s gateway answers a CapReq: the CapCode's name, the signed SET Error's
    code name, or the gRPC status's name."""
    try:
        response = world.gateway.Capture(request)
    except grpc.RpcError as exc:
        return str(exc.code().name)
    try:
        result = open_capture_response(
            response, merchant.credentials, state, merchant.trust,
            gateway_identity=merchant.gateway_identity,
        )  # fmt: skip
    except PeerError as exc:
        return exc.code_name
    return a.CapCode.Name(result.data.cap_res_items[0].cap_res_payload.cap_code)


def _unanswered_capture(
    world: World, request: capture_pb2.CaptureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Send a CapReq while its CapRes cannot be signed: decided, its answer not stored."""
    with monkeypatch.context() as patched:

        def failing(*args: Any, **kwargs: Any) -> bytes:
            raise RuntimeError("the signing key went away")

        patched.setattr(gateway_settlement, "build_capture_response", failing)
        with pytest.raises(grpc.RpcError) as failed:
            world.gateway.Capture(request)
    assert failed.value.code() == grpc.StatusCode.UNAVAILABLE


def _unanswered_sale(
    world: World, merchant: Merchant, cardholder: Cardholder, monkeypatch: pytest.MonkeyPatch
) -> tuple[a.AuthorizeRequest, AuthRequestState]:
    """A sale (an AuthReq capturing at once) sealed to ``merchant``'s certificate, sent
    while its AuthRes cannot be signed: the capture posted, its answer not stored."""
    request, state = auth_request(merchant, purchase(merchant, cardholder, 900), capture_now=True)
    send_unsigned_answers(world, request, monkeypatch, lambda decision: True)
    return request, state


def _parties(served: Served, name: str) -> tuple[Merchant, Cardholder]:
    return register_merchant(served.world, name), register_cardholder(served.world)


def _unanswered_then_revoked(
    served: Served, name: str, monkeypatch: pytest.MonkeyPatch
) -> tuple[Merchant, tuple[Any, AuthRequestState], tuple[Any, CaptureState]]:
    """A sale and a capture of merchant ``name`` decided but never answered, then the
    gateway renewed and the certificate they are sealed to revoked; the bank stopped.
    The merchant, the sale's request and state, the capture's."""
    merchant, cardholder = _parties(served, name)
    auth, auth_state = _unanswered_sale(served.world, merchant, cardholder, monkeypatch)
    cap, cap_state = _capture(served.world, merchant, cardholder, 1000)
    _unanswered_capture(served.world, cap, monkeypatch)
    served.renew()
    _revoke_older(served, merchant, cardholder)
    served.stop()
    return merchant, (auth, auth_state), (cap, cap_state)


def _merchant_authorizes(served: Served, merchant: Merchant, request: Any, state: Any) -> Any:
    """The AuthReq's bytes sent again by the merchant's own gateway client."""
    with merchant_client(served, merchant) as client:
        return client.authorize(request.SerializeToString(), state)


def _merchant_captures(served: Served, merchant: Merchant, request: Any, state: Any) -> str:
    """The CapReq's bytes sent again by the merchant's own gateway client: its CapCode."""
    with merchant_client(served, merchant) as client:
        result = client.capture(request.SerializeToString(), state)
    return a.CapCode.Name(result.data.cap_res_items[0].cap_res_payload.cap_code)


def test_an_answered_authreq_gets_its_stored_answer_after_the_revocation(
    served: Served,
) -> None:
    merchant, cardholder = _parties(served, "M-revoked-a1")
    request, state = auth_request(merchant, purchase(merchant, cardholder, 700))
    assert answered(served.world, merchant, request, state) == "AUTH_CODE_APPROVED"  # lost
    served.renew()
    _revoke_older(served, merchant, cardholder)
    assert _merchant_authorizes(served, merchant, request, state).auth_code == APPROVED
    # Stored bytes need no key: the older key deleted, the same answer.
    _delete_older_key(served)
    assert _merchant_authorizes(served, merchant, request, state).auth_code == APPROVED


def test_an_answered_capture_gets_its_stored_answer_after_the_revocation(
    served: Served,
) -> None:
    merchant, cardholder = _parties(served, "M-revoked-a2")
    request, state = _capture(served.world, merchant, cardholder, 800)
    assert _captured(served.world, merchant, request, state) == "CAP_CODE_SUCCESS"  # lost
    served.renew()
    _revoke_older(served, merchant, cardholder)
    assert _merchant_captures(served, merchant, request, state) == "CAP_CODE_SUCCESS"
    _delete_older_key(served)
    assert _merchant_captures(served, merchant, request, state) == "CAP_CODE_SUCCESS"


def test_an_unanswered_sale_gets_its_decision_after_the_revocation(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before: UNAVAILABLE at every retry until the revoked certificate, ended, left its
    CRL (a year), the capture posted all along."""
    merchant, cardholder = _parties(served, "M-revoked-b1")
    request, state = _unanswered_sale(served.world, merchant, cardholder, monkeypatch)
    served.renew()
    _revoke_older(served, merchant, cardholder)
    result = _merchant_authorizes(served, merchant, request, state)
    assert result.auth_code == APPROVED
    captured = result.data.auth_res_payload.cap_res_payload
    assert captured.cap_code == a.CAP_CODE_SUCCESS and captured.cap_amt.amount == 900
    # Answered once, stored: the same bytes again get the same answer.
    again = _merchant_authorizes(served, merchant, request, state)
    assert again.data == result.data


def test_an_unanswered_capture_gets_its_decision_after_the_revocation(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before: UNAVAILABLE at every retry, as the sale above."""
    merchant, cardholder = _parties(served, "M-revoked-b2")
    request, state = _capture(served.world, merchant, cardholder, 1000)
    _unanswered_capture(served.world, request, monkeypatch)
    served.renew()
    _revoke_older(served, merchant, cardholder)
    assert _merchant_captures(served, merchant, request, state) == "CAP_CODE_SUCCESS"


def test_an_envelope_sealed_to_the_revoked_certificate_but_never_decided_is_refused(
    served: Served,
) -> None:
    """Only decided bytes open with the revoked certificate's key: an AuthReq built
    before the revocation and sent after it, and a CapReq, are refused as sealed to
    another certificate, and the merchant's client reads the refusal."""
    merchant, cardholder = _parties(served, "M-revoked-c1")
    request, state = auth_request(merchant, purchase(merchant, cardholder, 600))
    cap, cap_state = _capture(served.world, merchant, cardholder, 650)
    served.renew()
    _revoke_older(served, merchant, cardholder)
    assert answered(served.world, merchant, request, state) == "ERROR_CODE_WRONG_RECIPIENT"
    assert _captured(served.world, merchant, cap, cap_state) == "ERROR_CODE_WRONG_RECIPIENT"
    with pytest.raises(PeerError) as refused:
        _merchant_authorizes(served, merchant, request, state)
    assert refused.value.code == ErrorCode.ERROR_CODE_WRONG_RECIPIENT


def test_an_unanswered_request_whose_key_is_pruned_stays_unavailable_until_restored(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The older key and its kept file deleted after the revocation (by hand:
    ``setpay ca prune-gateway`` refuses while they await their answer): no process
    opens those bytes again, so UNAVAILABLE (the merchant keeps
    them pending, never failed), the decision left in the ledger for the operator. Both
    put back from a backup, the decision is answered."""
    merchant, (auth, auth_state), (cap, cap_state) = _unanswered_then_revoked(
        served, "M-revoked-b3", monkeypatch
    )
    backup = served.directory.parent / "backup"
    shutil.copytree(served.directory, backup)
    # ``setpay ca prune-gateway`` keeps the key while the ledger holds these decisions;
    # deleted by hand all the same (the key and its kept file), they stay unanswered.
    with pytest.raises(UnansweredDecisions):
        prune_gateway_keys(served.config(), apply=True)
    (served.directory / "certs" / "gateway-kex.v1.der").unlink()
    world = _delete_older_key(served)
    assert answered(world, merchant, auth, auth_state) == "UNAVAILABLE"
    assert _captured(world, merchant, cap, cap_state) == "UNAVAILABLE"
    with pytest.raises(TransportError):
        _merchant_authorizes(served, merchant, auth, auth_state)
    served.stop()
    for part in ("keys", "certs"):
        shutil.rmtree(served.directory / part)
        shutil.copytree(backup / part, served.directory / part)
    served.start()
    result = _merchant_authorizes(served, merchant, auth, auth_state)
    assert result.data.auth_res_payload.cap_res_payload.cap_code == a.CAP_CODE_SUCCESS
    assert _merchant_captures(served, merchant, cap, cap_state) == "CAP_CODE_SUCCESS"
