"""The gateway the merchant's first PCertRes named is kept in its database: a later start,
or a command beside a serving merchant, is refused another gateway, naming both, until an
operator clears the pin (``setpay merchant forget-gateway``). The other gateway is one
the bank's own Payment Gateway CA certified under another name (``gateway_support``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from clients.merchant.store import MerchantStore
from setcore.errors import ErrorCode, ProtocolError
from setcore.pki.certificate import load_certificate
from tests.clients.bank_support import RunningBank
from tests.clients.cli_support import run_cli
from tests.clients.conftest import MerchantFactory, WalletFactory
from tests.clients.merchant.gateway_support import (
    OTHER_GATEWAY,
    answering_pcertreq,
    other_gateway,
)
from tests.clients.merchant.outage_support import restart
from tests.clients.test_purchase_flow import buy, offer


def _refused_start(directory: Path) -> ProtocolError:
    """``serve``'s start on ``directory``, which must be refused: the refusal."""
    with pytest.raises(ProtocolError) as caught:
        restart(directory).close()  # (closed when it wrongly started)
    return caught.value


def test_a_start_refuses_another_gateway_until_the_pin_is_forgotten(
    bank: RunningBank,
    make_merchant: MerchantFactory,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The merchant's first start pins the bank's gateway. Started again with another
    gateway of the brand answering its PCertReq, it refuses to start, naming both and
    the way out; the operator clears the pin, and the next start takes the other one.

    Before: the pin lived in the process: each start took whichever gateway answered its
    first PCertReq, and judged the requests stored before by that one."""
    first = make_merchant("m-pin-restart")
    ours = first.gateway.gateway_identity()
    directory = first.config.base_dir
    first.close()
    answering_pcertreq(bank, monkeypatch)

    refused = _refused_start(directory)
    assert refused.code == ErrorCode.ERROR_CODE_INVALID_CERTIFICATE
    assert f"PCertRes names gateway 'CN={OTHER_GATEWAY}," in refused.reason
    assert f"not {ours}" in refused.reason
    assert "setpay merchant forget-gateway" in refused.reason
    # A second start is refused the same: the pin is not the first start's to forget.
    assert _refused_start(directory).reason == refused.reason

    status, out, err = run_cli(["merchant", "--dir", str(directory), "forget-gateway"], capsys)
    assert (status, err) == (0, "")
    assert out.startswith(f"forgot gateway {ours}, pinned since ")
    again = restart(directory)
    try:
        assert f"CN={OTHER_GATEWAY}," in str(again.gateway.gateway_identity())
        pin = again.store.gateway_pin()  # kept for the starts after it
        assert pin is not None and pin.identity == again.gateway.gateway_identity()
    finally:
        again.close()


def test_a_command_beside_the_merchant_is_held_to_its_pin(
    bank: RunningBank,
    make_merchant: MerchantFactory,
    make_wallet: WalletFactory,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A capture command, a process of its own on the merchant's database, with another
    gateway answering its PCertReq: refused before anything is stored or sent.

    Before: it took the other gateway as its own, and sealed the capture to it."""
    merchant = make_merchant("m-pin-command")
    record = buy(make_wallet(merchant), offer(merchant, 900))
    assert record.auth_code == "AUTH_CODE_APPROVED"
    answering_pcertreq(bank, monkeypatch)
    directory = str(merchant.config.base_dir)
    status, _, err = run_cli(["merchant", "--dir", directory, "capture", record.xid[:12]], capsys)
    assert status == 1
    assert f"PCertRes names gateway 'CN={OTHER_GATEWAY}," in err and "forget-gateway" in err
    assert merchant.store.operations(bytes.fromhex(record.xid)) == []


def test_the_first_pin_written_wins(bank: RunningBank, store: MerchantStore) -> None:
    """Two processes pinning at once (a start and a command): the second is handed the
    first's pin, to refuse its own gateway by; forgetting clears it for the next."""
    gateway = bank.pki.gateway.signature_cert
    other = other_gateway(bank).signature_cert
    assert store.gateway_pin() is None
    pinned = store.pin_gateway(gateway, "setpay")
    assert pinned.identity.subject == load_certificate(gateway).subject
    assert store.pin_gateway(other, "setpay") == pinned
    assert store.forget_gateway() == pinned
    assert store.forget_gateway() is None
    assert store.pin_gateway(other, "setpay").identity.subject == load_certificate(other).subject
