"""A fetch's failure raised again for a later use: logged once a run of one kind only,
its copies reading as the original and keeping its cause, with notes of their own."""

from __future__ import annotations

import logging

import pytest

from clients.errors import ConfigError, TransportError
from clients.merchant.gateway_keys import GatewayKeys, _raised_again
from setcore.errors import ErrorCode, PeerError
from setcore.gateway_admin import GatewayCertificate
from setpay.v1 import gateway_admin_pb2
from tests.clients.merchant.test_gateway_keys import Clock

LOGGER = "setpay.merchant.gateway"
NOT_SERVED = GatewayCertificate(
    "setpay", "", gateway_admin_pb2.P_CERT_CODE_BRAND_NOT_SUPPORTED, None, None, ()
)


def _scripted(*script: object) -> GatewayKeys:
    """Keys whose fetches return or raise each of ``script`` in turn."""
    left = list(script)

    def fetch() -> GatewayCertificate:
        item = left.pop(0)
        if isinstance(item, Exception):
            raise item
        assert isinstance(item, GatewayCertificate)
        return item

    return GatewayKeys(fetch, clock=Clock())


def _levels(keys: GatewayKeys, count: int, caplog: pytest.LogCaptureFixture) -> list[int]:
    """The level each of ``count`` failed fetches was logged at, a minute apart."""
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    for _ in range(count):
        with pytest.raises(Exception):  # noqa: B017  each kind the script raises
            keys.current()
        clock = keys._clock
        assert isinstance(clock, Clock)
        clock.now += 60
    return [r.levelno for r in caplog.records if r.name == LOGGER]


def test_a_local_config_error_after_the_gateways_not_served_is_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """NotServed (the gateway's word) is a ConfigError too; the merchant's own
    configuration failing after it is another story, logged as such."""
    local = ConfigError("merchant.brand_id names no brand the key backend holds")
    levels = _levels(_scripted(NOT_SERVED, local), 2, caplog)
    assert levels == [logging.WARNING, logging.WARNING]


def test_the_same_local_failure_again_is_quiet(caplog: pytest.LogCaptureFixture) -> None:
    levels = _levels(_scripted(ConfigError("one"), ConfigError("two")), 2, caplog)
    assert levels == [logging.WARNING, logging.DEBUG]


def test_a_failure_to_reach_the_gateway_is_one_run_whatever_its_kind(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Dropped(TransportError):
        """Another way of not reaching the gateway."""

    first = TransportError("gateway GatewayCertificates", "UNAVAILABLE")
    second = Dropped("gateway GatewayCertificates", "DEADLINE_EXCEEDED")
    levels = _levels(_scripted(first, second), 2, caplog)
    assert levels == [logging.WARNING, logging.DEBUG]


def test_a_held_off_refusal_raised_again_keeps_its_cause() -> None:
    """Raised again within its hold-off (under the lock): the cause the gateway's
    refusal came with, as the first caller met it."""
    cause = ValueError("PCertRes signature does not verify")
    refusal = PeerError(ErrorCode.ERROR_CODE_MERCHANT_MISMATCH, "who?")
    refusal.__cause__ = cause
    keys = _scripted(refusal)
    with pytest.raises(PeerError) as first:
        keys.current()
    with pytest.raises(PeerError) as again:
        keys.current()  # the same clock: within the hold-off, nothing fetched
    assert first.value.__cause__ is cause
    assert again.value is not first.value and again.value.__cause__ is cause


def test_a_copy_reads_as_the_failure_it_copies() -> None:
    """State the standard library keeps outside ``args`` (a file name, a decoding's
    position): rather the failure itself than a copy that reads otherwise."""
    missing = FileNotFoundError(2, "No such file or directory", "sig.pem")
    undecodable = UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte")
    for failure in (missing, undecodable):
        again = _raised_again(failure)
        assert str(again) == str(failure)
    assert "sig.pem" in str(_raised_again(missing))


def test_a_plain_failure_is_still_copied() -> None:
    failure = TransportError("gateway GatewayCertificates", "UNAVAILABLE")
    again = _raised_again(failure)
    assert again is not failure and str(again) == str(failure)


def test_a_copys_notes_are_its_own() -> None:
    failure = PermissionError(13, "denied")
    failure.add_note("first")
    again = _raised_again(failure)
    assert again is not failure
    again.add_note("order 1a2b: not to be shown elsewhere")
    assert failure.__notes__ == ["first"]
    assert again.__notes__ == ["first", "order 1a2b: not to be shown elsewhere"]
