"""The running merchant and a PInitReq's Thumbs (SET-PROTOCOL.md 2.6, 5.1, 5.2): the
thumbprints a wallet names are echoed, in the order sent, in the signed PInitRes, which
the wallet's check then takes; malformed ones are refused with a signed SET Error before
any order is opened."""

from __future__ import annotations

from setcore.error_message import open_error, request_digest
from setcore.errors import ErrorCode
from setcore.pan import PAN
from setcore.pki.roles import MERCHANT
from setcore.purchase import build_pinit_request, open_pinit_response
from setcore.signed import parse_signed
from setpay.v1 import purchase_pb2
from tests.cards import VISA
from tests.clients.bank_support import RunningBank
from tests.clients.conftest import MerchantFactory
from tests.clients.test_purchase_flow import offer

from .test_merchant_service import SERVICE, _caller

HELD = (b"\x07" * 32, b"\x05" * 32)


def _pinit(
    bank: RunningBank, port: int, request: purchase_pb2.PInitRequest
) -> purchase_pb2.PInitResponse:
    """``request`` sent to the running merchant as a wallet sends it; its answer."""
    caller = _caller(port, (bank.tls / "root.pem").read_bytes())
    return caller.call(
        f"{SERVICE}/PInit", request.SerializeToString(), purchase_pb2.PInitResponse, deadline=5
    )


def test_the_merchant_echoes_the_thumbs_a_pinit_names(
    bank: RunningBank, make_merchant: MerchantFactory
) -> None:
    merchant = make_merchant("m-pinit-thumbs")
    initiation = offer(merchant, 500)
    request, state = build_pinit_request(
        PAN(VISA), "setpay", b"lid-c", lid_m=initiation.lid_m, thumbs=HELD
    )
    response = _pinit(bank, merchant.port, request)
    assert response.WhichOneof("result") == "p_init_res"
    data = purchase_pb2.PInitResData.FromString(parse_signed(response.p_init_res).tbs)
    assert list(data.thumbs.thumbs) == list(HELD)
    offered = open_pinit_response(response, state, merchant.trust)
    assert offered.trans_ids.lid_m == initiation.lid_m


def test_a_pinit_naming_malformed_thumbs_is_refused_and_opens_no_order(
    bank: RunningBank, make_merchant: MerchantFactory
) -> None:
    merchant = make_merchant("m-pinit-bad-thumbs")
    initiation = offer(merchant, 500)
    request, state = build_pinit_request(PAN(VISA), "setpay", b"lid-c", lid_m=initiation.lid_m)
    request.thumbs.thumbs.append(b"\x07" * 31)
    response = _pinit(bank, merchant.port, request)
    assert response.WhichOneof("result") == "error"
    # The Error names the bytes sent: the request's, malformed Thumbs and all.
    sent = request_digest(request.DESCRIPTOR.full_name, request.SerializeToString())
    error = open_error(response.error, merchant.trust, MERCHANT, rrpid=state.rrpid, request=sent)
    assert error.code == ErrorCode.ERROR_CODE_DECODING_FAILURE
    assert merchant.store.offer(initiation.lid_m).xid is None  # offered still, no order
    assert merchant.store.orders() == []
