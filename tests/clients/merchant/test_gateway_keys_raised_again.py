"""A fetch's failure raised again for a later use: logged once a run of one kind only,
its copies reading as the original and keeping its cause, with notes of their own, each
caller's a copy of its own."""

from __future__ import annotations

import logging

import pytest

from clients.errors import ConfigError, TransportError
from clients.merchant.gateway_keys import GatewayKeys, _raised_again
from setcore.errors import ErrorCode, PeerError
from setcore.gateway_admin import GatewayCertificate
from setpay.v1 import gateway_admin_pb2
from tests.clients.merchant.gateway_keys_support import scripted
from tests.clients.merchant.test_gateway_keys import Clock

LOGGER = "setpay.merchant.gateway"
NOT_SERVED = GatewayCertificate(
    "setpay", "", gateway_admin_pb2.P_CERT_CODE_BRAND_NOT_SUPPORTED, None, None, ()
)


def _scripted(*script: object) -> GatewayKeys:
    """Keys whose fetches return or raise each of ``script`` in turn."""
    return GatewayKeys(scripted(*script), clock=Clock())


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


class _LocalConfig(ConfigError):
    """A ConfigError of the merchant's own, not the gateway's word (not held off)."""


@pytest.mark.parametrize(
    "first, second",
    [
        (_LocalConfig("the key backend names no brand"), ConfigError("merchant.brand_id")),
        (ConfigError("merchant.brand_id"), _LocalConfig("the key backend names no brand")),
    ],
    ids=["subclass-then-kind", "kind-then-subclass"],
)
def test_a_subclass_and_its_kind_are_two_runs(
    first: Exception, second: Exception, caplog: pytest.LogCaptureFixture
) -> None:
    """The same kind exactly continues a run (``_one_run``): neither failure held off,
    a subclass then its kind (or the reverse) is warned of twice."""
    levels = _levels(_scripted(first, second), 2, caplog)
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
    position) is copied too: a copy, not the failure itself, reading as it does."""
    missing = FileNotFoundError(2, "No such file or directory", "sig.pem")
    undecodable = UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte")
    for failure in (missing, undecodable):
        again = _raised_again(failure)
        assert again is not failure and type(again) is type(failure)
        assert str(again) == str(failure)
    again = _raised_again(missing)
    assert isinstance(again, FileNotFoundError) and again.filename == "sig.pem"


def test_a_copy_carries_nothing_of_the_failures_raising() -> None:
    """Neither the traceback nor the context nor the cause of the thread that met it."""
    try:
        try:
            raise KeyError("order 1a2b")  # that thread's unrelated failure
        except KeyError:
            raise FileNotFoundError(2, "No such file or directory", "sig.pem") from None
    except FileNotFoundError as met:
        failure = met
    assert failure.__traceback__ is not None and failure.__context__ is not None
    again = _raised_again(failure)
    assert again is not failure
    assert again.__traceback__ is None and again.__context__ is None
    assert again.__cause__ is None and not again.__suppress_context__


def test_two_callers_raise_distinct_copies_reading_the_same() -> None:
    """While another thread fetches after a failure, each caller raises its own copy:
    a traceback or note one takes on is not the other's."""
    missing = FileNotFoundError(2, "No such file or directory", "sig.pem")
    keys = _scripted(missing)
    with pytest.raises(FileNotFoundError) as first:
        keys.current()
    raised: list[BaseException] = []
    assert keys._lock.acquire(blocking=False)  # another thread fetches again meanwhile
    try:
        for _ in range(2):
            with pytest.raises(FileNotFoundError) as caller:
                keys.current()
            raised.append(caller.value)
    finally:
        keys._lock.release()
    one, other = raised
    assert one is not other and first.value not in (one, other)
    assert str(one) == str(other) == str(first.value)
    assert "sig.pem" in str(one)
    one.add_note("order 1a2b")
    assert not hasattr(other, "__notes__") and not hasattr(first.value, "__notes__")


def test_a_kind_no_way_copies_is_raised_as_itself() -> None:
    """Neither ``copy.copy`` nor its arguments rebuild it as it reads: the failure itself,
    its traceback dropped, rather than a TypeError in its place."""

    class Odd(Exception):
        def __init__(self, code: int) -> None:
            super().__init__(f"odd {code}")
            self.code = code

        def __str__(self) -> str:
            return f"odd {self.code} of {id(self)}"  # no copy reads the same

    try:
        raise Odd(7)
    except Odd as met:
        failure = met
    again = _raised_again(failure)
    assert again is failure and again.__traceback__ is None


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
