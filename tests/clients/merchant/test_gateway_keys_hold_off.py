"""The gateway's certificates after the merchant's trust store refused them, or a fetch
of them failed: one PCertReq a hold-off (5 s, doubling to a minute), not one a use; one
thread fetching while the others fail at once; and a refused certificate never handed
out again, even once the revocation data can no longer judge it.

Which certificate the trust store refuses (the signature one as well as the key-exchange
one) and what it cannot judge (revocation data past its window: nothing refused) are
told here too.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import pytest

import setcore.pki.truststore as truststore_module
from clients.errors import TransportError
from clients.merchant.gateway_client import (
    FETCH_HOLD_OFF_MAX,
    FETCH_HOLD_OFF_SECONDS,
    GatewayKeys,
)
from setcore.errors import ProtocolError
from setcore.gateway_admin import GatewayCertificate
from setcore.pki.issuance import utc
from tests.clients.merchant.test_gateway_keys import Clock
from tests.clients.merchant.test_gateway_keys_revoked import Counted, _revoke
from tests.gateway.actors import Merchant, register_merchant
from tests.gateway.test_gateway_renewal import Served

# Well within a hold-off, and just past it.
WITHIN, PAST = 0.1, 0.2


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    bank = Served(tmp_path / "bank")
    try:
        yield bank
    finally:
        bank.stop()


def _past_the_bci_window(merchant: Merchant, monkeypatch: pytest.MonkeyPatch) -> None:
    """The merchant's revocation feed stalls, and the BCI it installed passes its window:
    its trust store can judge no certificate by revocation any more."""
    installed = merchant.trust.revocation
    assert installed is not None
    skew = installed.not_after - utc(None) + timedelta(minutes=1)
    monkeypatch.setattr(truststore_module, "utc", lambda at: utc(at) + skew)


def _revoked_and_refused(served: Served, name: str) -> tuple[Merchant, Counted, GatewayKeys, Clock]:
    """A merchant whose gateway key-exchange certificate the bank has revoked (no renewal:
    the gateway still serves it), refused once by its ``GatewayKeys``."""
    merchant = register_merchant(served.world, name)
    fetch, clock = Counted(served, merchant), Clock()
    keys = GatewayKeys(fetch, clock=clock, trust=merchant.trust)
    old = keys.current()
    _revoke(served, old.key_exchange.thumbprint, merchant.trust)
    with pytest.raises(ProtocolError, match="REVOKED_CERTIFICATE"):
        keys.current()
    assert fetch.calls == 2
    return merchant, fetch, keys, clock


def test_a_refused_certificate_is_asked_for_once_a_hold_off(
    served: Served, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="setpay.merchant.gateway")
    _, fetch, keys, clock = _revoked_and_refused(served, "M-hold-1")
    for _ in range(20):  # every PInit and AuthReq built meanwhile: the same failure
        with pytest.raises(ProtocolError, match="REVOKED_CERTIFICATE"):
            keys.recipient()
    assert fetch.calls == 2
    refused = [m for m in caplog.messages if "refuses the gateway's key-exchange" in m]
    not_fetched = [m for m in caplog.messages if "none is handed out until they are" in m]
    assert (len(refused), len(not_fetched)) == (1, 1), caplog.messages
    hold_off = FETCH_HOLD_OFF_SECONDS
    for _ in range(6):  # 5, 10, 20, 40, 60, 60 s
        clock.now += hold_off - WITHIN
        with pytest.raises(ProtocolError):
            keys.current()
        calls = fetch.calls
        clock.now += PAST
        with pytest.raises(ProtocolError, match="REVOKED_CERTIFICATE"):
            keys.current()
        assert fetch.calls == calls + 1
        hold_off = min(2 * hold_off, FETCH_HOLD_OFF_MAX)
    assert fetch.calls == 8
    assert len([m for m in caplog.messages if "none is handed out" in m]) == 7
    # Renewed: the next fetch past the hold-off has the new certificates.
    _, renewal = served.renew()
    clock.now += FETCH_HOLD_OFF_MAX + PAST
    assert keys.current().key_exchange.thumbprint == renewal.key_exchange.thumb
    assert keys.current().key_exchange.thumbprint == renewal.key_exchange.thumb
    assert fetch.calls == 9


def test_the_gateway_unreachable_is_asked_again_at_the_next_use(
    served: Served, caplog: pytest.LogCaptureFixture
) -> None:
    """No answer at all is no refusal: no hold-off, so the gateway's return is seen at the
    first use after it; warned of once for the outage."""
    caplog.set_level(logging.WARNING, logger="setpay.merchant.gateway")
    _, fetch, keys, clock = _revoked_and_refused(served, "M-hold-7")
    _, renewal = served.renew()
    fetch.down = True
    clock.now += FETCH_HOLD_OFF_SECONDS + PAST
    for _ in range(3):
        with pytest.raises(TransportError, match="UNAVAILABLE"):
            keys.current()
    assert fetch.calls == 5
    away = [m for m in caplog.messages if "TransportError" in m]
    assert len(away) == 1 and "asked again at the next use" in away[0], caplog.messages
    fetch.down = False
    assert keys.current().key_exchange.thumbprint == renewal.key_exchange.thumb
    assert fetch.calls == 6
    # Their TTL ends while the gateway is away: the same, with no refusal before.
    fetch.down = True
    clock.now += 3600
    for _ in range(2):
        with pytest.raises(TransportError, match="UNAVAILABLE"):
            keys.current()
    fetch.down = False
    assert keys.current().key_exchange.thumbprint == renewal.key_exchange.thumb
    assert fetch.calls == 9


def test_a_fetch_that_succeeds_starts_the_next_refusal_over(
    served: Served, caplog: pytest.LogCaptureFixture
) -> None:
    """Refused, then renewed and fetched, then that renewal refused in turn: its hold-off is
    the first one again (5 s), not the doubling the refusals before had reached; and
    after the fetch that succeeded, a failure tells of no certificate withdrawn."""
    caplog.set_level(logging.WARNING, logger="setpay.merchant.gateway")
    merchant, fetch, keys, clock = _revoked_and_refused(served, "M-hold-8")
    clock.now += FETCH_HOLD_OFF_SECONDS - WITHIN
    with pytest.raises(ProtocolError):
        keys.current()
    clock.now += PAST  # refused again: held off 10 s from here
    with pytest.raises(ProtocolError, match="REVOKED_CERTIFICATE"):
        keys.current()
    assert fetch.calls == 3
    _, renewal = served.renew()
    clock.now += 2 * FETCH_HOLD_OFF_SECONDS
    assert keys.current().key_exchange.thumbprint == renewal.key_exchange.thumb
    assert fetch.calls == 4
    # Their hour over, the gateway away: nothing was withdrawn since they were fetched.
    fetch.down = True
    clock.now += 3600
    caplog.clear()
    with pytest.raises(TransportError):
        keys.current()
    assert [m for m in caplog.messages if "gateway certificates" in m] == [
        "gateway certificates not fetched (TransportError: gateway GatewayCertificates:"
        " UNAVAILABLE), asked again at the next use"
    ]
    fetch.down = False
    assert keys.current().key_exchange.thumbprint == renewal.key_exchange.thumb
    assert fetch.calls == 6
    # The renewal revoked in turn (no renewal after it): refused, held off 5 s.
    _revoke(served, renewal.key_exchange.thumb, merchant.trust)
    with pytest.raises(ProtocolError, match="REVOKED_CERTIFICATE"):
        keys.current()
    assert fetch.calls == 7
    clock.now += FETCH_HOLD_OFF_SECONDS - WITHIN
    with pytest.raises(ProtocolError, match="REVOKED_CERTIFICATE"):
        keys.current()
    assert fetch.calls == 7
    clock.now += PAST
    with pytest.raises(ProtocolError, match="REVOKED_CERTIFICATE"):
        keys.current()
    assert fetch.calls == 8


@dataclass
class Gated:
    """``fetch`` held at its start until the test opens the gate."""

    fetch: Counted
    entered: threading.Event = field(default_factory=threading.Event)
    gate: threading.Event = field(default_factory=threading.Event)

    def __call__(self) -> GatewayCertificate:
        self.entered.set()
        assert self.gate.wait(30), "the gate was never opened"
        return self.fetch()

    def close(self) -> None:
        self.entered.clear()
        self.gate.clear()


def _use(keys: GatewayKeys, failures: list[BaseException]) -> threading.Thread:
    """A thread using the certificates, its failure noted."""

    def use() -> None:
        try:
            keys.current()
        except Exception as exc:
            failures.append(exc)

    thread = threading.Thread(target=use, daemon=True)
    thread.start()
    return thread


def test_one_thread_fetches_and_the_others_do_not_wait_in_turn(served: Served) -> None:
    merchant = register_merchant(served.world, "M-hold-2")
    fetch, clock = Counted(served, merchant), Clock()
    gated = Gated(fetch)
    gated.gate.set()
    keys = GatewayKeys(gated, clock=clock, trust=merchant.trust)
    old = keys.current()
    _revoke(served, old.key_exchange.thumbprint, merchant.trust)
    fetch.down = True
    gated.close()
    failures: list[BaseException] = []
    try:
        # Six PInits at once after the refusal, the gateway away: one PCertReq, the others
        # wait for it (there is no failure yet to give them), then fail with it.
        threads = [_use(keys, failures) for _ in range(6)]
        assert gated.entered.wait(30)
        threads[-1].join(0.5)
        gated.gate.set()
        for thread in threads:
            thread.join(30)
        assert fetch.calls == 2
        assert len(failures) == 6 and all(isinstance(f, TransportError) for f in failures)
        # One thread fetches again; another use meanwhile fails at once with the latest
        # failure, rather than wait out the PCertReq's deadline and retries.
        gated.close()
        fetching = _use(keys, failures)
        assert gated.entered.wait(30)
        meanwhile: list[BaseException] = []
        other = _use(keys, meanwhile)
        other.join(10)
        assert not other.is_alive(), "a use waited for another thread's PCertReq"
        assert fetching.is_alive() and fetch.calls == 2
        assert len(meanwhile) == 1 and isinstance(meanwhile[0], TransportError)
    finally:
        gated.gate.set()
    fetching.join(30)
    assert fetch.calls == 3 and len(failures) == 7


def test_a_renewal_after_a_revocation_is_fetched_once_by_many_threads(served: Served) -> None:
    merchant = register_merchant(served.world, "M-hold-3")
    fetch = Counted(served, merchant)
    keys = GatewayKeys(fetch, trust=merchant.trust)
    old = keys.current()
    _, renewal = served.renew()
    _revoke(served, old.key_exchange.thumbprint, merchant.trust)
    got: list[bytes] = []
    barrier = threading.Barrier(8)

    def use() -> None:
        barrier.wait()
        got.append(keys.current().key_exchange.thumbprint)

    threads = [threading.Thread(target=use) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert got == [renewal.key_exchange.thumb] * 8
    assert fetch.calls == 2


def test_a_refused_certificate_is_not_handed_out_once_revocation_data_is_past_its_window(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    merchant, fetch, keys, clock = _revoked_and_refused(served, "M-hold-4")
    _past_the_bci_window(merchant, monkeypatch)
    # The held certificate could no longer be judged, nor the PCertRes naming it again
    # (the bank in this process judges by the same clock, and refuses the PCertReq):
    # neither is handed out.
    with pytest.raises(ProtocolError):
        keys.current()
    clock.now += FETCH_HOLD_OFF_SECONDS + PAST
    with pytest.raises(ProtocolError):
        keys.recipient()
    assert fetch.calls == 3


def test_certificates_never_refused_stay_handed_out_past_the_bci_window(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Revocation data too old to judge by refuses nothing: a PCertRes fetched now would
    be judged by the same data (and refused), every purchase failing for it."""
    merchant = register_merchant(served.world, "M-hold-5")
    fetch = Counted(served, merchant)
    keys = GatewayKeys(fetch, trust=merchant.trust)
    held = keys.current()
    _past_the_bci_window(merchant, monkeypatch)
    for _ in range(5):
        assert keys.current() is held
    assert fetch.calls == 1


def test_a_revoked_signature_certificate_is_fetched_again_at_once(served: Served) -> None:
    """Answers signed by a revoked signature certificate are refused: the renewed one is
    asked for at the next use, as for the key-exchange certificate."""
    merchant = register_merchant(served.world, "M-hold-6")
    fetch = Counted(served, merchant)
    keys = GatewayKeys(fetch, trust=merchant.trust)
    old = keys.current()
    _, renewal = served.renew()
    assert keys.current() is old
    _revoke(served, old.signature.thumbprint, merchant.trust)
    fresh = keys.current()
    assert fetch.calls == 2
    assert fresh.signature.thumbprint == renewal.signature.thumb
