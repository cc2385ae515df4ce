"""The merchant's revocation data past its window (its CA unreachable longer than the
BCI's window): the gateway's certificates are not asked for while it lasts, since no
PCertRes could be judged by it, and asked for at the first use once it is current.

Such a failure is not held off (``held_off``): sent, every use after the hourly TTL
would cost a PCertReq the gateway signs an answer to and the merchant then refuses.
"""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest

from clients.merchant.config import AnswerMode
from clients.merchant.gateway_keys import (
    GATEWAY_CERTIFICATES_TTL,
    GatewayKeys,
    revocation_current,
)
from setcore.gateway_admin import GatewayCertificate
from setcore.pki.bci import RevocationUnavailable
from setcore.pki.issuance import utc
from setcore.pki.truststore import TrustStore
from tests.clients.conftest import MerchantFactory
from tests.clients.merchant.test_gateway_keys import Clock

# A minute of 10 PInit/s: the feed asks the CA at most once a minute.
USES, EVERY = 600, 0.1


def _bci_ended(trust: TrustStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """The trust store's BCI as it was, its window ended a minute ago (the feed stalled);
    no chain answer cached from while it was current."""
    held = trust.revocation
    assert held is not None
    ended = utc(None) - timedelta(minutes=1)
    window = held.not_after - held.not_before
    stale = dataclasses.replace(held, not_before=ended - window, not_after=ended)
    monkeypatch.setattr(trust, "_revocation", stale)
    trust._chains.clear()


def test_no_pcertreq_leaves_while_the_revocation_data_is_past_its_window(
    make_merchant: MerchantFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The serving merchant's own fetch, its hour ended with the BCI past its window:
    every use fails at once with nothing sent; the data current again, the next use
    fetches."""
    merchant = make_merchant("m-keys-stale-bci", AnswerMode.ORDER_RECEIVED)
    sent: list[str] = []
    ask = merchant.gateway.gateway_certificates

    def counted(brand_id: str) -> GatewayCertificate:
        sent.append(brand_id)
        return ask(brand_id)

    monkeypatch.setattr(merchant.gateway, "gateway_certificates", counted)
    clock = Clock()
    keys = GatewayKeys(merchant.gateway_keys._fetch, clock=clock, trust=merchant.trust)
    keys.current()
    assert len(sent) == 1
    held = merchant.trust.revocation
    _bci_ended(merchant.trust, monkeypatch)
    clock.now += GATEWAY_CERTIFICATES_TTL.total_seconds() + 1
    for _ in range(USES):
        with pytest.raises(RevocationUnavailable) as refused:
            keys.current()
        clock.now += EVERY
    assert len(sent) == 1, f"{len(sent) - 1} PCertReqs sent with stale revocation data"
    assert "not sent" in str(refused.value)
    monkeypatch.setattr(merchant.trust, "_revocation", held)  # the feed caught up
    assert keys.current().key_exchange is not None
    assert len(sent) == 2


def test_revocation_current_judges_the_bci_window(
    make_merchant: MerchantFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    merchant = make_merchant("m-keys-bci-window", AnswerMode.ORDER_RECEIVED)
    held = merchant.trust.revocation
    assert held is not None
    revocation_current(merchant.trust)  # current: nothing raised
    revocation_current(merchant.trust, held.not_after)  # its last instant still covered
    with pytest.raises(RevocationUnavailable, match="ended at"):
        revocation_current(merchant.trust, held.not_after + timedelta(seconds=1))
    _bci_ended(merchant.trust, monkeypatch)
    with pytest.raises(RevocationUnavailable, match="ended at"):
        revocation_current(merchant.trust)


def test_revocation_current_refuses_a_store_with_no_revocation_data(
    make_merchant: MerchantFactory,
) -> None:
    merchant = make_merchant("m-keys-no-bci", AnswerMode.ORDER_RECEIVED)
    bare = TrustStore(merchant.trust.root_der)
    with pytest.raises(RevocationUnavailable, match="no BrandCRLIdentifier"):
        revocation_current(bare)
