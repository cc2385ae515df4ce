"""The dual signature, verified by merchant and gateway; cut-and-paste attacks refused."""

from __future__ import annotations

import os

import pytest

from setcore.dualsig import (
    PAN_DATA_CT,
    PITBE_CT,
    DualSignedPurchase,
    GatewayView,
    build_dual_signed,
    open_payment_instruction,
    parse_purchase,
    verify_as_gateway,
    verify_as_merchant,
)
from setcore.encoding import digest
from setcore.envelope import seal
from setcore.errors import ProtocolError
from setpay.v1 import common_pb2, crypto_pb2, purchase_pb2
from tests.cards import VISA

from .conftest import Party
from .refusals import code_name


def _purchase(
    cardholder: Party,
    gateway: Party,
    *,
    xid: bytes,
    od: bytes = b"1 book",
    pe_thumb: bytes | None = None,
    pan: bytes | None = None,
) -> tuple[DualSignedPurchase, bytes, bytes]:
    amount = common_pb2.CurrencyAmount(currency=978, amount=1999, exp10=2)
    trans = common_pb2.TransIDs(lid_c=b"c", lid_m=b"m", xid=xid, preq_date_unix_ms=1)
    oi = purchase_pb2.OIData(
        content_type="setpay.v1.OIData", trans_ids=trans, rrpid=os.urandom(32),
        chall_c=os.urandom(32), hod=os.urandom(32) + od, od_salt=os.urandom(32),
        chall_m=os.urandom(32), brand_id="setpay", bin="411111",
    ).SerializeToString()  # fmt: skip
    head = purchase_pb2.PIHead(
        content_type="setpay.v1.PIHead", trans_ids=trans, hod=b"h" * 32, purch_amt=amount,
        merchant_id="M-1", merchant_sig_cert_thumb=b"m" * 32,
        pe_thumb=gateway.kex_thumb if pe_thumb is None else pe_thumb,
    ).SerializeToString()  # fmt: skip
    pan = _pan() if pan is None else pan
    dual = build_dual_signed(
        cardholder.backend, cardholder.sig, cardholder.sig_thumb, crypto_pb2.CertBundle(),
        oi, head, pan, gateway.recipient, xid=xid, rrpid=b"r" * 32,
    )  # fmt: skip
    return dual, oi, head


def _pan() -> bytes:
    return purchase_pb2.PANData(
        content_type="setpay.v1.PANData", pan=VISA, card_expiry="203012",
        pan_secret=os.urandom(32), ex_nonce=os.urandom(32),
    ).SerializeToString()  # fmt: skip


def _preq(dual: DualSignedPurchase) -> bytes:
    return dual.to_proto().SerializeToString()


def test_merchant_and_gateway_both_verify(cardholder: Party, gateway: Party) -> None:
    xid = os.urandom(32)
    dual, oi, head = _purchase(cardholder, gateway, xid=xid)
    view = parse_purchase(_preq(dual))
    verify_as_merchant(view, cardholder.sig.public_key)
    assert view.oi_bytes == oi
    gview = open_payment_instruction(
        view.pi_bytes, gateway.backend, gateway.kex, gateway.kex_thumb, xid=xid
    )
    verify_as_gateway(gview, cardholder.sig.public_key)
    assert gview.pan_data.pan == VISA
    assert gview.pi_head.SerializeToString() == head
    assert VISA not in repr(gview)


def test_merchant_view_holds_no_pan(cardholder: Party, gateway: Party) -> None:
    dual, _, _ = _purchase(cardholder, gateway, xid=os.urandom(32))
    assert VISA.encode() not in _preq(dual)


def test_pi_moved_to_another_order_is_rejected(cardholder: Party, gateway: Party) -> None:
    xid = os.urandom(32)
    first, _, _ = _purchase(cardholder, gateway, xid=xid)
    second, _, _ = _purchase(cardholder, gateway, xid=xid, od=b"a car")
    # Merchant side: the PI of order 1 glued to the OI of order 2.
    spliced = purchase_pb2.PReqDualSigned(
        pi_dual_signed=first.pi_dual_signed, oi_dual_signed=second.oi_dual_signed
    ).SerializeToString()
    with pytest.raises(ProtocolError) as exc:
        verify_as_merchant(parse_purchase(spliced), cardholder.sig.public_key)
    assert code_name(exc) == "ERROR_CODE_DIGEST_MISMATCH"
    # Gateway side: a PI whose signed PITBS is swapped for another order's.
    pi = purchase_pb2.PIDualSigned.FromString(first.pi_dual_signed)
    other = purchase_pb2.PIDualSigned.FromString(second.pi_dual_signed)
    pi.pi_tbs = other.pi_tbs
    pi.pi_signature.CopyFrom(other.pi_signature)
    gview = open_payment_instruction(
        pi.SerializeToString(), gateway.backend, gateway.kex, gateway.kex_thumb, xid=xid
    )
    with pytest.raises(ProtocolError) as exc:
        verify_as_gateway(gview, cardholder.sig.public_key)
    assert code_name(exc) == "ERROR_CODE_DIGEST_MISMATCH"


def test_pi_sealed_to_another_gateway_is_rejected(
    cardholder: Party, gateway: Party, merchant: Party
) -> None:
    xid = os.urandom(32)
    # Sealed to the merchant's key-exchange key (playing "another gateway").
    dual, _, _ = _purchase(cardholder, merchant, xid=xid)
    with pytest.raises(ProtocolError) as exc:
        open_payment_instruction(
            dual.pi_dual_signed, gateway.backend, gateway.kex, gateway.kex_thumb, xid=xid
        )
    assert code_name(exc) == "ERROR_CODE_WRONG_RECIPIENT"


def test_pi_naming_another_gateway_key_is_rejected(cardholder: Party, gateway: Party) -> None:
    xid = os.urandom(32)
    dual, _, _ = _purchase(cardholder, gateway, xid=xid, pe_thumb=b"o" * 32)
    with pytest.raises(ProtocolError) as exc:
        open_payment_instruction(
            dual.pi_dual_signed, gateway.backend, gateway.kex, gateway.kex_thumb, xid=xid
        )
    assert code_name(exc) == "ERROR_CODE_WRONG_RECIPIENT"


def test_pi_for_another_transaction_is_rejected(cardholder: Party, gateway: Party) -> None:
    dual, _, _ = _purchase(cardholder, gateway, xid=b"a" * 32)
    with pytest.raises(ProtocolError) as exc:
        open_payment_instruction(
            dual.pi_dual_signed, gateway.backend, gateway.kex, gateway.kex_thumb, xid=b"b" * 32
        )
    assert code_name(exc) == "ERROR_CODE_WRAPPER_MSG_MISMATCH"


def test_signature_by_another_cardholder_is_rejected(
    cardholder: Party, gateway: Party, merchant: Party
) -> None:
    xid = os.urandom(32)
    dual, _, _ = _purchase(cardholder, gateway, xid=xid)
    view = parse_purchase(_preq(dual))
    with pytest.raises(ProtocolError) as exc:
        verify_as_merchant(view, merchant.sig.public_key)
    assert code_name(exc) == "ERROR_CODE_SIGNATURE_FAILURE"
    gview = open_payment_instruction(
        view.pi_bytes, gateway.backend, gateway.kex, gateway.kex_thumb, xid=xid
    )
    with pytest.raises(ProtocolError) as exc:
        verify_as_gateway(gview, merchant.sig.public_key)
    assert code_name(exc) == "ERROR_CODE_SIGNATURE_FAILURE"


# --- each link checked on its own: only one part differs, only one check can refuse --


def _swapped(pi_from: DualSignedPurchase, oi_from: DualSignedPurchase, dd_pi: bytes) -> bytes:
    """A PReq with one purchase's PI, another's OIData, and ``dd_pi`` as the PI digest."""
    oi = purchase_pb2.OIDualSigned.FromString(oi_from.oi_dual_signed)
    oi.dd_pi_data = dd_pi
    return purchase_pb2.PReqDualSigned(
        pi_dual_signed=pi_from.pi_dual_signed, oi_dual_signed=oi.SerializeToString()
    ).SerializeToString()


def _dd_pi(dual: DualSignedPurchase) -> bytes:
    return purchase_pb2.OIDualSigned.FromString(dual.oi_dual_signed).dd_pi_data


def test_merchant_refuses_the_oidata_of_another_preq_for_the_same_order(
    cardholder: Party, gateway: Party
) -> None:
    xid = os.urandom(32)
    # Two PReqs for one order (fresh RRPID, Chall-C, ODSalt each); the PI digest is the
    # one PReq 1's signature covers, so only the OIData digest disagrees.
    one, _, _ = _purchase(cardholder, gateway, xid=xid)
    two, _, _ = _purchase(cardholder, gateway, xid=xid)
    preq = _swapped(one, two, _dd_pi(one))
    with pytest.raises(ProtocolError) as exc:
        verify_as_merchant(parse_purchase(preq), cardholder.sig.public_key)
    assert code_name(exc) == "ERROR_CODE_DIGEST_MISMATCH"
    assert "another order" in exc.value.reason


def test_merchant_refuses_the_pi_digest_of_another_preq(cardholder: Party, gateway: Party) -> None:
    xid = os.urandom(32)
    one, _, _ = _purchase(cardholder, gateway, xid=xid)
    two, _, _ = _purchase(cardholder, gateway, xid=xid)
    preq = _swapped(one, one, _dd_pi(two))  # PReq 1 whole but for PReq 2's PI digest
    with pytest.raises(ProtocolError) as exc:
        verify_as_merchant(parse_purchase(preq), cardholder.sig.public_key)
    assert code_name(exc) == "ERROR_CODE_DIGEST_MISMATCH"
    assert "another payment" in exc.value.reason


def _resealed(
    dual: DualSignedPurchase,
    gateway: Party,
    xid: bytes,
    head: bytes,
    pan: bytes,
    *,
    dd_oi: bytes | None = None,
    dd_pan: bytes | None = None,
) -> bytes:
    """The PI of ``dual`` with its sealed part rebuilt (as a cardholder could) from parts."""
    pi = purchase_pb2.PIDualSigned.FromString(dual.pi_dual_signed)
    tbs = purchase_pb2.PITBS.FromString(pi.pi_tbs)
    tbe = purchase_pb2.PITBE(
        content_type=PITBE_CT, pi_head=head,
        dd_oi_data=tbs.dd_oi_data if dd_oi is None else dd_oi,
        dd_pan_data=digest(PAN_DATA_CT, pan) if dd_pan is None else dd_pan,
    ).SerializeToString()  # fmt: skip
    sealed = seal(PITBE_CT, tbe, gateway.recipient, xid=xid, rrpid=b"r" * 32,
                  extra=(PAN_DATA_CT, pan))  # fmt: skip
    pi.ex_pi.CopyFrom(sealed)
    return pi.SerializeToString()


def _gateway_opens(gateway: Party, pi: bytes, xid: bytes) -> GatewayView:
    return open_payment_instruction(pi, gateway.backend, gateway.kex, gateway.kex_thumb, xid=xid)


def test_resealed_pi_with_the_same_parts_verifies(cardholder: Party, gateway: Party) -> None:
    xid, pan = os.urandom(32), _pan()
    dual, _, head = _purchase(cardholder, gateway, xid=xid, pan=pan)
    view = _gateway_opens(gateway, _resealed(dual, gateway, xid, head, pan), xid)
    verify_as_gateway(view, cardholder.sig.public_key)  # so each change below is the only one


def test_gateway_refuses_a_pi_sealed_with_another_order_digest(
    cardholder: Party, gateway: Party
) -> None:
    xid, pan = os.urandom(32), _pan()
    dual, _, head = _purchase(cardholder, gateway, xid=xid, pan=pan)
    view = _gateway_opens(
        gateway, _resealed(dual, gateway, xid, head, pan, dd_oi=os.urandom(32)), xid
    )
    with pytest.raises(ProtocolError) as exc:
        verify_as_gateway(view, cardholder.sig.public_key)
    assert code_name(exc) == "ERROR_CODE_DIGEST_MISMATCH"
    assert "another order" in exc.value.reason


def test_gateway_refuses_a_pi_sealed_with_another_pandata(
    cardholder: Party, gateway: Party
) -> None:
    xid = os.urandom(32)
    dual, _, head = _purchase(cardholder, gateway, xid=xid)
    view = _gateway_opens(gateway, _resealed(dual, gateway, xid, head, _pan()), xid)
    with pytest.raises(ProtocolError) as exc:
        verify_as_gateway(view, cardholder.sig.public_key)
    assert code_name(exc) == "ERROR_CODE_DIGEST_MISMATCH"
    assert "another payment" in exc.value.reason


def test_gateway_refuses_pandata_that_is_not_the_linked_one(
    cardholder: Party, gateway: Party
) -> None:
    xid, pan = os.urandom(32), _pan()
    dual, _, head = _purchase(cardholder, gateway, xid=xid, pan=pan)
    pi = _resealed(dual, gateway, xid, head, pan, dd_pan=digest(PAN_DATA_CT, _pan()))
    with pytest.raises(ProtocolError) as exc:
        _gateway_opens(gateway, pi, xid)
    assert code_name(exc) == "ERROR_CODE_DIGEST_MISMATCH"
    assert "PANData" in exc.value.reason


def test_gateway_refuses_a_pihead_for_another_transaction(
    cardholder: Party, gateway: Party
) -> None:
    # The envelope is bound to the XID the merchant asks about; the signed PIHead names
    # another transaction.
    xid, pan = os.urandom(32), _pan()
    dual, _, _ = _purchase(cardholder, gateway, xid=xid, pan=pan)
    _, _, other_head = _purchase(cardholder, gateway, xid=os.urandom(32), pan=pan)
    with pytest.raises(ProtocolError) as exc:
        _gateway_opens(gateway, _resealed(dual, gateway, xid, other_head, pan), xid)
    assert code_name(exc) == "ERROR_CODE_WRAPPER_MSG_MISMATCH"
    assert "another transaction" in exc.value.reason
