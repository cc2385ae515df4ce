"""A merchant offering an XID that starts as an earlier purchase's: each purchase is
still named by an id of its own, which ``inquire`` takes back.

The merchant picks the XID. One that shares its first 4 bytes with an earlier purchase's
used to make the two purchases' short ids equal: every message named both alike, and the
id the wallet gave for asking about the new purchase (``inquire``) was ambiguous. What a
purchase is named by, as it is made and after, is now the shortest start of its XID no
other purchase of the wallet shares.
"""

from __future__ import annotations

import logging

import pytest

from clients.errors import PurchaseOutcomeUnknown
from clients.transport import Caller
from clients.wallet import purchases
from clients.wallet.purchases import SENT, PurchaseBook, PurchaseRecord
from clients.wallet.runtime import Wallet
from tests.clients.bank_support import WALLET_PASSPHRASE
from tests.clients.cli_support import run_cli
from tests.clients.conftest import MerchantFactory, WalletFactory
from tests.clients.test_purchase_flow import buy, offer
from tests.clients.wallet.test_lost_pres import AnswerLost
from tests.clients.wallet.test_offered_xid import _next_xid_is

APPROVED = "COMPLETION_CODE_AUTHORIZATION_PERFORMED"


def _twin(xid: str, shared: int) -> str:
    """An XID of ``xid``'s length sharing exactly its first ``shared`` hex digits."""
    flipped = "0" if xid[shared] != "0" else "1"
    return xid[:shared] + flipped + xid[shared + 1 :]


def _argv(wallet: Wallet) -> list[str]:
    return ["wallet", "--dir", str(wallet.config.base_dir)]


def _logged(caplog: pytest.LogCaptureFixture, start: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith(start)]


def test_a_purchase_sent_unanswered_is_named_by_an_id_inquire_takes(
    make_merchant: MerchantFactory,
    make_wallet: WalletFactory,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    merchant = make_merchant("m-twin-xid-lost")
    wallet = make_wallet(merchant)
    first = buy(wallet, offer(merchant, 1100))
    assert first.completion == APPROVED
    twin = _twin(first.xid, 8)
    assert twin[:8] == first.xid[:8] and twin[:9] != first.xid[:9]

    _next_xid_is(monkeypatch, twin)
    monkeypatch.setattr(purchases, "Caller", AnswerLost)
    caplog.set_level(logging.INFO, logger="setpay.wallet")
    with pytest.raises(PurchaseOutcomeUnknown) as caught:
        buy(wallet, offer(merchant, 700))
    monkeypatch.setattr(purchases, "Caller", Caller)

    book = PurchaseBook(wallet.config.purchases_file)
    sent: PurchaseRecord
    held, sent = book.all()
    assert held == first and (sent.xid, sent.completion) == (twin, SENT)
    # The error, and the log as the PReq left, name the new purchase by 9 digits, which
    # find takes for it alone; the earlier purchase is now shown by 9 digits of its own.
    named = caught.value.short_id
    assert named == twin[:9] and book.find(named) == sent
    assert f"purchase {named} sent, outcome unknown" in str(caught.value)
    assert f"`setpay wallet inquire {named}`" in str(caught.value)
    assert _logged(caplog, "PReq ") == [
        f"PReq {named}: card {wallet.card(WALLET_PASSPHRASE).pan.masked}, 700 (978), "
        "PI sealed to the gateway"
    ]
    (offered,) = _logged(caplog, "PInitRes verified")
    assert offered.endswith(f", XID {named}")
    assert book.short_id(first.xid) == first.xid[:9]

    # The command the error gives asks about the new purchase, and prints the same id.
    monkeypatch.setenv("SETPAY_WALLET_PASSPHRASE", WALLET_PASSPHRASE)
    status, out, err = run_cli([*_argv(wallet), "inquire", named], capsys)
    assert (status, err) == (0, "")
    assert out.startswith(f"{named}  AUTHORIZATION_PERFORMED  APPROVED  amount 700 ")
    assert book.find(named).completion == APPROVED
    assert book.find(first.xid[:9]) == first

    # The 8 digits both share name neither: the error names each by its own id.
    status, out, err = run_cli([*_argv(wallet), "inquire", first.xid[:8]], capsys)
    assert (status, out) == (1, "")
    assert err == (
        f"setpay wallet: ambiguous purchase id: 2 purchases start with it: "
        f"{first.xid[:9]}, {named}; give one of these ids\n"
    )


def test_the_purchase_command_prints_an_id_inquire_takes(
    make_merchant: MerchantFactory,
    make_wallet: WalletFactory,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    merchant = make_merchant("m-twin-xid-cli")
    wallet = make_wallet(merchant)
    first = buy(wallet, offer(merchant, 2100))
    twin = _twin(first.xid, 12)  # 6 bytes in common: 13 digits tell them apart
    monkeypatch.setenv("SETPAY_WALLET_PASSPHRASE", WALLET_PASSPHRASE)

    _next_xid_is(monkeypatch, twin)
    initiation = offer(merchant, 300)
    status, out, err = run_cli(
        [*_argv(wallet), "purchase", "--lid-m", initiation.lid_m.hex(),
         "--description", initiation.description.decode(), "--amount", "300"],
        capsys,
    )  # fmt: skip
    assert (status, err) == (0, "")
    assert out.startswith(f"{twin[:13]}  AUTHORIZATION_PERFORMED  APPROVED  amount 300 ")

    status, out, err = run_cli([*_argv(wallet), "inquire", twin[:13]], capsys)
    assert (status, err) == (0, "")
    assert out.startswith(f"{twin[:13]}  AUTHORIZATION_PERFORMED  APPROVED  amount 300 ")
    status, out, err = run_cli([*_argv(wallet), "inquire", first.xid[:13]], capsys)
    assert (status, err) == (0, "")
    assert out.startswith(f"{first.xid[:13]}  AUTHORIZATION_PERFORMED  APPROVED  amount 2100 ")
