"""The line ``setpay wallet purchase`` and ``inquire`` print: its columns stay put for any
outcome (id, completion, AuthCode or "-", amounts), and an order the merchant rejected
without an AuthCode is said as such, not as a reason named UNSPECIFIED."""

from __future__ import annotations

from dataclasses import replace

from cli.wallet import record_line
from clients.wallet.purchases import PurchaseRecord

APPROVED = PurchaseRecord(
    xid="6d4ad693" + "00" * 12, merchant_target="127.0.0.1:8443", merchant_thumb="ab" * 32,
    trans_ids="", currency=978, amount=4250, completion="COMPLETION_CODE_AUTHORIZATION_PERFORMED",
    auth_code="AUTH_CODE_APPROVED", auth_amount=4250, captured=0, credited=0,
)  # fmt: skip
REJECTED = replace(
    APPROVED, completion="COMPLETION_CODE_ORDER_REJECTED", auth_code="AUTH_CODE_UNSPECIFIED",
    auth_amount=0,
)  # fmt: skip
AMOUNTS = "amount 4250 (978) authorized 0 captured 0 refunded 0"


def test_a_rejected_order_without_an_auth_code_says_the_merchant_gave_no_reason() -> None:
    line = record_line(REJECTED)
    assert line == (
        f"6d4ad693  ORDER_REJECTED  -  {AMOUNTS}: the merchant rejected the order and gave "
        "no reason (SET's answer has no room for one): ask the merchant why"
    )
    assert "UNSPECIFIED" not in line


def test_the_columns_are_those_of_an_approved_purchase() -> None:
    approved = record_line(APPROVED).split()
    rejected = record_line(REJECTED).split()
    assert approved[:3] == ["6d4ad693", "AUTHORIZATION_PERFORMED", "APPROVED"]
    assert rejected[:3] == ["6d4ad693", "ORDER_REJECTED", "-"]
    for word in ("amount", "authorized", "captured", "refunded"):
        assert approved.index(word) == rejected.index(word)


def test_a_rejection_with_an_auth_code_names_it_and_adds_nothing() -> None:
    declined = replace(REJECTED, auth_code="AUTH_CODE_DECLINED")
    assert record_line(declined) == f"6d4ad693  ORDER_REJECTED  DECLINED  {AMOUNTS}"


def test_no_auth_code_reads_as_none_for_other_completions_too() -> None:
    received = replace(REJECTED, completion="COMPLETION_CODE_ORDER_RECEIVED")
    assert record_line(received) == f"6d4ad693  ORDER_RECEIVED  -  {AMOUNTS}"
