"""``setpay ca prune-gateway`` on a served bank whose ledger holds a sale and a capture
decided but never answered (the gateway failed in between), sealed to a key-exchange
certificate revoked since.

The bank answers them at the merchant's retry with the revoked certificate's key while it
holds it (``gateway.servicer``). The pruning would delete that key: it is refused,
nothing deleted, and the bank, started again, answers both. Then the same pruning goes
ahead, and the stored answers need no key. Before, the pruning deleted the key and both
were answered UNAVAILABLE at every retry until it was restored from a backup
(``test_recipient_revoked_resend``).

Real parts: a served bank renewed as an operator does, ``setpay ca revoke`` and ``setpay
ca prune-gateway`` through the CLI, and the merchant's own gateway client.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.bank_pki import GATEWAY_KEX_LABEL
from setpay.v1 import authorization_pb2 as a
from tests.cli.test_ca_prune import _ca

from .renewal_support import key_versions
from .test_gateway_renewal import Served
from .test_recipient_revoked_resend import (
    _merchant_authorizes,
    _merchant_captures,
    _unanswered_then_revoked,
)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    bank = Served(tmp_path / "bank")
    yield bank
    bank.stop()


def _prune(served: Served, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    config = str(served.directory / "setpay.toml")
    return _ca(["prune-gateway", "--config", config, "--yes"], capsys)


def test_the_key_of_a_decision_awaiting_its_answer_is_kept_until_it_is_answered(
    served: Served, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    merchant, (auth, auth_state), (cap, cap_state) = _unanswered_then_revoked(
        served, "M-prune-unanswered", monkeypatch
    )
    kept = served.directory / "certs" / "gateway-kex.v1.der"

    code, out, err = _prune(served, capsys)
    assert (code, out) == (1, ""), err
    ledger = f"sqlite:{served.directory / 'ledger.db'}"
    assert f"the ledger ({ledger}) holds 2 decided requests whose answer was never" in err
    assert "min after; 0 checked later not counted)" in err, err
    assert err.rstrip().endswith("; nothing deleted")
    assert kept.exists() and (GATEWAY_KEX_LABEL, 1) in key_versions(served.config())

    # The key kept, the bank answers both at the merchant's retry.
    served.start()
    result = _merchant_authorizes(served, merchant, auth, auth_state)
    assert result.auth_code == a.AUTH_CODE_APPROVED
    assert result.data.auth_res_payload.cap_res_payload.cap_code == a.CAP_CODE_SUCCESS
    assert _merchant_captures(served, merchant, cap, cap_state) == "CAP_CODE_SUCCESS"
    served.stop()

    code, out, err = _prune(served, capsys)
    assert code == 0, err
    assert "deleted key gateway-kex v1: its certificate revoked" in out.splitlines()
    assert not kept.exists() and (GATEWAY_KEX_LABEL, 1) not in key_versions(served.config())
    # Stored answers need no key.
    served.start()
    again = _merchant_authorizes(served, merchant, auth, auth_state)
    assert again.data == result.data
    assert _merchant_captures(served, merchant, cap, cap_state) == "CAP_CODE_SUCCESS"
