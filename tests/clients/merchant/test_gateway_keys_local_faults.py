"""A fetch of the gateway's certificates failing on the merchant's own side (its key
backend signing the PCertReq, its database, its revocation data past its window) is no
word of the gateway's: asked again at the next use, as for an unreachable gateway, not
held off as a refused PCertRes is; and logged, once a run.

A failure raised again for a later use (a hold-off, or another thread fetching) is a
copy: it carries neither the exception the raising thread was handling nor another
thread's traceback.
"""

from __future__ import annotations

import logging
import threading
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from clients.errors import ConfigError, StoreError, TransportError
from clients.merchant.gateway_keys import (
    FETCH_HOLD_OFF_SECONDS,
    GATEWAY_CERTIFICATES_TTL,
    GatewayKeys,
    NotServed,
    held_off,
)
from hsm.errors import TransientBackendError
from setcore.errors import ErrorCode, PeerError, ProtocolError
from setcore.gateway_admin import GatewayCertificate, build_pcert_request, open_pcert_response
from setcore.pki.bci import RevocationUnavailable
from setpay.v1 import gateway_admin_pb2
from tests.clients.merchant.test_gateway_keys import Clock
from tests.clients.merchant.test_gateway_keys_hold_off import _past_the_bci_window
from tests.clients.merchant.test_gateway_keys_revoked import Counted
from tests.gateway.actors import TEST_BIN, Merchant, register_merchant
from tests.gateway.test_gateway_renewal import Served

TTL = GATEWAY_CERTIFICATES_TTL.total_seconds()
LOGGER = "setpay.merchant.gateway"


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    bank = Served(tmp_path / "bank")
    try:
        yield bank
    finally:
        bank.stop()


class Failing:
    """The runtime's fetch, but ``fail`` raised instead while it is set (before any
    PCertReq leaves, as the merchant's key backend or database failing would)."""

    def __init__(self, counted: Counted) -> None:
        self.counted = counted
        self.fail: Exception | None = None
        self.attempts = 0

    def __call__(self) -> GatewayCertificate:
        self.attempts += 1
        if self.fail is not None:
            raise self.fail
        return self.counted()


def _held_an_hour(served: Served, name: str) -> tuple[Merchant, Failing, GatewayKeys, Clock]:
    """A merchant's ``GatewayKeys`` holding good certificates whose hour just ended."""
    merchant = register_merchant(served.world, name)
    fetch, clock = Failing(Counted(served, merchant)), Clock()
    keys = GatewayKeys(fetch, clock=clock, trust=merchant.trust)
    keys.current()
    clock.now += TTL + 1
    return merchant, fetch, keys, clock


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


LOCAL_FAULTS: list[Callable[[], Exception]] = [
    lambda: TransientBackendError("session pool exhausted"),
    lambda: StoreError("database is locked"),
    lambda: ConfigError("the merchant's own setting"),
]


@pytest.mark.parametrize("fault", LOCAL_FAULTS, ids=["key backend", "store", "config"])
def test_a_local_fault_at_the_hourly_fetch_is_asked_again_at_the_next_use(
    served: Served, fault: Callable[[], Exception], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    _, fetch, keys, clock = _held_an_hour(served, f"M-local-{type(fault()).__name__}")
    fetch.fail = fault()
    for _ in range(3):  # each use asks again, and fails again: one warning for the run
        with pytest.raises(type(fetch.fail)):
            keys.current()
    assert fetch.attempts == 4
    name = type(fetch.fail).__name__
    warned = [m for m in _warnings(caplog) if name in m]
    assert len(warned) == 1, _warnings(caplog)
    assert "not fetched" in warned[0] and "asked again at the next use" in warned[0]
    assert "none is handed out" not in warned[0]  # no certificate was refused
    fetch.fail = None  # the key backend (or database) is back a second later
    clock.now += 1
    assert keys.current().key_exchange is not None
    assert fetch.attempts == 5 and fetch.counted.calls == 2


def test_the_key_backend_away_for_minutes_is_not_held_off_after_it_is_back(
    served: Served,
) -> None:
    """Two minutes of a PInit a second failing at the key backend: once it is back, the
    next use fetches, with no hold-off grown from the failures before."""
    _, fetch, keys, clock = _held_an_hour(served, "M-local-minutes")
    fetch.fail = TransientBackendError("token removed")
    for _ in range(120):
        with pytest.raises(TransientBackendError):
            keys.current()
        clock.now += 1
    assert fetch.attempts == 121
    fetch.fail = None
    assert keys.current().key_exchange is not None
    assert fetch.counted.calls == 2


def test_revocation_data_past_its_window_at_the_hourly_fetch_is_not_held_off(
    served: Served, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The merchant's revocation feed behind when the hour ends (the gateway's current):
    the PCertRes it answers cannot be judged, the merchant's data at fault, not the
    gateway's word; asked again as soon as the data is current."""
    caplog.set_level(logging.WARNING, logger=LOGGER)
    merchant = register_merchant(served.world, "M-local-bci")
    stale: list[bool] = []
    calls: list[int] = []

    def fetch() -> GatewayCertificate:
        """The PCertReq answered by the gateway as it is; its PCertRes opened by the
        merchant's trust store, past its BCI window while ``stale`` says so."""
        calls.append(1)
        request, state = build_pcert_request(
            merchant.credentials, [("setpay", TEST_BIN)], merchant.merchant_id
        )
        response = served.world.gateway.GatewayCertificates(request)
        with monkeypatch.context() as patch:
            if stale:
                _past_the_bci_window(merchant, patch)
            answer = open_pcert_response(response, merchant.credentials, state, merchant.trust)
        return answer.items[0]

    clock = Clock()
    keys = GatewayKeys(fetch, clock=clock, trust=merchant.trust)
    keys.current()
    clock.now += TTL + 1
    stale.append(True)
    with pytest.raises(RevocationUnavailable):
        keys.current()
    stale.clear()  # the feed caught up
    clock.now += 1
    assert keys.current().key_exchange is not None
    assert len(calls) == 3
    assert any("RevocationUnavailable" in m and "next use" in m for m in _warnings(caplog))


def test_a_local_fault_after_a_refusal_is_asked_again_at_the_next_use(
    served: Served, caplog: pytest.LogCaptureFixture
) -> None:
    """The refused certificate forgotten, and the fetch after its hold-off failing at the
    merchant's key backend: asked again at the next use, the refused one still not
    handed out meanwhile."""
    from tests.clients.merchant.test_gateway_keys_revoked import _revoke

    caplog.set_level(logging.WARNING, logger=LOGGER)
    merchant = register_merchant(served.world, "M-local-refused")
    fetch, clock = Failing(Counted(served, merchant)), Clock()
    keys = GatewayKeys(fetch, clock=clock, trust=merchant.trust)
    old = keys.current()
    _, renewal = served.renew()
    _revoke(served, old.key_exchange.thumbprint, merchant.trust)
    fetch.fail = TransientBackendError("device busy")
    with pytest.raises(TransientBackendError):
        keys.current()
    assert (
        "none is handed out until they are, asked again at the next use" in (_warnings(caplog)[-1])
    )
    fetch.fail = None
    assert keys.current().key_exchange.thumbprint == renewal.key_exchange.thumb
    assert fetch.attempts == 3


GATEWAY_WORDS: list[GatewayCertificate | Exception] = [
    GatewayCertificate(  # a PCertRes serving none: NotServed
        "setpay", "", gateway_admin_pb2.P_CERT_CODE_BRAND_NOT_SUPPORTED, None, None, ()
    ),
    PeerError(ErrorCode.ERROR_CODE_MERCHANT_MISMATCH, "who?"),
    ProtocolError(ErrorCode.ERROR_CODE_SIGNATURE_FAILURE, "PCertRes did not verify"),
]


@pytest.mark.parametrize("word", GATEWAY_WORDS, ids=["not served", "SET Error", "unverified"])
def test_the_gateways_word_is_still_held_off(
    word: GatewayCertificate | Exception, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    calls: list[int] = []

    def fetch() -> GatewayCertificate:
        calls.append(1)
        if isinstance(word, Exception):
            raise word
        return word

    clock = Clock()
    keys = GatewayKeys(fetch, clock=clock)
    with pytest.raises((NotServed, PeerError, ProtocolError)) as first:
        keys.current()
    assert held_off(first.value)
    clock.now += FETCH_HOLD_OFF_SECONDS - 0.1
    with pytest.raises(type(first.value)):
        keys.current()
    assert len(calls) == 1
    assert _warnings(caplog) == [
        f"gateway certificates not fetched ({type(first.value).__name__}: {first.value}),"
        " asked again in 5 s"
    ]
    clock.now += 0.2
    with pytest.raises(type(first.value)):
        keys.current()
    assert len(calls) == 2


def test_which_failures_are_held_off() -> None:
    assert held_off(NotServed("BRAND_NOT_SUPPORTED"))
    assert held_off(PeerError(ErrorCode.ERROR_CODE_MERCHANT_MISMATCH))
    assert held_off(ProtocolError(ErrorCode.ERROR_CODE_REVOKED_CERTIFICATE, "revoked"))
    assert not held_off(RevocationUnavailable("BCI past its window"))
    assert not held_off(ConfigError("not the gateway's word"))
    assert not held_off(TransportError("gateway GatewayCertificates", "UNAVAILABLE"))
    assert not held_off(TransientBackendError("busy"))
    assert not held_off(StoreError("database is locked"))


def _formatted(exc: BaseException) -> str:
    return "".join(traceback.format_exception(exc))


def test_a_failure_held_off_carries_no_other_handlers_exception() -> None:
    """Raised again within its hold-off by a caller handling an unrelated order's
    failure: a copy of the gateway's refusal, of its type and words, that neither shows
    that order's failure nor gives it to the failure the first caller met."""
    refusal = PeerError(ErrorCode.ERROR_CODE_MERCHANT_MISMATCH, "who?")

    def fetch() -> GatewayCertificate:
        raise refusal

    keys = GatewayKeys(fetch, clock=Clock())
    with pytest.raises(PeerError) as first:
        keys.current()
    try:
        raise RuntimeError("order 1a2b: refused as too old")
    except RuntimeError:
        with pytest.raises(PeerError) as second:
            keys.current()
    assert "order 1a2b" not in _formatted(second.value)
    assert "order 1a2b" not in _formatted(first.value)
    assert first.value.__context__ is None
    assert second.value is not first.value and second.value.__suppress_context__
    assert type(second.value) is PeerError and str(second.value) == str(first.value)
    assert second.value.code == refusal.code


def test_the_failure_another_thread_meets_is_its_own() -> None:
    """A use while another thread fetches again raises the latest failure at once: a copy,
    with that failure's cause, not the fetching thread's exception object (whose
    traceback it would replace) nor the handler it was raised in."""
    cause = OSError("connection reset")
    entered, gate = threading.Event(), threading.Event()
    calls: list[int] = []

    def fetch() -> GatewayCertificate:
        calls.append(1)
        if len(calls) == 2:
            entered.set()
            assert gate.wait(30)
        raise TransportError("gateway GatewayCertificates", "UNAVAILABLE") from cause

    keys = GatewayKeys(fetch, clock=Clock())
    with pytest.raises(TransportError) as first:
        keys.current()
    held = first.value.__traceback__
    fetched: list[BaseException] = []

    def fetch_again() -> None:
        try:
            keys.current()
        except TransportError as exc:
            fetched.append(exc)

    fetching = threading.Thread(target=fetch_again)
    fetching.start()
    try:
        assert entered.wait(30)
        try:
            raise RuntimeError("order 3c4d: damaged row")
        except RuntimeError:
            with pytest.raises(TransportError) as meanwhile:
                keys.current()
    finally:
        gate.set()
        fetching.join(30)
    assert len(calls) == 2 and len(fetched) == 1  # the use meanwhile sent nothing
    assert "order 3c4d" not in _formatted(meanwhile.value)
    assert first.value.__traceback__ is held
    assert meanwhile.value is not first.value
    assert meanwhile.value.status == "UNAVAILABLE" and meanwhile.value.__cause__ is cause


class _Odd(PeerError):
    """A refusal that cannot be built again from its ``args``."""

    def __new__(cls, code: int, message: str, where: str) -> _Odd:
        return super().__new__(cls, code, message)

    def __init__(self, code: int, message: str, where: str) -> None:
        super().__init__(code, f"{message} at {where}")


def test_a_failure_that_cannot_be_copied_is_raised_as_it_is() -> None:
    refusal = _Odd(ErrorCode.ERROR_CODE_MERCHANT_MISMATCH, "who?", "the gateway")

    def fetch() -> GatewayCertificate:
        raise refusal

    keys = GatewayKeys(fetch, clock=Clock())
    for _ in range(2):  # the second within its hold-off: the same, not a TypeError
        with pytest.raises(_Odd) as raised:
            keys.current()
        assert raised.value is refusal
