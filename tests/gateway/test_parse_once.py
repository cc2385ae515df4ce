"""The bank parses each envelope of a request once: setcore's opener reads whom it is
sealed to as it opens it, and the bank's credentials choose the key by that thumbprint
(``gateway.opening_keys``), on the bank as ``gateway.process.start_bank`` builds it.

Before, the bank read the thumbprint of every AuthReq, PI, CapReq and BatchAdminReq with
a parse of its own, and setcore parsed the same bytes again: a production bank always
reads ca.db for certificates renewed since it started, so none was spared.
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Callable
from types import ModuleType
from typing import TypeVar

import pytest
from google.protobuf.message import Message

from gateway import admin, settlement
from gateway import authorize as gateway_authorize
from setcore import encoding
from setcore.authorization import open_auth_response
from setcore.capture import CaptureItem, build_capture_request, open_capture_response
from setcore.gateway_admin import build_batch_admin_request, open_batch_admin_response
from setpay.v1 import authorization_pb2 as a
from setpay.v1 import capture_pb2 as c
from setpay.v1 import crypto_pb2, purchase_pb2
from setpay.v1 import gateway_admin_pb2 as g

from .actors import (
    Merchant,
    World,
    auth_request,
    eur,
    purchase,
    register_cardholder,
    register_merchant,
)

M = TypeVar("M", bound=Message)

SEALED_WITH_BAGGAGE = crypto_pb2.SealedWithBaggage.DESCRIPTOR.full_name
SEALED = crypto_pb2.Sealed.DESCRIPTOR.full_name
PI = purchase_pb2.PIDualSigned.DESCRIPTOR.full_name
PACKAGES = ("setcore", "gateway")


def ours() -> list[ModuleType]:
    """The setcore and gateway modules loaded."""
    return [m for n, m in list(sys.modules.items()) if n.partition(".")[0] in PACKAGES]


@pytest.fixture
def parses(monkeypatch: pytest.MonkeyPatch) -> Callable[[Callable[[], object]], Counter[str]]:
    """Runs a call, counting ``parse_strict`` by message type in every setcore and
    gateway module that uses it (each holds its own reference, imported by name)."""
    original = encoding.parse_strict
    counts: Counter[str] = Counter()

    def counting(message_class: type[M], data: bytes, **kwargs: bool) -> M:
        counts[message_class.DESCRIPTOR.full_name] += 1
        return original(message_class, data, **kwargs)

    for module in ours():
        if getattr(module, "parse_strict", None) is original:
            monkeypatch.setattr(module, "parse_strict", counting)

    def run(call: Callable[[], object]) -> Counter[str]:
        counts.clear()
        call()
        return Counter(counts)

    return run


def test_an_authorization_parses_the_authreq_and_the_pi_once(
    ec_world: World, ec_merchant: Merchant, parses: Callable[[Callable[[], object]], Counter[str]]
) -> None:
    bank = ec_world.running.bank
    assert bank.opening is not None and bank.opening.issued is not None  # as in production
    bought = purchase(ec_merchant, register_cardholder(ec_world), 300)
    request, state = auth_request(ec_merchant, bought)
    answers: list[bytes] = []
    counted = parses(lambda: answers.append(gateway_authorize.authorize(bank, request)))
    assert (counted[SEALED_WITH_BAGGAGE], counted[PI]) == (1, 1), counted
    result = open_auth_response(
        a.AuthorizeResponse(header=request.header, auth_res=answers[0]),
        ec_merchant.credentials, state, ec_merchant.trust,
        gateway_identity=ec_merchant.gateway_identity,
    )  # fmt: skip
    assert result.auth_code == a.AUTH_CODE_APPROVED

    # The capture that follows: its CapReq too (each capture token is a Sealed of the
    # gateway's own, opened with the token key, never with a key-exchange key).
    token = result.baggage.cap_token
    item = CaptureItem(bought.order.trans_ids, state.rrpid, token, eur(300))
    request_c, state_c = build_capture_request(
        ec_merchant.credentials, ec_merchant.gateway_kex.recipient(), [item],
        ec_merchant.merchant_id,
    )  # fmt: skip
    counted = parses(lambda: answers.append(settlement.capture(bank, request_c)))
    assert counted[SEALED_WITH_BAGGAGE] == 1, counted
    captured = open_capture_response(
        c.CaptureResponse(header=request_c.header, cap_res=answers[1]),
        ec_merchant.credentials, state_c, ec_merchant.trust,
        gateway_identity=ec_merchant.gateway_identity,
    )  # fmt: skip
    assert captured.data.cap_res_items[0].cap_res_payload.cap_code == a.CAP_CODE_SUCCESS


def test_a_batch_request_parses_its_envelope_once(
    ec_world: World, parses: Callable[[Callable[[], object]], Counter[str]]
) -> None:
    bank = ec_world.running.bank
    # A merchant of its own: no batch open yet, whatever the session captured before.
    ec_merchant = register_merchant(ec_world, "M-ec-parse-once")
    request, state = build_batch_admin_request(
        ec_merchant.credentials, ec_merchant.gateway_kex.recipient(), ec_merchant.merchant_id,
        g.BATCH_OPERATION_OPEN,
    )  # fmt: skip
    answers: list[bytes] = []
    counted = parses(lambda: answers.append(admin.batch_admin(bank, request)))
    assert counted[SEALED] == 1, counted
    result = open_batch_admin_response(
        g.BatchAdminResponse(header=request.header, batch_admin_res=answers[0]),
        ec_merchant.credentials, state, ec_merchant.trust,
        gateway_identity=ec_merchant.gateway_identity,
    )  # fmt: skip
    assert result.data.status == g.BATCH_ADMIN_STATUS_SUCCESS


def test_the_bank_parses_with_the_one_parse_strict() -> None:
    """The counting above reaches every module by the name it imported: a module that
    bound it otherwise (``import ... as``) would go uncounted, and the tests pass."""
    for module in ours():
        for attribute, value in vars(module).items():
            if value is encoding.parse_strict:
                assert attribute == "parse_strict", (module.__name__, attribute)
