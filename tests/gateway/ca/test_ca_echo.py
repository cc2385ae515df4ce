"""The CA's reply echoes a request's RRPID only where it has an RRPID's size.

The CA port takes calls from anyone, without a client certificate. Echoed as sent, in the
reply's header and again in the signed Error, an RRPID of hundreds of kilobytes made a
reply past the message limit: gRPC refused to send it and the caller got
RESOURCE_EXHAUSTED, not the SET Error meant for it (``setcore.echoed_ids``, as the gateway
and the merchant echo). Real gRPC CA on port 0, the EC bank's keys.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from google.protobuf.message import Message

from setcore.freshness import ID_BYTES
from setpay.v1 import common_pb2
from setpay.v1 import registration_pb2 as r

from .conftest import Bank

# Over half the message limit (conftest.MAX_MESSAGE_BYTES, 1 MiB), under all of it: the
# request is taken, and echoed twice it would not fit.
OVERSIZE = 600_000


def _card_c_init(bank: Bank, rrpid: bytes) -> Message:
    return bank.stub.CardCInit(r.CardCInitRequest(rrpid=rrpid, brand_id="no-such-brand"))


def _me_aq_c_init(bank: Bank, rrpid: bytes) -> Message:
    return bank.stub.MeAqCInit(r.MeAqCInitRequest(rrpid=rrpid, brand_id="no-such-brand"))


def _reg_form(bank: Bank, rrpid: bytes) -> Message:
    request = r.RegFormRequest(header=common_pb2.Header(rrpid=rrpid), reg_form_req=b"garbage")
    return bank.stub.RegForm(request)


def _cert(bank: Bank, rrpid: bytes) -> Message:
    request = r.CertRequest(header=common_pb2.Header(rrpid=rrpid), cert_req=b"garbage")
    return bank.stub.Cert(request)


def _cert_inq(bank: Bank, rrpid: bytes) -> Message:
    request = r.CertInqRequest(header=common_pb2.Header(rrpid=rrpid), cert_inq_req=b"garbage")
    return bank.stub.CertInq(request)


CALLS: dict[str, Callable[[Bank, bytes], Message]] = {
    "CardCInit": _card_c_init,
    "MeAqCInit": _me_aq_c_init,
    "RegForm": _reg_form,
    "Cert": _cert,
    "CertInq": _cert_inq,
}


@pytest.mark.parametrize("call", sorted(CALLS))
@pytest.mark.parametrize(("size", "echoed"), [(ID_BYTES, True), (OVERSIZE, False)])
def test_a_refusal_echoes_the_rrpid_only_at_its_size(
    ec_bank: Bank, call: str, size: int, echoed: bool
) -> None:
    sent = b"r" * size
    reply = CALLS[call](ec_bank, sent)
    assert reply.WhichOneof("result") == "error"  # the SET Error meant for it
    assert reply.header.rrpid == (sent if echoed else b"")
    assert (sent in reply.error.SerializeToString()) == echoed
