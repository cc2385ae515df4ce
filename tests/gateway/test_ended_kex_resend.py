"""A request the gateway decided but never answered, sent again after the key-exchange
certificate it is sealed to has ended and the bank was restarted.

The merchant whose answer was lost sends the same bytes again; the gateway decided them
(the hold placed, the capture posted) while the certificate stood, and answers them from
those bytes opened with that certificate's key (``gateway.servicer``). A process running
when the certificate ended kept answering them; one started after skipped the ended
certificate's key, so the retry was answered UNAVAILABLE at every try, for good, although
the key and its kept file were there (``setpay ca prune-gateway`` keeps them for such a
decision). Now the restarted process loads it, for that answer only: bytes sealed to it
that were never decided are refused as sealed to another (WRONG_RECIPIENT), as before.

Real parts: a bank made a year ago less a few seconds, so that its first gateway
certificates end during the test; renewed as an operator does (stopped,
``renew_gateway_keys``), started again once they have ended; the merchant's own gateway
client reads the answers. One set-up, and one wait for the end, for the whole module.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest

from gateway.gateway_renewal import renew_gateway_keys
from setcore.authorization import AuthRequestState, open_auth_response
from setcore.capture import CaptureState
from setcore.errors import PeerError
from setcore.pki.certificate import load_certificate
from setcore.pki.issuance import END_ENTITY_LIFETIME
from setpay.v1 import authorization_pb2 as a
from setpay.v1 import capture_pb2

from .actors import (
    Merchant,
    auth_request,
    purchase,
    register_cardholder,
    register_merchant,
    send_unsigned_answers,
)
from .test_gateway_renewal import Served
from .test_gateway_renewal_hosts import answered
from .test_recipient_revoked_resend import (
    _capture,
    _captured,
    _merchant_authorizes,
    _merchant_captures,
    _unanswered_capture,
    _unanswered_sale,
)

# How long the bank's first gateway certificates last once it is made: enough for the
# set-up below (a start, two registrations, four requests, a renewal), waited out after.
WINDOW = timedelta(seconds=20)


@dataclass
class Ended:
    """The bank restarted after the certificate its merchant sealed to ended."""

    served: Served
    merchant: Merchant
    #: A sale and a capture decided while it stood, never answered.
    sale: tuple[a.AuthorizeRequest, AuthRequestState]
    capture: tuple[capture_pb2.CaptureRequest, CaptureState]
    #: A sale built while it stood, decided by the bank still running on it after its
    #: end (the newest certificate is opened unchecked), never answered.
    late_sale: tuple[a.AuthorizeRequest, AuthRequestState]
    #: An AuthReq and a CapReq built while it stood, never sent.
    fresh_sale: tuple[a.AuthorizeRequest, AuthRequestState]
    fresh_capture: tuple[capture_pb2.CaptureRequest, CaptureState]


@pytest.fixture(scope="module")
def ended(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ended]:
    made_at = datetime.now(UTC) - END_ENTITY_LIFETIME + WINDOW
    served = Served(tmp_path_factory.mktemp("ended-kex") / "bank", made_at=made_at)
    patch = pytest.MonkeyPatch()
    try:
        world = served.world
        merchant = register_merchant(world, "M-ended-kex")
        cardholder = register_cardholder(world)
        sale = _unanswered_sale(world, merchant, cardholder, patch)
        capture = _capture(world, merchant, cardholder, 1000)
        _unanswered_capture(world, capture[0], patch)
        fresh_sale = auth_request(merchant, purchase(merchant, cardholder, 600))
        fresh_capture = _capture(world, merchant, cardholder, 650)
        late_sale = auth_request(merchant, purchase(merchant, cardholder, 900), capture_now=True)
        ends = load_certificate(merchant.gateway_kex.der).not_valid_after_utc
        assert datetime.now(UTC) < ends, "the set-up outlasted the certificate: widen WINDOW"
        time.sleep((ends - datetime.now(UTC)).total_seconds() + 1)
        send_unsigned_answers(world, late_sale[0], patch, lambda decision: True)
        served.stop()
        renew_gateway_keys(served.config())
        served.start()
        yield Ended(served, merchant, sale, capture, late_sale, fresh_sale, fresh_capture)
    finally:
        patch.undo()
        served.stop()


def _resent(ended: Ended, request: a.AuthorizeRequest, state: AuthRequestState) -> Any:
    """The AuthRes to ``request`` sent again, or the gRPC status's name."""
    try:
        response = ended.served.world.gateway.Authorize(request)
    except grpc.RpcError as exc:
        return str(exc.code().name)
    merchant = ended.merchant
    return open_auth_response(
        response, merchant.credentials, state, merchant.trust,
        gateway_identity=merchant.gateway_identity,
    )  # fmt: skip


def test_an_unanswered_sale_sealed_to_an_ended_certificate_gets_its_decision(
    ended: Ended,
) -> None:
    """Before: UNAVAILABLE at every retry, for good, the capture posted."""
    request, state = ended.sale
    result = _resent(ended, request, state)
    assert not isinstance(result, str), f"answered {result}, not the decision"
    assert result.auth_code == a.AUTH_CODE_APPROVED
    captured = result.data.auth_res_payload.cap_res_payload
    assert captured.cap_code == a.CAP_CODE_SUCCESS and captured.cap_amt.amount == 900
    # Answered once, stored: the merchant's own client gets the same answer.
    again = _merchant_authorizes(ended.served, ended.merchant, request, state)
    assert again.data == result.data


def test_a_sale_decided_after_the_newest_certificate_ended_gets_its_decision(
    ended: Ended,
) -> None:
    """A bank checks its own certificates at start only, so one running when its newest
    key-exchange certificate ended went on opening with it, and decided this sale after
    the end. Renewed and restarted, the bank answers it all the same: a first version of
    the ended keys' loading opened only bytes checked by the end, and this retry was
    answered UNAVAILABLE for good, the capture posted."""
    request, state = ended.late_sale
    result = _resent(ended, request, state)
    assert not isinstance(result, str), f"answered {result}, not the decision"
    assert result.auth_code == a.AUTH_CODE_APPROVED


def test_an_unanswered_capture_sealed_to_an_ended_certificate_gets_its_decision(
    ended: Ended,
) -> None:
    """Before: UNAVAILABLE at every retry, as the sale above."""
    request, state = ended.capture
    world = ended.served.world
    assert _captured(world, ended.merchant, request, state) == "CAP_CODE_SUCCESS"
    assert _merchant_captures(ended.served, ended.merchant, request, state) == "CAP_CODE_SUCCESS"


def test_a_request_sealed_to_the_ended_certificate_but_never_decided_is_refused(
    ended: Ended,
) -> None:
    """The ended certificate's key opens only decided bytes: an AuthReq and a CapReq built
    while it stood, sent after its end, are refused as sealed to another certificate,
    each time, and the merchant's client reads the refusal."""
    world, merchant = ended.served.world, ended.merchant
    request, state = ended.fresh_sale
    cap, cap_state = ended.fresh_capture
    for _ in range(2):
        assert answered(world, merchant, request, state) == "ERROR_CODE_WRONG_RECIPIENT"
        assert _captured(world, merchant, cap, cap_state) == "ERROR_CODE_WRONG_RECIPIENT"
    with pytest.raises(PeerError) as refused:
        _merchant_authorizes(ended.served, merchant, request, state)
    assert refused.value.code_name == "ERROR_CODE_WRONG_RECIPIENT"
