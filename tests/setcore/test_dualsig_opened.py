"""The gateway's opening of a PI checks for itself that the envelope gave it the PANData,
rather than trusting ``open_sealed`` by an assert that ``python -O`` strips."""

from __future__ import annotations

import os
from typing import Any

import pytest

from setcore import dualsig
from setcore.envelope import Opened
from setcore.errors import ErrorCode, ProtocolError

from .conftest import Party
from .test_dualsig import _preq, _purchase


def test_a_pi_opened_without_its_pandata_is_refused(
    cardholder: Party, gateway: Party, monkeypatch: pytest.MonkeyPatch
) -> None:
    xid = os.urandom(32)
    dual, _, _ = _purchase(cardholder, gateway, xid=xid)
    view = dualsig.parse_purchase(_preq(dual))
    real = dualsig.open_sealed

    def without_extra(*args: Any, **kwargs: Any) -> Opened:
        return Opened(plaintext=real(*args, **kwargs).plaintext, extra=None)

    monkeypatch.setattr(dualsig, "open_sealed", without_extra)
    with pytest.raises(ProtocolError) as exc:
        dualsig.open_payment_instruction(
            view.pi_bytes, gateway.backend, gateway.kex, gateway.kex_thumb, xid=xid
        )
    assert exc.value.code == ErrorCode.ERROR_CODE_DECODING_FAILURE
    assert exc.value.reason == "PI carries no PANData"
