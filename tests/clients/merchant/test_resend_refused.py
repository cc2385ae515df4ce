"""A merchant's CertReq the Merchant CA refused, whose answer was lost: the resend gets the
CA's stored refusal back, and that refusal is the outcome.

Real bank, real CA over gRPC and TLS on an OS-chosen port, real soft keys. The CA refuses
the request (REJECTED_BY_AGENT: the ID has an account at the bank and the request names
none) and its answer is lost (``test_registration_lost_answer``). The CA records only the
requests it certified, so the CertInq that follows the refused resend is answered
UNKNOWN_LID: read as "the request never arrived", the merchant was told so and a new
request made (new key versions) only to be refused again.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from clients.errors import RegistrationError, TransportError
from clients.merchant.registration import PENDING_FILE
from setpay.v1 import registration_pb2
from tests.clients.bank_support import EUR, RunningBank, configure_merchant, register_merchant
from tests.clients.merchant.test_registration_lost_answer import _answer_lost, _stored


def test_a_refusal_answered_to_the_resend_is_raised_not_started_over(
    bank: RunningBank,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    merchant_id = "m-resend-refused"
    bank.ledger.open_merchant_account(merchant_id, EUR)  # registering it needs its account
    directory = tmp_path / merchant_id
    configure_merchant(bank, directory, merchant_id)
    _answer_lost(monkeypatch)
    with pytest.raises(TransportError):
        register_merchant(directory)  # no account named: refused, the refusal lost
    monkeypatch.undo()
    pending = directory / PENDING_FILE
    assert pending.exists()

    with caplog.at_level(logging.INFO), pytest.raises(RegistrationError) as refused:
        register_merchant(directory)
    assert refused.value.status == registration_pb2.CERT_STATUS_CODE_REJECTED_BY_AGENT
    assert "REJECTED_BY_AGENT" in str(refused.value)
    assert not pending.exists()
    # Nothing was made again, and the refused request's keys went with its record.
    assert _stored(directory) == {}
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "holds no request" not in logged and "registering again" not in logged
