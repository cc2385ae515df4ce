"""A health probe's failure is logged once per cause (WARNING), then at DEBUG while it
fails so, and its recovery at INFO (``gateway.health_monitor.HealthMonitor``).

Every probe runs each second in each server of each worker: during a minute of the
ledger away (the ledger process started again while another program held the ledger's
write lock), "health probe failed: StoreAway" at WARNING was 244 of the bank's 293 log
lines, two a second per worker."""

from __future__ import annotations

import logging

import pytest

from gateway.health_monitor import HealthMonitor, WatchEndingHealth
from gateway.ledger import StoreAway
from hsm.errors import PermanentBackendError, TokenAbsent, TransientBackendError

SERVICE = "setpay.v1.PaymentGateway"


class _Probe:
    """A probe that fails with what it is given (None: it passes)."""

    def __init__(self) -> None:
        self.fault: Exception | None = None

    def __call__(self) -> None:
        if self.fault is not None:
            raise self.fault


def _said(caplog: pytest.LogCaptureFixture) -> list[tuple[int, str]]:
    said = [
        (r.levelno, r.getMessage())
        for r in caplog.records
        if r.name == "setpay.server" and r.getMessage().startswith("health probe")
    ]
    caplog.clear()
    return said


def test_a_probe_s_failure_is_said_once_per_cause_and_its_recovery_at_info(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, "setpay.server")
    ledger, token = _Probe(), _Probe()
    monitor = HealthMonitor(WatchEndingHealth(), (SERVICE,), [token, ledger])
    try:
        ledger.fault = StoreAway("the ledger service connection failed")
        for _ in range(5):
            assert not monitor.probe()
        assert (
            _said(caplog)
            == [(logging.WARNING, "health probe failed: StoreAway")]
            + [(logging.DEBUG, "health probe failed: StoreAway")] * 4
        )
        token.fault = TokenAbsent("no token")  # another probe's cause: news
        assert not monitor.probe()
        assert _said(caplog) == [
            (logging.WARNING, "health probe failed: TokenAbsent: no token"),
            (logging.DEBUG, "health probe failed: StoreAway"),
        ]
        ledger.fault = token.fault = None
        assert monitor.probe()
        assert _said(caplog) == [
            (logging.WARNING, "health probe passes again (it failed: TokenAbsent: no token)"),
            (logging.WARNING, "health probe passes again (it failed: StoreAway)"),
        ]
        assert monitor.probe() and _said(caplog) == []
        ledger.fault = StoreAway("again")  # failing again after it recovered: news
        assert not monitor.probe()
        assert _said(caplog) == [(logging.WARNING, "health probe failed: StoreAway")]
        ledger.fault = OSError("another cause")
        assert not monitor.probe()
        assert _said(caplog) == [(logging.WARNING, "health probe failed: OSError")]
    finally:
        monitor.stop()


def test_a_key_backend_s_failure_is_said_with_its_message_once_per_message(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Before, only "health probe failed: PermanentBackendError": an idle bank whose token
    # refused its re-login never said that the PIN file must change before a retry.
    caplog.set_level(logging.DEBUG, "setpay.server")
    token, ledger = _Probe(), _Probe()
    monitor = HealthMonitor(WatchEndingHealth(), (SERVICE,), [token, ledger])
    refused = (
        "token 'bank': login refused (PinIncorrect); check the PIN from file:token.pin "
        "(not tried again until file:token.pin changes)"
    )
    try:
        token.fault = TransientBackendError("token 'bank' is not present")
        assert not monitor.probe()
        token.fault = PermanentBackendError(refused)  # back, and the PIN refused: news
        for _ in range(3):
            assert not monitor.probe()
        assert _said(caplog) == [
            (logging.WARNING, "health probe failed: TransientBackendError: token 'bank' is "
                              "not present"),
            (logging.WARNING, f"health probe failed: PermanentBackendError: {refused}"),
            (logging.DEBUG, f"health probe failed: PermanentBackendError: {refused}"),
            (logging.DEBUG, f"health probe failed: PermanentBackendError: {refused}"),
        ]  # fmt: skip
        token.fault = None
        ledger.fault = StoreAway("cannot connect to postgresql://setpay:secret@db/ledger")
        assert not monitor.probe()
        assert _said(caplog) == [
            (logging.WARNING, f"health probe passes again (it failed: PermanentBackendError: "
                              f"{refused})"),
            (logging.WARNING, "health probe failed: StoreAway"),  # its class alone
        ]  # fmt: skip
    finally:
        monitor.stop()
