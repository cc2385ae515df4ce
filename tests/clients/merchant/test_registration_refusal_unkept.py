"""A merchant whose first send was refused and the refusal lost, resending once the
request's date is past the freshness window: the register that follows says what can
have happened.

Real bank, real CA over gRPC and TLS on an OS-chosen port, real soft keys. The ID is held
(another merchant registered it), so the CA refuses the request (REJECTED_BY_AGENT) and
keeps nothing of it (``gateway.ca.replay``); its answer is lost. The resend, over five
minutes after the request's date, is refused MESSAGE_TOO_OLD and the CertInq that follows
finds no request (UNKNOWN_LID). The merchant was told the request "never arrived, or was
refused more than its retention ago": the CA keeps no refusal at all, for no retention.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from clients.errors import RegistrationError, TransportError
from clients.merchant import registration as registration_module
from clients.merchant.registration import PENDING_FILE
from setcore import registration_merchant
from setcore.freshness import FRESHNESS_WINDOW_MS, now_ms
from setcore.profiles import EC
from setpay.v1 import registration_pb2
from tests.clients.bank_support import (
    RunningBank,
    configure_merchant,
    merchant_registrar,
    register_merchant,
)
from tests.clients.merchant.test_registration_lost_answer import _answer_lost

# The first send is dated this long ago: fresh when it arrives, too old a few seconds on.
ALMOST_MS = FRESHNESS_WINDOW_MS - 2_000
PAST_THE_WINDOW_S = 3
NOT_HELD = (
    "it never arrived, or was refused (the CA keeps no refusal, which changes nothing), or"
    " it opened the settlement account and came back after its session's hour: if register"
    " is then refused, ask the bank for the account id (`setpay bank show-merchant`) and"
    " register with --account-file"
)


def _refused_and_lost(
    bank: RunningBank,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    name: str,
    form: dict[str, str] | None,
) -> Path:
    """A merchant of an ID another holds, whose first send (dated ``ALMOST_MS`` ago) the
    CA refused, its answer lost; returned once that request's date is past the window."""
    merchant_id = f"m-unkept-{name}"
    holder = tmp_path / "holder"
    configure_merchant(bank, holder, merchant_id)
    register_merchant(holder)
    other = tmp_path / "other"
    configure_merchant(bank, other, merchant_id)
    real: Callable[..., Any] = registration_merchant.build_merchant_cert_request

    def dated(*args: Any, **kwargs: Any) -> Any:
        with monkeypatch.context() as patch:
            patch.setattr(registration_merchant, "now_ms", lambda: now_ms() - ALMOST_MS)
            return real(*args, **kwargs)

    monkeypatch.setattr(registration_module, "build_merchant_cert_request", dated)
    _answer_lost(monkeypatch)
    with pytest.raises(TransportError), merchant_registrar(other) as registrar:
        registrar.register(EC, form=form)
    monkeypatch.undo()
    assert (other / PENDING_FILE).exists()
    time.sleep(PAST_THE_WINDOW_S)
    return other


def test_a_request_made_with_a_form_says_it_may_have_been_refused(
    bank: RunningBank,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    other = _refused_and_lost(
        bank, tmp_path, monkeypatch, "form", {"contact-email": "shop@example.org"}
    )
    with (
        caplog.at_level(logging.INFO),
        pytest.raises(RegistrationError) as stopped,
        merchant_registrar(other) as registrar,
    ):
        registrar.register(EC)
    assert "ERROR_CODE_MESSAGE_TOO_OLD" in caplog.text  # the resend, judged for its date
    message = str(stopped.value)
    assert f"({NOT_HELD}), so it is discarded" in message, message
    assert "it was made with form: run register again with them" in message, message
    assert "to be certified or to hear the refusal" in message, message
    assert "retention" not in message, message
    assert not (other / PENDING_FILE).exists()


def test_a_request_made_without_options_registers_again_and_hears_the_refusal(
    bank: RunningBank,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    other = _refused_and_lost(bank, tmp_path, monkeypatch, "plain", None)
    with (
        caplog.at_level(logging.WARNING),
        pytest.raises(RegistrationError) as refused,
        merchant_registrar(other) as registrar,
    ):
        registrar.register(EC)
    warned = [r.getMessage() for r in caplog.records if "holds no request" in r.getMessage()]
    assert warned == [
        f"the Merchant CA holds no request for the unfinished registration ({NOT_HELD}): "
        "registering again"
    ]
    # The new request is decided, and refused for what refused the first.
    assert refused.value.status == registration_pb2.CERT_STATUS_CODE_REJECTED_BY_AGENT
    assert not (other / PENDING_FILE).exists()
