"""``serve``'s advice to a merchant whose signature certificate ended or was revoked judges
its certificates and words the way back at one moment.

``signature_remedy`` judged which certificates were still live (``still_live``) at one
reading of the clock and split them into those to revoke and those to wait for
(``registering_again``) at another: a certificate ending between the two readings was
counted live, then advised as one to wait for, not to revoke. The runtime now reads the
clock once and hands that moment to both (and to its own judgement of the signature
certificate). Against the real bank and its CA; the clock made to move on at each reading.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from clients.identity import read_certificates
from clients.merchant import registration_again, runtime
from clients.merchant.config import load as load_merchant_config
from clients.merchant.registration import KEY_EXCHANGE_LABEL, SIGNATURE_LABEL
from clients.merchant.registration_again import registering_again, revoke_command
from clients.merchant.runtime import Merchant, signature_remedy
from hsm.uri import open_backend
from setcore.errors import ErrorCode, ProtocolError
from tests.clients.bank_support import RunningBank
from tests.clients.merchant.test_register_again import _certificate, _certified_at, _registered

#: The lifetime ``_certified_at`` gives a certificate.
LIFETIME = timedelta(days=2)
#: How far the clock moves on at each reading: the key-exchange certificate ends between
#: the first reading and the third.
STEP = timedelta(minutes=30)


def _moving_clock(patch: pytest.MonkeyPatch, start: datetime) -> list[datetime]:
    """Each reading of ``datetime.now`` by the runtime or ``registration_again`` from now
    on is ``STEP`` after the one before, from ``start``; the readings made."""
    readings: list[datetime] = []

    class Clock(datetime):
        @classmethod
        def now(cls, tz: object = None) -> datetime:  # type: ignore[override]
            readings.append(start + STEP * len(readings))
            return readings[-1]

    patch.setattr(registration_again, "datetime", Clock)
    patch.setattr(runtime, "datetime", Clock, raising=False)
    return readings


def _advised(
    bank: RunningBank, directory: Path, capsys: pytest.CaptureFixture[str], kex_ends: timedelta
) -> tuple[str, list[datetime], datetime]:
    """``serve``'s advice for a registered merchant whose signature certificate ended
    yesterday and whose key-exchange one ends ``kex_ends`` after now (the moment the clock
    starts from); the advice, the clock's readings, and that moment."""
    _registered(bank, directory, capsys)
    now = datetime.now(UTC)
    _certified_at(bank, directory, now - LIFETIME - timedelta(days=1), SIGNATURE_LABEL)
    _certified_at(bank, directory, now - LIFETIME + kex_ends, KEY_EXCHANGE_LABEL)
    config = load_merchant_config(directory)
    chain = read_certificates(config.chain)
    signature = _certificate(directory, SIGNATURE_LABEL)
    refusal = ProtocolError(ErrorCode.ERROR_CODE_EXPIRED_CERTIFICATE, "ended")
    merchant = Merchant.open(config)
    try:
        merchant.revocation.refresh()
        with pytest.MonkeyPatch.context() as patch:
            readings = _moving_clock(patch, now)
            advice = signature_remedy(
                config, signature, refusal, merchant.backend, merchant.trust, chain
            )
    finally:
        merchant.close()
    return advice, readings, now


def test_the_advice_is_judged_and_worded_at_one_moment(
    bank: RunningBank, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The signature certificate ended yesterday; the key-exchange one ends in 45 minutes:
    live now, it is one to revoke, and the advice says so, naming no moment to wait for."""
    directory = tmp_path / "m-one-moment"
    advice, readings, now = _advised(bank, directory, capsys, timedelta(minutes=45))
    kex = _certificate(directory, KEY_EXCHANGE_LABEL)
    assert f"`{revoke_command(kex)}`" in advice, advice
    assert ", after " not in advice, advice
    backend = open_backend(load_merchant_config(directory).keys_uri())
    try:
        kex_key = backend.get(KEY_EXCHANGE_LABEL, 1)
    finally:
        backend.close()
    assert advice == registering_again(load_merchant_config(directory), [(kex_key, kex)], now)
    assert readings == [now]  # one reading, for the judgement and the advice


def test_a_certificate_ended_at_that_moment_is_waited_for_not_revoked(
    bank: RunningBank, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The other side: a key-exchange certificate ended 2 minutes before the moment read
    is one to wait for (the Merchant CA's clock may be behind), named with its moment."""
    directory = tmp_path / "m-one-moment-ended"
    advice, readings, now = _advised(bank, directory, capsys, -timedelta(minutes=2))
    assert "setpay ca revoke" not in advice, advice
    assert ", after " in advice and f"{KEY_EXCHANGE_LABEL} v1 (certificate" in advice, advice
    assert readings == [now]
