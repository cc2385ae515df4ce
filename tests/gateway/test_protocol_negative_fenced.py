"""Bytes the gateway refused as too old, and so fenced in the ledger, keep their own
refusal when they are sent again and a check refuses them for another reason.

``gateway.servicer`` looks a refused request up in the ledger (``_recorded_answer``): a
retry of bytes already decided gets its stored answer. The ledger's lookup of fenced
bytes raises ``RequestFenced``, which on its own is answered MESSAGE_TOO_OLD; the
servicer takes it as "nothing recorded", so the check that refused the bytes this time
names the refusal. Otherwise a merchant would be told its request is too old when its
certificate has been revoked since, and would build it afresh (``clients.merchant.renewal``)
instead of seeing to the real cause. The checks made before a request's date is read are
those of its envelope and of the merchant's signature and chain: a revocation is the
realistic case.
"""

from __future__ import annotations

import pytest

from setcore.encoding import thumbprint
from setcore.freshness import FRESHNESS_WINDOW_MS
from tests.clocks import clocks_moved

from .actors import World, auth_request, purchase, register_cardholder, register_merchant
from .test_authorize_checks import _pending, _refused


def test_fenced_bytes_of_a_merchant_revoked_since_are_refused_as_revoked(
    ec_world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    merchant = register_merchant(ec_world, "m-fenced-then-revoked")
    cardholder = register_cardholder(ec_world)
    request, state = auth_request(merchant, purchase(merchant, cardholder, 250))
    clocks_moved(monkeypatch, 2 * FRESHNESS_WINDOW_MS)
    assert _refused(ec_world, merchant, request, state) == "ERROR_CODE_MESSAGE_TOO_OLD"
    ec_world.running.authority.revoke(thumb=thumbprint(merchant.credentials.signature_cert))
    assert _refused(ec_world, merchant, request, state) == "ERROR_CODE_REVOKED_CERTIFICATE"
    assert _pending(ec_world, cardholder) == 0


def test_a_refused_request_reusing_a_decided_rrpid_keeps_its_own_refusal(
    ec_world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The other catch of the same lookup: the RRPID holds another request's answer
    # (RrpidReused), and these bytes fail a check of their own, which names the refusal.
    merchant = register_merchant(ec_world, "m-reused-then-refused")
    cardholder = register_cardholder(ec_world)
    request, _ = auth_request(merchant, purchase(merchant, cardholder, 250))
    ec_world.gateway.Authorize(request)  # decided: approved, 250 held
    rrpid = request.header.rrpid
    zero, state = auth_request(merchant, purchase(merchant, cardholder, 250), 0, rrpid=rrpid)
    assert _refused(ec_world, merchant, zero, state) == "ERROR_CODE_DECODING_FAILURE"
    assert _pending(ec_world, cardholder) == 250
