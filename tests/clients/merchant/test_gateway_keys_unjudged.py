"""Revocation data that could not judge a PCertRes for another reason than a BCI past its
window (a CRL past its nextUpdate, a BCI listing no CRL for the gateway's CA): the one
PCertReq that learnt so is the last until the feed installs other data (``JudgedFetch``).

Before, each use after the hourly TTL sent one, the gateway signing an answer the merchant
could only refuse: 50 PCertReqs for 50 uses.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import timedelta

import pytest

from clients.errors import TransportError
from clients.merchant.config import AnswerMode
from clients.merchant.gateway_keys import GATEWAY_CERTIFICATES_TTL, GatewayKeys, JudgedFetch
from clients.merchant.runtime import Merchant
from setcore.gateway_admin import GatewayCertificate
from setcore.pki.bci import RevocationSnapshot, RevocationUnavailable
from setcore.pki.issuance import utc
from setcore.pki.roles import PAYMENT_GATEWAY, CertificateUsage
from setcore.pki.truststore import TrustStore
from tests.clients.conftest import MerchantFactory
from tests.clients.merchant.gateway_keys_support import scripted
from tests.clients.merchant.test_gateway_keys import Clock

USES = 50
NOT_SERVED = GatewayCertificate("setpay", "", 0, None, None, ())
Spoil = Callable[[TrustStore], RevocationSnapshot]


def _installed(trust: TrustStore, snapshot: RevocationSnapshot, mp: pytest.MonkeyPatch) -> None:
    """``snapshot`` held as if the feed had installed it (no chain answer cached)."""
    mp.setattr(trust, "_revocation", snapshot)
    trust._chains.clear()


def _crls_lapsed(trust: TrustStore) -> RevocationSnapshot:
    """The BCI held, current, each CRL's nextUpdate a minute past."""
    held = trust.revocation
    assert held is not None
    lapsed = utc(None) - timedelta(minutes=1)
    by_issuer = {t: dataclasses.replace(s, next_update=lapsed) for t, s in held.by_issuer.items()}
    return dataclasses.replace(held, by_issuer=by_issuer)


def _counted(merchant: Merchant, mp: pytest.MonkeyPatch) -> list[str]:
    """The PCertReqs the merchant's fetch sends from now on."""
    sent: list[str] = []
    ask = merchant.gateway.gateway_certificates

    def counted(brand_id: str, bin_: str = "") -> GatewayCertificate:
        sent.append(brand_id)
        return ask(brand_id, bin_)

    mp.setattr(merchant.gateway, "gateway_certificates", counted)
    return sent


def _sent_for_uses(merchant: Merchant, spoil: Spoil, mp: pytest.MonkeyPatch) -> tuple[int, str]:
    """PCertReqs sent for ``USES`` uses after the TTL, the data spoiled, and the last
    failure's text; then the data held before installed again: fetched at the next use."""
    sent = _counted(merchant, mp)
    clock = Clock()
    keys = GatewayKeys(merchant.gateway_keys._fetch, clock=clock, trust=merchant.trust)
    keys.current()
    assert len(sent) == 1
    held = merchant.trust.revocation
    assert held is not None
    _installed(merchant.trust, spoil(merchant.trust), mp)
    clock.now += GATEWAY_CERTIFICATES_TTL.total_seconds() + 1
    for _ in range(USES):
        with pytest.raises(RevocationUnavailable) as refused:
            keys.current()
        clock.now += 0.1
    spent = len(sent) - 1
    _installed(merchant.trust, held, mp)  # the feed caught up
    assert keys.current().key_exchange is not None
    assert len(sent) == spent + 2
    return spent, str(refused.value)


def test_a_crl_past_its_next_update_costs_one_pcertreq_not_one_per_use(
    make_merchant: MerchantFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    merchant = make_merchant("m-unjudged-crl", AnswerMode.ORDER_RECEIVED)
    spent, last = _sent_for_uses(merchant, _crls_lapsed, monkeypatch)
    assert spent == 1, f"{spent} PCertReqs for {USES} uses, each answer unjudgeable"
    assert "nextUpdate" in last and "not sent" in last


def test_a_bci_omitting_the_gateways_ca_costs_one_pcertreq_not_one_per_use(
    make_merchant: MerchantFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    merchant = make_merchant("m-unjudged-omit", AnswerMode.ORDER_RECEIVED)
    gateway_ca = merchant.gateway_keys.current().key_exchange.chain_thumbs[1]

    def omitted(trust: TrustStore) -> RevocationSnapshot:
        held = trust.revocation
        assert held is not None
        by_issuer = {t: s for t, s in held.by_issuer.items() if t != gateway_ca}
        assert len(by_issuer) < len(held.by_issuer)
        return dataclasses.replace(held, by_issuer=by_issuer)

    spent, last = _sent_for_uses(merchant, omitted, monkeypatch)
    assert spent == 1, f"{spent} PCertReqs for {USES} uses, each answer unjudgeable"
    assert "not sent" in last


def test_other_revocation_data_installed_is_asked_with_at_once(
    make_merchant: MerchantFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another snapshot the feed installs is asked with at the next use, even one that
    cannot judge either: it is its verdict that counts, not the last one's."""
    merchant = make_merchant("m-unjudged-other", AnswerMode.ORDER_RECEIVED)
    sent = _counted(merchant, monkeypatch)
    fetch = merchant.gateway_keys._fetch
    _installed(merchant.trust, _crls_lapsed(merchant.trust), monkeypatch)
    for _ in range(3):
        with pytest.raises(RevocationUnavailable):
            fetch()
    assert len(sent) == 1
    _installed(merchant.trust, _crls_lapsed(merchant.trust), monkeypatch)  # another object
    with pytest.raises(RevocationUnavailable, match="nextUpdate"):
        fetch()
    assert len(sent) == 2


def test_the_bci_window_check_refuses_only_what_the_chain_code_refuses(
    make_merchant: MerchantFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``revocation_current`` saves the PCertReq ahead of the chain code's verdict: with
    the BCI past its window, that verdict on the gateway's certificates is a refusal too."""
    merchant = make_merchant("m-unjudged-window", AnswerMode.ORDER_RECEIVED)
    served = merchant.gateway_keys.current()
    held = merchant.trust.revocation
    assert held is not None
    ended = utc(None) - timedelta(minutes=1)
    lapsed = dataclasses.replace(held, not_before=ended - timedelta(days=1), not_after=ended)
    _installed(merchant.trust, lapsed, monkeypatch)
    sent = _counted(merchant, monkeypatch)
    with pytest.raises(RevocationUnavailable, match="ended at"):
        merchant.gateway_keys._fetch()
    assert sent == []
    with pytest.raises(RevocationUnavailable):
        merchant.trust.verify_chain(
            served.key_exchange.der, served.chain, PAYMENT_GATEWAY, CertificateUsage.KEY_EXCHANGE
        )


class _Trust:
    """A trust store's revocation data, swapped by hand."""

    def __init__(self) -> None:
        self.revocation: object = _Snapshot()


class _Snapshot:
    """Revocation data whose window covers any instant."""

    def covers(self, at: object) -> bool:
        return True


def _judged(*script: object) -> tuple[JudgedFetch, _Trust, list[int]]:
    """A fetch whose PCertReqs return or raise each of ``script`` in turn; the refreshes
    counted."""
    trust, refreshed = _Trust(), [0]

    def refresh() -> None:
        refreshed[0] += 1

    fetch = JudgedFetch(trust, refresh, scripted(*script))  # type: ignore[arg-type]
    return fetch, trust, refreshed


def test_a_failure_other_than_unjudged_data_is_asked_again_at_the_next_use() -> None:
    """The gateway unreachable says nothing of the revocation data: the next use sends."""
    down = TransportError("gateway GatewayCertificates", "UNAVAILABLE")
    fetch, _, refreshed = _judged(down, down, RevocationUnavailable("a CRL is past its nextUpdate"))
    for _ in range(2):
        with pytest.raises(TransportError):
            fetch()
    with pytest.raises(RevocationUnavailable, match="past its nextUpdate"):
        fetch()  # the third PCertReq: nothing was held against the data before
    with pytest.raises(RevocationUnavailable, match="could not judge the last PCertRes"):
        fetch()  # the script is spent: a fourth PCertReq would fail the test otherwise
    assert refreshed[0] == 4  # the feed asked first every time, sent or not


def test_data_installed_while_a_pcertreq_was_out_is_asked_with_anew() -> None:
    """The answer was judged by the data held when it was asked for; data the feed
    installed meanwhile is another's to judge by, at the next use."""
    fetch, trust, _ = _judged(RevocationUnavailable("a CRL is past its nextUpdate"), NOT_SERVED)
    ask = fetch._ask

    def installing() -> GatewayCertificate:
        trust.revocation = _Snapshot()  # the feed's other thread, meanwhile
        return ask()

    fetch._ask = installing
    with pytest.raises(RevocationUnavailable):
        fetch()
    assert fetch() is NOT_SERVED
