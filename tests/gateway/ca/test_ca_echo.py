"""The CA's reply echoes a request's RRPID only where it has an RRPID's size.

The CA port takes calls from anyone, without a client certificate. Echoed as sent, in the
reply's header and again in the signed Error, an RRPID of hundreds of kilobytes made a
reply past the message limit: gRPC refused to send it and the caller got
RESOURCE_EXHAUSTED, not the SET Error meant for it (``setcore.echoed_ids``, as the gateway
and the merchant echo). Real gRPC CA on port 0, the EC bank's keys.

Every call, every kind of answer: a refusal (the CA's own, of a request it cannot read), a
failure answered as a bug, and a normal answer. For the last the CA's work is stood in
for: the CA refuses a CardCInit or Me-AqCInit whose RRPID has another size, so only the
routing header of a RegForm, Cert or CertInq could bring one to a normal answer; the
servicer echoes it the same way whatever the work returned, which the stand-in shows for
every call alike.
"""

from __future__ import annotations

import logging
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
# The CertificateAuthority's method each call's answer comes from.
WORK = {
    "CardCInit": "card_c_init",
    "MeAqCInit": "me_aq_c_init",
    "RegForm": "reg_form",
    "Cert": "cert",
    "CertInq": "cert_inq",
}
# What the stood-in work answers with: the body of a normal answer.
BODY = b"the CA's answer"
# Each response's body field (its oneof ``result`` holds it or the Error).
BODY_FIELDS = {
    "CardCInit": "card_c_init_res",
    "MeAqCInit": "me_aq_c_init_res",
    "RegForm": "reg_form_res",
    "Cert": "cert_res",
    "CertInq": "cert_res",
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


def _answered_normally(request: object) -> bytes:
    return BODY


def _a_bug(request: object) -> bytes:
    raise RuntimeError("a bug in the CA's work")


@pytest.mark.parametrize("call", sorted(CALLS))
@pytest.mark.parametrize(("size", "echoed"), [(ID_BYTES, True), (OVERSIZE, False)])
def test_a_normal_answer_echoes_the_rrpid_only_at_its_size(
    ec_bank: Bank, monkeypatch: pytest.MonkeyPatch, call: str, size: int, echoed: bool
) -> None:
    monkeypatch.setattr(ec_bank.ca, WORK[call], _answered_normally)
    sent = b"r" * size
    reply = CALLS[call](ec_bank, sent)
    assert reply.WhichOneof("result") == BODY_FIELDS[call]
    assert getattr(reply, BODY_FIELDS[call]) == BODY
    assert reply.header.rrpid == (sent if echoed else b"")


@pytest.mark.parametrize("call", sorted(CALLS))
@pytest.mark.parametrize(("size", "echoed"), [(ID_BYTES, True), (OVERSIZE, False)])
def test_a_bug_answered_echoes_the_rrpid_only_at_its_size(
    ec_bank: Bank,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    call: str,
    size: int,
    echoed: bool,
) -> None:
    """A failure answered as a bug is a signed UNSPECIFIED_FAILURE Error, named as a
    refusal is."""
    monkeypatch.setattr(ec_bank.ca, WORK[call], _a_bug)
    sent = b"r" * size
    with caplog.at_level(logging.ERROR, logger="gateway.ca.servicer"):
        reply = CALLS[call](ec_bank, sent)
    assert reply.WhichOneof("result") == "error"
    assert "unexpected failure answering" in caplog.text  # the bug's rung, not a refusal
    assert reply.header.rrpid == (sent if echoed else b"")
    assert (sent in reply.error.SerializeToString()) == echoed
