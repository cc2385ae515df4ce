"""The CA's check of a CertInqReq's plaintext header (SET-PROTOCOL.md 3.1).

A CertInqReq is read before it is verified (the CA finds the key that signed it by its
LIDs), so ``read_cert_inquiry`` is where its header is compared with the signed RRPID;
every other registration request is covered by ``test_registration_headers``.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from setcore.errors import ErrorCode
from setcore.freshness import new_id
from setcore.pan import PAN
from setcore.purchase import header
from setcore.registration_cardholder import build_card_cert_inquiry, build_card_cert_request
from setcore.registration_certreq import read_cert_inquiry
from setcore.registration_merchant import build_merchant_cert_inquiry
from setpay.v1 import common_pb2, registration_pb2

from .pki.conftest import TEST_EXPIRY, TEST_PAN, World
from .refusals import refused
from .registration_support import _form, _key, _merchant_cert_request, registration_world

# A header naming another RRPID, or any XID or LID: a registration has none of its own.
FOREIGN = {
    "another RRPID": lambda rrpid: header(rrpid=new_id()),
    "an XID": lambda rrpid: header(rrpid=rrpid, xid=new_id()),
    "an XID alone": lambda rrpid: header(xid=new_id()),
    "a LID-C": lambda rrpid: header(rrpid=rrpid, lid_c=b"lid-ee"),
    "a LID-M": lambda rrpid: header(rrpid=rrpid, lid_m=b"lid-ee"),
}


@pytest.fixture(scope="module")
def world() -> World:
    return registration_world()


def _card_inquiry(world: World) -> registration_pb2.CertInqRequest:
    """A cardholder's CertInqReq about a CertReq it sent."""
    _, reg, form = _form(world)
    _, state = build_card_cert_request(
        world.backend, _key(world), form, reg, PAN(TEST_PAN), TEST_EXPIRY
    )
    inquiry, _ = build_card_cert_inquiry(world.backend, state)
    return inquiry


def _merchant_inquiry(world: World) -> registration_pb2.CertInqRequest:
    """A merchant's CertInqReq about a CertReq it sent."""
    inquiry, _ = build_merchant_cert_inquiry(world.backend, _merchant_cert_request(world).state)
    return inquiry


Inquiry = Callable[[World], registration_pb2.CertInqRequest]

INQUIRIES = pytest.mark.parametrize(
    "inquiry_of", [_card_inquiry, _merchant_inquiry], ids=["cardholder", "merchant"]
)


def _read_under(inquiry: registration_pb2.CertInqRequest, plain: common_pb2.Header) -> object:
    """The CA reading ``inquiry`` sent under the plaintext header ``plain``."""
    sent = registration_pb2.CertInqRequest()
    sent.CopyFrom(inquiry)
    sent.header.CopyFrom(plain)
    return read_cert_inquiry(sent)


@INQUIRIES
def test_a_cert_inquiry_is_read_under_its_own_header_or_none(
    world: World, inquiry_of: Inquiry
) -> None:
    inquiry = inquiry_of(world)
    tbs, _ = read_cert_inquiry(inquiry)
    assert inquiry.header.rrpid == tbs.rrpid
    _read_under(inquiry, header())


@INQUIRIES
@pytest.mark.parametrize("naming", list(FOREIGN), ids=list(FOREIGN))
def test_a_cert_inquiry_header_naming_other_ids_is_refused(
    world: World, inquiry_of: Inquiry, naming: str
) -> None:
    inquiry = inquiry_of(world)
    plain = FOREIGN[naming](inquiry.header.rrpid)
    reason = refused(ErrorCode.ERROR_CODE_WRAPPER_MSG_MISMATCH, _read_under, inquiry, plain)
    assert reason == "header ids differ from signed ones"
