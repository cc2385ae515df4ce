"""The Cardholder CA's own checks of a RegFormReq (SET-PROTOCOL.md 4.1, 3.1), each broken
alone: the RegFormReqTBE is sealed to the CA with PANOnly in the extra part, and the CA
holds them together only by the digest the TBE carries and the RRPID both name.

Each request is built by the wallet's own ``build_reg_form_request`` with its sealing
rewritten (``_tampered``): the envelope and its header are sound, only the one field the
check is about is another."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from setcore import registration_cardholder
from setcore.encoding import digest
from setcore.errors import ErrorCode
from setcore.freshness import new_id
from setcore.pan import PAN
from setcore.registration_cardholder import PAN_ONLY_CT, build_reg_form_request
from setcore.registration_cardholder_ca import open_reg_form_request
from setpay.v1 import registration_pb2

from .pki.conftest import TEST_PAN, World
from .refusals import refused
from .registration_support import _ca, _contact, registration_world

Change = Callable[[registration_pb2.RegFormReqTBE, registration_pb2.PANOnly], None]


@pytest.fixture(scope="module")
def world() -> World:
    return registration_world()


def _tampered(
    world: World, monkeypatch: pytest.MonkeyPatch, change: Change, *, relink: bool = True
) -> registration_pb2.RegFormRequest:
    """A RegFormReq whose TBE and PANOnly ``change`` rewrote before sealing; ``relink``:
    the TBE's digest of PANOnly made again over the rewritten one."""
    _, contact = _contact(world)
    sealing = getattr(registration_cardholder, "seal")  # noqa: B009 - not exported

    def seal(content_type, tbe_bytes, recipient, *, rrpid, extra):  # type: ignore[no-untyped-def]
        tbe = registration_pb2.RegFormReqTBE.FromString(tbe_bytes)
        pan_only = registration_pb2.PANOnly.FromString(extra[1])
        change(tbe, pan_only)
        pan_only_bytes = pan_only.SerializeToString()
        if relink:
            tbe.dd_extra = digest(PAN_ONLY_CT, pan_only_bytes)
        return sealing(
            content_type, tbe.SerializeToString(), recipient, rrpid=rrpid,
            extra=(extra[0], pan_only_bytes),
        )  # fmt: skip

    with monkeypatch.context() as patched:
        patched.setattr(registration_cardholder, "seal", seal)
        request, _ = build_reg_form_request(contact, PAN(TEST_PAN), b"lid-ee")
    return request


def test_the_untampered_request_opens(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    request = _tampered(world, monkeypatch, lambda tbe, pan_only: None)
    assert open_reg_form_request(request, _ca(world)).pan.reveal() == TEST_PAN


def test_a_pan_only_other_than_the_linked_one_is_refused(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    def other_card(tbe: registration_pb2.RegFormReqTBE, pan_only: registration_pb2.PANOnly) -> None:
        pan_only.ex_nonce = new_id()  # the TBE keeps the digest of the PANOnly it was built with

    request = _tampered(world, monkeypatch, other_card, relink=False)
    reason = refused(
        ErrorCode.ERROR_CODE_DIGEST_MISMATCH, open_reg_form_request, request, _ca(world)
    )
    assert reason == "PANOnly is not the linked one"


def test_a_tbe_naming_another_rrpid_than_its_envelope_is_refused(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    def other_rrpid(
        tbe: registration_pb2.RegFormReqTBE, pan_only: registration_pb2.PANOnly
    ) -> None:
        tbe.rrpid = new_id()

    request = _tampered(world, monkeypatch, other_rrpid)
    reason = refused(
        ErrorCode.ERROR_CODE_WRAPPER_MSG_MISMATCH, open_reg_form_request, request, _ca(world)
    )
    assert reason == "envelope RRPID differs"


# Built from parts: no run of card-number length is written out (a Luhn failure, and
# one with a letter among its digits).
@pytest.mark.parametrize("pan", ["", "4111", "4111" * 3 + "1112", "4111" * 3 + "11x1"])
def test_a_pan_only_holding_no_card_number_is_refused(
    world: World, monkeypatch: pytest.MonkeyPatch, pan: str
) -> None:
    def no_card(tbe: registration_pb2.RegFormReqTBE, pan_only: registration_pb2.PANOnly) -> None:
        pan_only.pan = pan

    request = _tampered(world, monkeypatch, no_card)
    reason = refused(
        ErrorCode.ERROR_CODE_DECODING_FAILURE, open_reg_form_request, request, _ca(world)
    )
    assert reason == "PANOnly holds no card number"
