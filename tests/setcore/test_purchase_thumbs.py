"""PInit's Thumbs (SET-PROTOCOL.md 2.6, 5.1, 5.2): the merchant bounds what a PInitReq
names and echoes it in the signed PInitRes; the wallet refuses an answer whose echo is
not exactly what it sent, thumbprints injected or stripped, with THUMBS_MISMATCH, as the
certificate protocol's requesters do. Today's wallet sends none, so the echo it takes is
an empty one."""

from __future__ import annotations

import pytest

from setcore.errors import ConfigurationError, ErrorCode
from setcore.freshness import new_id, now_ms
from setcore.purchase import (
    build_pinit_request,
    build_pinit_response,
    check_pinit_request,
    open_pinit_response,
)
from setcore.registration import MAX_THUMBS
from setcore.signed import parse_signed
from setpay.v1 import common_pb2, purchase_pb2

from .certified import Certified
from .refusals import refused
from .test_purchase import _cardholder

HELD = (b"\x01" * 32, b"\x02" * 32)


def _answer(c: Certified, request: purchase_pb2.PInitRequest) -> purchase_pb2.PInitResponse:
    """The merchant's PInitRes to ``request``, as ``build_pinit_response`` signs it."""
    trans = common_pb2.TransIDs(
        lid_c=request.lid_c, xid=new_id(), preq_date_unix_ms=now_ms(), language="en"
    )
    gateway = (c.gateway.key_exchange_cert or b"", (c.world.brand.gateway_ca.ca.der,))
    return build_pinit_response(c.merchant, request, trans, new_id(), *gateway)


def _signed_thumbs(response: purchase_pb2.PInitResponse) -> list[bytes]:
    """The Thumbs the merchant signed in its PInitRes."""
    data = purchase_pb2.PInitResData.FromString(parse_signed(response.p_init_res).tbs)
    return list(data.thumbs.thumbs)


def test_thumbs_sent_are_bounded_echoed_and_taken(ec: Certified) -> None:
    _, card = _cardholder(ec)
    request, state = build_pinit_request(card.pan, ec.brand_id, b"lid-c", thumbs=HELD)
    assert list(request.thumbs.thumbs) == list(HELD)
    assert state.thumbs == HELD
    check_pinit_request(request)
    response = _answer(ec, request)
    assert _signed_thumbs(response) == list(HELD)  # signed, in the order sent
    assert open_pinit_response(response, state, ec.trust()).trans_ids.lid_c == b"lid-c"


def test_a_wallet_sending_no_thumbs_sends_no_field_and_takes_an_empty_echo(
    ec: Certified,
) -> None:
    # Today's wallet: no Thumbs field at all (the bytes are those of before the echo).
    _, card = _cardholder(ec)
    request, state = build_pinit_request(card.pan, ec.brand_id, b"lid-c")
    assert not request.HasField("thumbs") and state.thumbs == ()
    check_pinit_request(request)
    response = _answer(ec, request)
    assert _signed_thumbs(response) == []
    open_pinit_response(response, state, ec.trust())


def test_a_pinitres_echoing_thumbs_never_sent_is_refused(ec: Certified) -> None:
    # The wallet sent none; the signed answer echoes one (injected on the way in).
    _, card = _cardholder(ec)
    request, state = build_pinit_request(card.pan, ec.brand_id, b"lid-c")
    injected = purchase_pb2.PInitRequest()
    injected.CopyFrom(request)
    injected.thumbs.thumbs.append(HELD[1])
    response = _answer(ec, injected)
    reason = refused(
        ErrorCode.ERROR_CODE_THUMBS_MISMATCH, open_pinit_response, response, state, ec.trust()
    )
    assert reason == "Thumbs not echoed"


@pytest.mark.parametrize(
    "echoed",
    [(), (HELD[0],), (HELD[1], HELD[0]), (*HELD, b"\x03" * 32)],
    ids=["none", "one", "reordered", "a third"],
)
def test_a_pinitres_stripping_or_changing_the_thumbs_sent_is_refused(
    ec: Certified, echoed: tuple[bytes, ...]
) -> None:
    # The wallet sent two; the signed answer echoes none, one, both reordered or a third.
    _, card = _cardholder(ec)
    request, state = build_pinit_request(card.pan, ec.brand_id, b"lid-c", thumbs=HELD)
    altered = purchase_pb2.PInitRequest()
    altered.CopyFrom(request)
    del altered.thumbs.thumbs[:]
    altered.thumbs.thumbs.extend(echoed)
    response = _answer(ec, altered)
    reason = refused(
        ErrorCode.ERROR_CODE_THUMBS_MISMATCH, open_pinit_response, response, state, ec.trust()
    )
    assert reason == "Thumbs not echoed"


@pytest.mark.parametrize(
    "thumbs",
    [[b"\x01" * 31], [b"\x01" * 33], [b""], [b"\x01" * 32] * (MAX_THUMBS + 1)],
    ids=["31 bytes", "33 bytes", "empty", "too many"],
)
def test_the_merchant_refuses_malformed_thumbs(ec: Certified, thumbs: list[bytes]) -> None:
    _, card = _cardholder(ec)
    request, _ = build_pinit_request(card.pan, ec.brand_id, b"lid-c")
    request.thumbs.thumbs.extend(thumbs)
    reason = refused(ErrorCode.ERROR_CODE_DECODING_FAILURE, check_pinit_request, request)
    assert reason == "malformed Thumbs"


def test_the_merchant_takes_as_many_thumbs_as_a_requester_may_send(ec: Certified) -> None:
    _, card = _cardholder(ec)
    request, _ = build_pinit_request(
        card.pan, ec.brand_id, b"lid-c", thumbs=[b"\x01" * 32] * MAX_THUMBS
    )
    check_pinit_request(request)


def test_the_wallet_sends_no_more_thumbs_than_a_merchant_takes(ec: Certified) -> None:
    _, card = _cardholder(ec)
    with pytest.raises(ConfigurationError):
        build_pinit_request(
            card.pan, ec.brand_id, b"lid-c", thumbs=[b"\x01" * 32] * (MAX_THUMBS + 1)
        )


@pytest.mark.parametrize("length", [0, 20, 31, 33])
def test_a_thumbprint_of_another_length_is_the_senders_error(ec: Certified, length: int) -> None:
    """A wallet naming a thumbprint the merchant would refuse (a SHA-1 one, 20 bytes, as
    SET's own thumbprints were) is told so itself, before anything is sent, not by the
    merchant's DECODING_FAILURE."""
    _, card = _cardholder(ec)
    with pytest.raises(ConfigurationError, match="a thumbprint is 32 bytes"):
        build_pinit_request(card.pan, ec.brand_id, b"lid-c", thumbs=(b"\x03" * length,))
