"""The Merchant service's refusals, and authorizations that outlive a gateway outage."""

from __future__ import annotations

import sqlite3
import time

import pytest

from clients.errors import TransportError
from clients.merchant import authorizer as authorizer_module
from clients.merchant import servicer as servicer_module
from clients.merchant.config import AnswerMode
from clients.merchant.records import OrderState
from clients.transport import Caller, ChannelConfig, open_channel
from clients.wallet.credentials import card_credentials
from clients.wallet.purchases import PurchaseBook
from hsm.errors import TransientBackendError
from setcore.authorization import AuthRequestState, AuthResult
from setcore.error_message import ERROR_CT, open_error, request_digest
from setcore.errors import ErrorCode, PeerError
from setcore.freshness import new_id
from setcore.pan import PAN
from setcore.pki.roles import MERCHANT
from setcore.purchase import (
    PurchaseState,
    build_inquiry_request,
    build_pinit_request,
    build_purchase_request,
    open_pinit_response,
    open_purchase_response,
)
from setcore.signed import open_signed, parse_signed
from setcore.signers import signer
from setpay.v1 import authorization_pb2, common_pb2, crypto_pb2, error_pb2, purchase_pb2
from tests.cards import VISA
from tests.clients.bank_support import EUR, WALLET_PASSPHRASE, RunningBank, serve_gateway
from tests.clients.bank_support import test_pan as card_number  # not a test of this module
from tests.clients.conftest import MerchantFactory, WalletFactory
from tests.clients.merchant.outage_support import (
    JUST_PAST_MS,
    WELL_PAST_MS,
    GatewayOutage,
)
from tests.clients.test_purchase_flow import buy, offer
from tests.clocks import clocks_moved

SERVICE = "/setpay.v1.MerchantService"
# Bounds the wait for the merchant's channel to reconnect (its backoff is at most 5 s).
RECOVERY_WAIT_SECONDS = 20.0


def _caller(merchant_port: int, root_pem: bytes) -> Caller:
    config = ChannelConfig(f"127.0.0.1:{merchant_port}", ca_pem=root_pem)
    return Caller(open_channel(config, "merchant"), "merchant")


def test_unparseable_frame_is_invalid_argument(
    bank: RunningBank, make_merchant: MerchantFactory
) -> None:
    merchant = make_merchant("m-frames")
    caller = _caller(merchant.port, (bank.tls / "root.pem").read_bytes())
    with pytest.raises(TransportError) as caught:
        caller.call(f"{SERVICE}/PInit", b"\xff\xff\xff", purchase_pb2.PInitResponse, deadline=5)
    assert caught.value.status == "INVALID_ARGUMENT"


@pytest.mark.parametrize(
    ("brand", "lid_m", "code"),
    [
        ("otherbrand", b"lid", ErrorCode.ERROR_CODE_DECODING_FAILURE),
        ("setpay", b"", ErrorCode.ERROR_CODE_UNKNOWN_LID),
        ("setpay", b"never-offered", ErrorCode.ERROR_CODE_UNKNOWN_LID),
    ],
)
def test_pinit_refusals_are_signed_errors(
    bank: RunningBank, make_merchant: MerchantFactory, brand: str, lid_m: bytes, code: int
) -> None:
    # A merchant per case: the session's bank registers a merchant ID once.
    merchant = make_merchant(f"m-pinit-{brand}-{lid_m.hex()}")
    request, state = build_pinit_request(PAN(VISA), brand, b"lid-c", lid_m=lid_m)
    caller = _caller(merchant.port, (bank.tls / "root.pem").read_bytes())
    response = caller.call(
        f"{SERVICE}/PInit", request.SerializeToString(), purchase_pb2.PInitResponse, deadline=5
    )
    assert response.WhichOneof("result") == "error"
    error = open_error(
        response.error, merchant.trust, MERCHANT, rrpid=request.header.rrpid,
        request=state.request_digest,
    )  # fmt: skip
    assert error.code == code
    assert error.args[0].count("peer refused") == 1  # a fixed text, no detail


def test_a_pinit_error_names_the_request_as_it_was_received(
    bank: RunningBank, make_merchant: MerchantFactory
) -> None:
    """PInitReq is the call's frame itself: its Error's digest is of the bytes sent (here
    its fields in another order than a serializer writes them), not of the request
    parsed and serialized again, as for PReq and InqReq."""
    merchant = make_merchant("m-pinit-as-sent")
    request, _ = build_pinit_request(PAN(card_number(1)), "otherbrand", b"lid-c", lid_m=b"lid")
    rest = purchase_pb2.PInitRequest()
    rest.CopyFrom(request)
    rest.ClearField("brand_id")
    sent = purchase_pb2.PInitRequest(brand_id="otherbrand").SerializeToString()
    sent += rest.SerializeToString()  # the brand (field 7) first
    parsed = purchase_pb2.PInitRequest.FromString(sent)
    assert parsed == request and parsed.SerializeToString() != sent
    caller = _caller(merchant.port, (bank.tls / "root.pem").read_bytes())
    response = caller.call(f"{SERVICE}/PInit", sent, purchase_pb2.PInitResponse, deadline=5)
    as_sent = request_digest(request.DESCRIPTOR.full_name, sent)
    refused = open_error(
        response.error, merchant.trust, MERCHANT, rrpid=request.header.rrpid, request=as_sent
    )
    assert refused.code == ErrorCode.ERROR_CODE_DECODING_FAILURE
    signed = parse_signed(response.error.signed_error)
    tbs = open_signed(signed, ERROR_CT, signer(merchant.trust, MERCHANT)).tbs
    named = error_pb2.ErrorTBS.FromString(tbs).bad_message_digest
    assert named == as_sent


def test_a_refusal_the_key_backend_cannot_sign_is_unavailable(
    bank: RunningBank, make_merchant: MerchantFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The PInit is refused and the merchant's token goes away before the Error is signed:
    # UNAVAILABLE, not gRPC's UNKNOWN with the backend's own words in it.
    from clients.merchant import answers

    def token_gone(*args: object, **kwargs: object) -> None:
        raise TransientBackendError("token removed, slot 7 detail")

    merchant = make_merchant("m-pinit-unsigned")
    monkeypatch.setattr(answers, "build_error", token_gone)
    request, _ = build_pinit_request(PAN(VISA), "otherbrand", b"lid-c", lid_m=b"l")
    caller = _caller(merchant.port, (bank.tls / "root.pem").read_bytes())
    with pytest.raises(TransportError) as caught:
        caller.call(
            f"{SERVICE}/PInit", request.SerializeToString(), purchase_pb2.PInitResponse, deadline=5
        )
    assert caught.value.status == "UNAVAILABLE"
    assert "slot 7" not in str(caught.value)


def test_inquiry_only_by_the_cardholder_who_paid(
    make_merchant: MerchantFactory, make_wallet: WalletFactory
) -> None:
    merchant = make_merchant("m-inquiry")
    payer, other = make_wallet(merchant), make_wallet(merchant)
    record = buy(payer, offer(merchant, 300))
    # Another certified cardholder copies the purchase record and asks about it.
    PurchaseBook(other.config.purchases_file).save(record)
    snoop = other.shopper(WALLET_PASSPHRASE)
    with pytest.raises(PeerError) as caught:
        snoop.inquire(other.config.require_merchant(), record.xid[:8])
    assert caught.value.code == ErrorCode.ERROR_CODE_INVALID_CERTIFICATE


def test_inquiry_about_an_unknown_transaction(
    make_merchant: MerchantFactory, make_wallet: WalletFactory
) -> None:
    merchant = make_merchant("m-inq-unknown")
    wallet = make_wallet(merchant)
    card = wallet.card(WALLET_PASSPHRASE).card()
    config = wallet.config
    credentials = card_credentials(wallet.backend, config.key_label, config.chain, card)
    state = PurchaseState(b"", b"", common_pb2.TransIDs(xid=new_id()), b"")
    request, inquiry = build_inquiry_request(credentials, state)
    caller = _caller(merchant.port, wallet.config.require_merchant().channel().ca_pem or b"")
    response = caller.call(
        f"{SERVICE}/Inquiry", request.SerializeToString(), purchase_pb2.InquiryResponse,
        deadline=5,
    )  # fmt: skip
    assert open_error(
        response.error, merchant.trust, MERCHANT, rrpid=request.header.rrpid,
        request=inquiry.request_digest,
    ).code == (ErrorCode.ERROR_CODE_UNKNOWN_XID)  # fmt: skip


def test_only_a_refusal_hashes_the_request_it_names(
    bank: RunningBank,
    make_merchant: MerchantFactory,
    make_wallet: WalletFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The request digest a SET Error names is computed for a refusal alone: a PInit and
    a Purchase answered, none; a PInit refused, its own, which its Error names."""
    hashed: list[str] = []
    real = servicer_module.request_digest

    def counted(name: str, data: bytes) -> bytes:
        hashed.append(name)
        return real(name, data)

    monkeypatch.setattr(servicer_module, "request_digest", counted)
    merchant = make_merchant("m-digest")
    record = buy(make_wallet(merchant), offer(merchant, 700))
    assert record.completion == "COMPLETION_CODE_AUTHORIZATION_PERFORMED"
    assert hashed == []
    request, state = build_pinit_request(PAN(VISA), "setpay", b"lid-c", lid_m=b"never-offered")
    caller = _caller(merchant.port, (bank.tls / "root.pem").read_bytes())
    response = caller.call(
        f"{SERVICE}/PInit", request.SerializeToString(), purchase_pb2.PInitResponse, deadline=5
    )
    refused = open_error(
        response.error, merchant.trust, MERCHANT, rrpid=request.header.rrpid,
        request=state.request_digest,
    )  # fmt: skip
    assert refused.code == ErrorCode.ERROR_CODE_UNKNOWN_LID
    assert hashed == [request.DESCRIPTOR.full_name]


def test_authorization_survives_a_gateway_outage(
    bank: RunningBank, make_merchant: MerchantFactory, make_wallet: WalletFactory
) -> None:
    """The gateway goes away after the merchant started: the wallet hears "order received",
    the stored AuthReq goes out again unchanged once the gateway is back."""
    server, port, health = serve_gateway(bank.bank, bank.config)
    merchant = make_merchant("m-outage", AnswerMode.AFTER_AUTHORIZATION, f"127.0.0.1:{port}")
    wallet = make_wallet(merchant)
    health.stop()
    server.stop(grace=None).wait()
    record = buy(wallet, offer(merchant, 800))
    assert record.completion == "COMPLETION_CODE_ORDER_RECEIVED"
    xid = bytes.fromhex(record.xid)
    pending = merchant.store.order(xid)
    assert pending.state is OrderState.AUTHORIZING and pending.auth_request is not None
    server, _, health = serve_gateway(bank.bank, bank.config, port)
    try:
        give_up = time.monotonic() + RECOVERY_WAIT_SECONDS
        done = merchant.authorizer.authorize(xid)
        while done.state is OrderState.AUTHORIZING and time.monotonic() < give_up:
            time.sleep(0.2)  # the channel reconnects after its (bounded) backoff
            done = merchant.authorizer.authorize(xid)
        assert done.state is OrderState.AUTHORIZED
        assert done.auth_request == pending.auth_request  # the same bytes went out
        # Sending those bytes once more gets the gateway's stored answer, not a second hold.
        assert done.auth_rrpid is not None and done.auth_request_digest is not None
        again = merchant.gateway.authorize(
            done.auth_request, AuthRequestState(done.auth_rrpid, xid, done.auth_request_digest)
        )
        assert done.authorization is not None
        assert again.data.auth_res_payload.auth_header.response_data.approval_code == (
            done.authorization.approval_code
        )
        seen = wallet.shopper(WALLET_PASSPHRASE).inquire(
            wallet.config.require_merchant(), record.xid[:8]
        )
        assert seen.completion == "COMPLETION_CODE_AUTHORIZATION_PERFORMED"
    finally:
        merchant.close()
        health.stop()
        server.stop(grace=None)


def test_an_unspecified_gateway_failure_leaves_the_authorization_pending(
    make_merchant: MerchantFactory,
    make_wallet: WalletFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """UNSPECIFIED_FAILURE does not say the gateway did nothing: the order is not failed,
    it stays authorizing and the same AuthReq goes out again."""
    merchant = make_merchant("m-unspecified-auth", AnswerMode.AFTER_AUTHORIZATION)
    # The worker's scan (every few seconds) would otherwise race the test for the order.
    merchant.authorizer.stop(timeout=10)
    sent: list[bytes] = []
    real = merchant.gateway.authorize

    def fails_once(request: bytes, state: AuthRequestState, **deadline: float) -> object:
        sent.append(request)
        if len(sent) == 1:
            raise PeerError(ErrorCode.ERROR_CODE_UNSPECIFIED_FAILURE)
        return real(request, state, **deadline)

    monkeypatch.setattr(merchant.gateway, "authorize", fails_once)
    record = buy(make_wallet(merchant), offer(merchant, 800))
    assert record.completion == "COMPLETION_CODE_ORDER_RECEIVED"
    xid = bytes.fromhex(record.xid)
    pending = merchant.store.order(xid)
    assert pending.state is OrderState.AUTHORIZING
    done = merchant.authorizer.authorize(xid)
    assert done.state is OrderState.AUTHORIZED
    assert done.auth_rrpid == pending.auth_rrpid
    assert sent == [pending.auth_request, pending.auth_request]


def test_repeated_purchase_request_is_answered_not_authorized_again(
    make_merchant: MerchantFactory, make_wallet: WalletFactory
) -> None:
    """A wallet that retries its PReq (same bytes) gets an answer; one AuthReq, one hold."""
    merchant = make_merchant("m-retry")
    wallet = make_wallet(merchant)
    initiation = offer(merchant, 650)
    card = wallet.card(WALLET_PASSPHRASE).card()
    config = wallet.config
    credentials = card_credentials(wallet.backend, config.key_label, config.chain, card)
    wallet.revocation.ensure_fresh()
    caller = _caller(merchant.port, wallet.config.require_merchant().channel().ca_pem or b"")
    pinit, pinit_state = build_pinit_request(card.pan, "setpay", b"lid-c", lid_m=initiation.lid_m)
    offered = open_pinit_response(
        caller.call(f"{SERVICE}/PInit", pinit.SerializeToString(), purchase_pb2.PInitResponse,
                    deadline=5),
        pinit_state, wallet.trust,
    )  # fmt: skip
    preq, state = build_purchase_request(
        credentials, offered, initiation.order(), card, pinit_state
    )

    def purchase() -> purchase_pb2.PResData:
        response = caller.call(
            f"{SERVICE}/Purchase", preq.SerializeToString(), purchase_pb2.PurchaseResponse,
            deadline=30,
        )  # fmt: skip
        return open_purchase_response(response, state, wallet.trust)

    answers = [purchase(), purchase()]
    codes = [a.payloads[0].completion_code for a in answers]
    assert codes == [purchase_pb2.COMPLETION_CODE_AUTHORIZATION_PERFORMED] * 2
    order = merchant.store.order(offered.trans_ids.xid)
    assert order.authorization is not None
    assert [a.payloads[0].auth_amt.amount for a in answers] == [650, 650]
    # A different PReq for the same XID (another PI) is refused.
    other, again = build_purchase_request(
        credentials, offered, initiation.order(), card, pinit_state
    )
    refused = caller.call(
        f"{SERVICE}/Purchase", other.SerializeToString(), purchase_pb2.PurchaseResponse,
        deadline=30,
    )  # fmt: skip
    assert open_error(
        refused.error, merchant.trust, MERCHANT, rrpid=other.header.rrpid,
        request=again.request_digest,
    ).code == (ErrorCode.ERROR_CODE_PI_PREVIOUSLY_USED)  # fmt: skip


def test_an_authorization_pending_past_the_freshness_window_is_built_afresh(
    bank: RunningBank,
    make_merchant: MerchantFactory,
    make_wallet: WalletFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An AuthReq stored in a gateway outage longer than the freshness window is refused
    as too old once the gateway is back: built afresh around the same PI, it is
    authorized; the PI cannot be used a second time."""
    outage = GatewayOutage(bank)
    merchant = make_merchant("m-stale-auth", AnswerMode.AFTER_AUTHORIZATION, outage.target)
    try:
        wallet = make_wallet(merchant)
        outage.stop()
        record = buy(wallet, offer(merchant, 800))
        assert record.completion == "COMPLETION_CODE_ORDER_RECEIVED"
        xid = bytes.fromhex(record.xid)
        pending = merchant.store.order(xid)
        assert pending.state is OrderState.AUTHORIZING and pending.auth_request is not None
        clocks_moved(monkeypatch, JUST_PAST_MS)
        outage.end(merchant)
        # Only just too old: an earlier sending could still be inside the gateway.
        waiting = merchant.authorizer.authorize(xid)
        assert waiting.state is OrderState.AUTHORIZING
        assert waiting.auth_request == pending.auth_request
        clocks_moved(monkeypatch, WELL_PAST_MS)
        done = merchant.authorizer.authorize(xid)
        assert done.state is OrderState.AUTHORIZED
        assert done.auth_rrpid != pending.auth_rrpid
        sent = authorization_pb2.AuthorizeRequest.FromString(done.auth_request or b"")
        assert crypto_pb2.SealedWithBaggage.FromString(sent.auth_req).baggage == pending.pi
        # The stale request was never committed: sent again, it is still refused.
        assert pending.auth_rrpid is not None and pending.auth_request_digest is not None
        with pytest.raises(PeerError) as refused:
            merchant.gateway.authorize(
                pending.auth_request,
                AuthRequestState(pending.auth_rrpid, xid, pending.auth_request_digest),
            )
        assert refused.value.code == ErrorCode.ERROR_CODE_MESSAGE_TOO_OLD
        # A third AuthReq around the same PI meets the gateway's PI replay check.
        with sqlite3.connect(merchant.config.store) as conn:
            conn.execute("UPDATE orders SET state = 'purchased' WHERE xid = ?", (xid,))
        again = merchant.authorizer.authorize(xid)
        assert again.state is OrderState.FAILED
        assert again.error_code == ErrorCode.ERROR_CODE_PI_PREVIOUSLY_USED
    finally:
        merchant.close()
        outage.release()


@pytest.mark.parametrize(
    ("currency", "amount"),
    [
        (EUR, 800_000),  # more than the order's 800
        (840, 800),  # the order's number in another currency
        (EUR, 0),  # approved for nothing
    ],
)
def test_an_approval_for_another_amount_is_not_recorded(
    make_merchant: MerchantFactory,
    make_wallet: WalletFactory,
    monkeypatch: pytest.MonkeyPatch,
    currency: int,
    amount: int,
) -> None:
    """A gateway-signed approval may give less than the purchase amount, never more nor in
    another unit: such an answer never becomes the order's authorization. Nor does it fail
    the order: the gateway placed a hold, so the order stays authorizing (the wallet hears
    "order received") and the gateway's true answer, asked again, authorizes it."""
    # A merchant per case: the session's bank registers a merchant ID once.
    merchant = make_merchant(f"m-auth-amount-{currency}-{amount}", AnswerMode.AFTER_AUTHORIZATION)
    merchant.authorizer.stop(timeout=10)
    real = merchant.gateway.authorize

    def approves_another_amount(
        request: bytes, state: AuthRequestState, **deadline: float
    ) -> AuthResult:
        result = real(request, state, **deadline)
        header = result.data.auth_res_payload.auth_header
        assert header.auth_code == authorization_pb2.AUTH_CODE_APPROVED
        header.auth_amt.currency, header.auth_amt.amount = currency, amount
        return result

    monkeypatch.setattr(merchant.gateway, "authorize", approves_another_amount)
    record = buy(make_wallet(merchant), offer(merchant, 800))
    assert record.completion == "COMPLETION_CODE_ORDER_RECEIVED"
    xid = bytes.fromhex(record.xid)
    order = merchant.store.order(xid)
    assert order.state is OrderState.AUTHORIZING and order.authorization is None
    monkeypatch.undo()
    done = merchant.authorizer.authorize(xid)
    assert done.state is OrderState.AUTHORIZED and done.auth_rrpid == order.auth_rrpid
    assert done.authorization is not None and done.authorization.amount.minor == 800


def test_the_authorization_worker_outlives_a_lost_key_token(
    make_merchant: MerchantFactory,
    make_wallet: WalletFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The key backend fails while the worker authorizes (a PKCS#11 token pulled out):
    the worker goes on, and the order is authorized once the keys answer again."""
    monkeypatch.setattr(authorizer_module, "RETRY_SECONDS", 0.1)
    merchant = make_merchant("m-worker-token", AnswerMode.ORDER_RECEIVED)
    real = merchant.gateway.authorize
    failures: list[bytes] = []

    def token_lost_once(request: bytes, state: AuthRequestState, **deadline: float) -> AuthResult:
        if not failures:
            failures.append(request)
            raise TransientBackendError("the token is gone")
        return real(request, state, **deadline)

    monkeypatch.setattr(merchant.gateway, "authorize", token_lost_once)
    record = buy(make_wallet(merchant), offer(merchant, 800))
    assert record.completion == "COMPLETION_CODE_ORDER_RECEIVED"
    xid = bytes.fromhex(record.xid)
    give_up = time.monotonic() + RECOVERY_WAIT_SECONDS
    while merchant.store.order(xid).state is not OrderState.AUTHORIZED:
        assert time.monotonic() < give_up, f"still {merchant.store.order(xid).state}"
        time.sleep(0.1)
    assert len(failures) == 1


def test_a_damaged_order_row_is_the_database_unavailable(
    make_merchant: MerchantFactory, make_wallet: WalletFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """An order state no setpay writes: UNAVAILABLE to the wallet, one line in the log
    naming the order, no stack trace."""
    merchant = make_merchant("m-damaged")
    wallet = make_wallet(merchant)
    record = buy(wallet, offer(merchant, 700))
    with sqlite3.connect(merchant.config.store) as conn:
        conn.execute("UPDATE orders SET state = 'paid-ish'")
    conn.close()
    with pytest.raises(TransportError) as caught:
        wallet.shopper(WALLET_PASSPHRASE).inquire(wallet.config.require_merchant(), record.xid[:8])
    assert caught.value.status == "UNAVAILABLE"
    logged = [r for r in caplog.records if r.name == "setpay.merchant"]
    assert [r.exc_info for r in logged if r.exc_info] == []
    assert any(
        f"merchant database damaged: order {record.short_id} has 'paid-ish'" in r.getMessage()
        for r in logged
    )
