"""What the wallet accepts of a PInitRes besides its signature and echoes: the TransIDs
fields the merchant chose (``setcore.purchase_offer``), and certificates cryptography
cannot read, which must come out as the protocol's refusal and nothing else."""

from __future__ import annotations

import random

import pytest

from setcore.encoding import thumbprint
from setcore.errors import ErrorCode, PeerError, ProtocolError
from setcore.freshness import FRESHNESS_WINDOW_MS, new_id, now_ms
from setcore.purchase import (
    PINIT_RES_CT,
    Order,
    PInitState,
    build_pinit_request,
    build_pinit_response,
    build_purchase_request,
    build_purchase_response,
    open_pinit_response,
    open_purchase_response,
)
from setcore.signed import parse_signed, sign
from setpay.v1 import common_pb2, purchase_pb2

from .certified import Certified, eur
from .refusals import refused
from .test_purchase import _cardholder, _shop

# DER of the id-ecPublicKey OID, and of an OID one arc off it that no library knows.
EC_KEY_OID = bytes.fromhex("06072a8648ce3d0201")
UNKNOWN_KEY_OID = bytes.fromhex("06072a8648ce3d0209")
# Mutations per fuzzed message: enough to reach names, keys and extensions (the review's
# 1,500 found five escapes), few enough to run in about a second.
FUZZ_ROUNDS = 300
RECEIVED = (purchase_pb2.PResPayload(completion_code=purchase_pb2.COMPLETION_CODE_ORDER_RECEIVED),)


def _pinit(c: Certified, **change: object) -> tuple[purchase_pb2.PInitResponse, PInitState]:
    """A PInitRes as the merchant signs it, its TransIDs fields ``change``d."""
    _, card = _cardholder(c)
    request, state = build_pinit_request(card.pan, c.brand_id, b"lid-c", language="de-CH")
    trans = common_pb2.TransIDs(
        lid_c=b"lid-c", xid=new_id(), preq_date_unix_ms=now_ms(), language="de-CH"
    )
    for field, value in change.items():
        setattr(trans, field, value)
    gateway_kex = c.gateway.key_exchange_cert or b""
    data = purchase_pb2.PInitResData(
        content_type=PINIT_RES_CT, trans_ids=trans, rrpid=request.rrpid,
        chall_c=request.chall_c, chall_m=new_id(), pe_thumb=thumbprint(gateway_kex),
    ).SerializeToString()  # fmt: skip
    bundle = c.merchant.bundle()
    bundle.certificates.extend([gateway_kex, c.world.brand.gateway_ca.ca.der])
    m = c.merchant
    signed = sign(m.backend, m.signature_key, m.signature_thumb, PINIT_RES_CT, data, bundle)
    return purchase_pb2.PInitResponse(p_init_res=signed.SerializeToString()), state


def test_the_language_asked_for_and_a_current_date_are_accepted(ec: Certified) -> None:
    response, state = _pinit(ec)
    assert open_pinit_response(response, state, ec.trust()).trans_ids.language == "de-CH"


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"language": "en"}, ErrorCode.ERROR_CODE_WRAPPER_MSG_MISMATCH),
        ({"language": ""}, ErrorCode.ERROR_CODE_WRAPPER_MSG_MISMATCH),
        # Signed twice into the PReq: over the 1 MiB a client may send.
        ({"language": "x" * 300_000}, ErrorCode.ERROR_CODE_WRAPPER_MSG_MISMATCH),
        ({"pay_sys_id": "x" * 300_000}, ErrorCode.ERROR_CODE_DECODING_FAILURE),
        ({"pay_sys_id": "p"}, ErrorCode.ERROR_CODE_DECODING_FAILURE),
        ({"preq_date_unix_ms": 0}, ErrorCode.ERROR_CODE_MESSAGE_TOO_OLD),
        # Dates as offsets from the test's own moment, not the collection's: the suite
        # may reach this test minutes after collecting it.
        ({"date_offset_ms": -FRESHNESS_WINDOW_MS - 60_000}, ErrorCode.ERROR_CODE_MESSAGE_TOO_OLD),
        ({"date_offset_ms": FRESHNESS_WINDOW_MS + 60_000}, ErrorCode.ERROR_CODE_MESSAGE_TOO_NEW),
    ],
    ids=[
        "other-language", "no-language", "huge-language", "huge-pay-sys-id", "pay-sys-id",
        "date-zero", "date-too-old", "date-too-new",
    ],
)  # fmt: skip
def test_transids_fields_the_wallet_did_not_ask_for_are_refused(
    ec: Certified, change: dict[str, object], code: int
) -> None:
    if "date_offset_ms" in change:
        change = {"preq_date_unix_ms": now_ms() + int(change["date_offset_ms"])}  # type: ignore[call-overload]
    response, state = _pinit(ec, **change)
    reason = refused(code, open_pinit_response, response, state, ec.trust())
    assert reason.startswith(("PInitRes", "message date"))


def test_a_bundle_certificate_with_an_unknown_key_type_is_refused_as_such(
    ec: Certified,
) -> None:
    """The merchant CA's certificate, its key's algorithm OID altered, put first in a PRes
    bundle: tried as the signer's issuer, its key cannot be read (UnsupportedAlgorithm),
    so it signed nothing, and the path goes through the real one the bundle carries."""
    shop = _shop(ec)
    _, state = build_purchase_request(
        shop.cardholder, shop.offer, Order(b"1 book", eur(1999)), shop.card, shop.state
    )
    signed = parse_signed(
        build_purchase_response(ec.merchant, state.trans_ids, state.rrpid, state.chall_c, RECEIVED)
    )
    mca = ec.world.brand.merchant_ca.ca.der
    assert EC_KEY_OID in mca
    signed.bundle.certificates.insert(0, mca.replace(EC_KEY_OID, UNKNOWN_KEY_OID, 1))
    response = purchase_pb2.PurchaseResponse(p_res=signed.SerializeToString())
    # A fresh store: nothing cached, the look-alike is the first candidate tried.
    assert open_purchase_response(response, state, ec.trust()).trans_ids.xid == state.trans_ids.xid
    # The look-alike alone as the signer's issuer: no path, refused as such.
    signed.bundle.certificates.remove(mca)
    response = purchase_pb2.PurchaseResponse(p_res=signed.SerializeToString())
    refused(
        ErrorCode.ERROR_CODE_INVALID_CERTIFICATE,
        open_purchase_response, response, state, ec.trust(),
    )  # fmt: skip


def _mutate(rng: random.Random, data: bytes) -> bytes:
    """``data`` with one to four bytes changed, runs inserted or runs deleted."""
    b = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op, i = rng.randrange(3), rng.randrange(len(b))
        if op == 0:
            b[i] = rng.randrange(256)
        elif op == 1:
            b[i:i] = rng.randbytes(rng.randint(1, 8))
        else:
            del b[i : i + rng.randint(1, 8)]
    return bytes(b)


def test_a_mutated_pinitres_raises_only_the_protocols_errors(ec: Certified) -> None:
    """Whatever the bytes, the opener answers with a refusal (or, rarely, accepts a
    mutation that changed nothing signed): never a ValueError or UnsupportedAlgorithm
    from the parser below, which the wallet would not take for a refusal."""
    _, card = _cardholder(ec)
    request, state = build_pinit_request(card.pan, ec.brand_id, b"lid-c")
    trans = common_pb2.TransIDs(
        lid_c=b"lid-c", xid=new_id(), preq_date_unix_ms=now_ms(), language="en"
    )
    good = build_pinit_response(
        ec.merchant, request, trans, new_id(), ec.gateway.key_exchange_cert or b"",
        (ec.world.brand.gateway_ca.ca.der,),
    ).p_init_res  # fmt: skip
    rng = random.Random(11)
    refusals = 0
    for _ in range(FUZZ_ROUNDS):
        response = purchase_pb2.PInitResponse(p_init_res=_mutate(rng, good))
        try:
            open_pinit_response(response, state, ec.trust())
        except (ProtocolError, PeerError):
            refusals += 1
    assert refusals > FUZZ_ROUNDS // 2
