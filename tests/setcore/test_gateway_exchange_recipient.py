"""Every merchant request names, under the merchant's signature, the gateway certificate it
is sealed to (SET-PROTOCOL.md 9.3.3; ``gateway_exchange.check_rr_tags``).

Without it, whoever can open the envelope (the gateway, or a thief of its key-exchange
key) could seal the merchant's signed request again to another gateway key that accepts
the merchant. The bank here holds two key-exchange certificates, as after a renewal
(``gateway.opening_keys``): the one it had, which merchants may still seal to, and a new
one. Each merchant request is tried sealed to either, re-sealed from one to the other,
and signed naming none.
"""

from __future__ import annotations

import dataclasses
import hmac
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from google.protobuf.message import Message

from hsm.base import KeyHandle, KeyUsage
from setcore.auth_reversal import build_auth_reversal_request, open_auth_reversal_request
from setcore.authorization import build_auth_request, open_auth_request
from setcore.cap_rev_or_cred import CapRevOrCredItem, build_credit_request, open_credit_request
from setcore.capture import CaptureItem, build_capture_request, open_capture_request
from setcore.credentials import Credentials
from setcore.encoding import thumbprint
from setcore.envelope import Recipient, open_sealed, seal
from setcore.errors import ErrorCode
from setcore.freshness import new_id
from setcore.gateway_admin import build_batch_admin_request, open_batch_admin_request
from setcore.pki import CertificateUsage, issue_gateway
from setcore.pki.issuance import kem_for
from setcore.signed import parse_signed, sign
from setpay.v1 import authorization_pb2, capture_pb2, crypto_pb2, gateway_admin_pb2

from .certified import Certified, eur, refused, trans_ids

WRONG_RECIPIENT = ErrorCode.ERROR_CODE_WRONG_RECIPIENT


@dataclass(frozen=True)
class Renewed:
    """The bank after a renewal: opens what is sealed to its earlier certificate or its new."""

    c: Certified
    earlier: Recipient
    new: Recipient
    gateway: Credentials


@pytest.fixture
def renewed(ec_certified: Certified) -> Renewed:
    c, world = ec_certified, ec_certified.world
    key = world.key(KeyUsage.KEY_EXCHANGE)
    assert key.kem is not None
    cert = issue_gateway(
        world.brand.gateway_ca.ca, key.public_key, CertificateUsage.KEY_EXCHANGE, "gateway-1",
        kem=kem_for(key),
    )  # fmt: skip
    earlier = c.gateway_kex
    new = Recipient(key.public_key, thumbprint(cert), key.kem)
    earlier_key, _ = c.gateway.require_key_exchange()

    def choose(thumb: bytes) -> tuple[KeyHandle, bytes]:
        if hmac.compare_digest(thumb, earlier.cert_thumb):
            return earlier_key, earlier.cert_thumb
        return key, new.cert_thumb

    gateway = dataclasses.replace(c.gateway, key_exchange_key=key, key_exchange_cert=cert)
    return Renewed(c, earlier, new, gateway.choosing_key_exchange(choose))


@dataclass(frozen=True)
class Kind:
    """One merchant request: how the merchant builds it, how the gateway opens it, and
    where its envelope and signed RRTags are."""

    build: Callable[[Certified, Recipient], Any]
    open: Callable[[Renewed, Any], object]
    field: str
    baggage: bool
    data: type[Message]
    tags: Callable[[Any], Any]


def _auth(c: Certified, gateway: Recipient) -> Any:
    # The gateway's first step opens the AuthReq alone: the PI is only carried here.
    ids, amount = trans_ids(), eur(1999)
    return build_auth_request(
        c.merchant, gateway, b"the PI", ids, b"the OIData", b"1 book", amount, new_id(),
        amount, c.merchant_id,
    )[0]  # fmt: skip


def _capture(c: Certified, gateway: Recipient) -> Any:
    ids, auth_rrpid = trans_ids(), new_id()
    item = CaptureItem(ids, auth_rrpid, c.token(ids.xid, auth_rrpid), eur(700))
    return build_capture_request(c.merchant, gateway, [item], c.merchant_id)[0]


def _credit(c: Certified, gateway: Recipient) -> Any:
    ids, auth_rrpid = trans_ids(), new_id()
    token = c.token(ids.xid, auth_rrpid)
    item = CapRevOrCredItem(ids, auth_rrpid, token, eur(700), new_batch_id="", original_rrpid=b"")
    return build_credit_request(c.merchant, gateway, [item], c.merchant_id)[0]


def _auth_reversal(c: Certified, gateway: Recipient) -> Any:
    ids, auth_rrpid = trans_ids(), new_id()
    token = c.token(ids.xid, auth_rrpid)
    return build_auth_reversal_request(
        c.merchant, gateway, ids, auth_rrpid, token, eur(500), c.merchant_id
    )[0]


def _batch_admin(c: Certified, gateway: Recipient) -> Any:
    close = gateway_admin_pb2.BATCH_OPERATION_CLOSE
    return build_batch_admin_request(c.merchant, gateway, c.merchant_id, close, batch_id="b-7")[0]


KINDS = {
    "AuthReq": Kind(
        _auth, lambda r, q: open_auth_request(q, r.gateway, r.c.trust()), "auth_req", True,
        authorization_pb2.AuthReqData, lambda d: d.auth_tags.auth_rr_tags,
    ),
    "CapReq": Kind(
        _capture, lambda r, q: open_capture_request(q, r.gateway, r.c.trust(), r.c.token_key),
        "cap_req", True, capture_pb2.CapReqData, lambda d: d.cap_rr_tags,
    ),
    "CredReq": Kind(
        _credit, lambda r, q: open_credit_request(q, r.gateway, r.c.trust(), r.c.token_key),
        "cred_req", True, capture_pb2.CapRevOrCredReqData, lambda d: d.rr_tags,
    ),
    "AuthRevReq": Kind(
        _auth_reversal,
        lambda r, q: open_auth_reversal_request(q, r.gateway, r.c.trust(), r.c.token_key),
        "auth_rev_req", True, authorization_pb2.AuthRevReqData, lambda d: d.auth_rev_rr_tags,
    ),
    "BatchAdminReq": Kind(
        _batch_admin, lambda r, q: open_batch_admin_request(q, r.gateway, r.c.trust()),
        "batch_admin_req", False, gateway_admin_pb2.BatchAdminReqData,
        lambda d: d.batch_admin_rr_tags,
    ),
}  # fmt: skip


def _replace_sealed(kind: Kind, request: Any, edit: Callable[[crypto_pb2.Sealed], None]) -> None:
    """Edit the request's Sealed in place, whether it travels with baggage or alone."""
    raw = getattr(request, kind.field)
    if kind.baggage:
        envelope = crypto_pb2.SealedWithBaggage.FromString(raw)
        edit(envelope.sealed)
        setattr(request, kind.field, envelope.SerializeToString())
    else:
        sealed = crypto_pb2.Sealed.FromString(raw)
        edit(sealed)
        setattr(request, kind.field, sealed.SerializeToString())


def _opened(r: Renewed, sealed: crypto_pb2.Sealed) -> bytes:
    """What the holder of the key the request is sealed to reads: the merchant's Signed."""
    key, thumb = r.gateway.key_exchange_for(sealed.recipient_cert_thumb)
    return open_sealed(sealed, r.gateway.backend, key, thumb, sealed.content_type).plaintext


def _resealed_to(r: Renewed, to: Recipient) -> Callable[[crypto_pb2.Sealed], None]:
    """The attack: the merchant's signed request, untouched, sealed again to ``to``."""

    def edit(sealed: crypto_pb2.Sealed) -> None:
        plaintext = _opened(r, sealed)
        sealed.CopyFrom(
            seal(sealed.content_type, plaintext, to, xid=sealed.xid, rrpid=sealed.rrpid)
        )

    return edit


def _signed_naming_none(r: Renewed, kind: Kind) -> Callable[[crypto_pb2.Sealed], None]:
    """The merchant itself signs RRTags naming no gateway, sealed where they were."""

    def edit(sealed: crypto_pb2.Sealed) -> None:
        signed = parse_signed(_opened(r, sealed))
        link = crypto_pb2.Link.FromString(signed.tbs) if kind.baggage else None
        data = kind.data.FromString(signed.tbs if link is None else link.t1)
        kind.tags(data).ClearField("recipient_cert_thumb")
        tbs = data.SerializeToString()
        if link is not None:
            link.t1 = tbs
            tbs = link.SerializeToString()
        m = r.c.merchant
        resigned = sign(m.backend, m.signature_key, m.signature_thumb, signed.content_type, tbs,
                        m.bundle())  # fmt: skip
        to = r.earlier if sealed.recipient_cert_thumb == r.earlier.cert_thumb else r.new
        sealed.CopyFrom(
            seal(sealed.content_type, resigned.SerializeToString(), to, xid=sealed.xid,
                 rrpid=sealed.rrpid)
        )  # fmt: skip

    return edit


@pytest.mark.parametrize("name", sorted(KINDS))
@pytest.mark.parametrize("sealed_to", ["earlier", "new"])
def test_a_request_sealed_to_either_certificate_of_the_bank_names_it_and_passes(
    renewed: Renewed, name: str, sealed_to: str
) -> None:
    # A merchant still holding the bank's certificate from before the renewal seals to
    # it, and names it: the gateway opens it with the key it kept.
    kind, gateway = KINDS[name], getattr(renewed, sealed_to)
    request = kind.build(renewed.c, gateway)
    kind.open(renewed, request)


@pytest.mark.parametrize("name", sorted(KINDS))
@pytest.mark.parametrize(("signed_for", "sealed_to"), [("earlier", "new"), ("new", "earlier")])
def test_a_request_signed_for_one_certificate_and_sealed_to_another_is_refused(
    renewed: Renewed, name: str, signed_for: str, sealed_to: str
) -> None:
    kind = KINDS[name]
    request = kind.build(renewed.c, getattr(renewed, signed_for))
    _replace_sealed(kind, request, _resealed_to(renewed, getattr(renewed, sealed_to)))
    reason = refused(WRONG_RECIPIENT, kind.open, renewed, request)
    assert "signed for another gateway" in reason


@pytest.mark.parametrize("name", sorted(KINDS))
def test_a_request_naming_no_gateway_certificate_is_refused(renewed: Renewed, name: str) -> None:
    kind = KINDS[name]
    request = kind.build(renewed.c, renewed.new)
    _replace_sealed(kind, request, _signed_naming_none(renewed, kind))
    reason = refused(WRONG_RECIPIENT, kind.open, renewed, request)
    assert "signed for another gateway" in reason
