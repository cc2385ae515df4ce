"""A card account's enrolment code (schema version 5), on every store: kept as a keyed
hash bound to the account, compared in constant time, replaced by a new one."""

from __future__ import annotations

import pytest

from gateway.ledger import AccountStateError, InvalidRequest, Ledger, LedgerKeys, UnknownAccount
from gateway.ledger.enrolment import (
    ENROLMENT_CODE_BITS,
    ENROLMENT_CODE_CHARS,
    new_enrolment_code,
    normalize_enrolment_code,
)
from gateway.ledger.pan import enrolment_code_hash
from tests.gateway.ledger.ledger_support import EUR, EXPIRY, PAN_A, PAN_B, Backend

# Codes drawn to see that each is new and well formed: a collision among this many 80-bit
# codes would be a broken generator, not chance.
DRAWS = 200


def test_a_code_is_eighty_bits_in_groups_a_person_can_type() -> None:
    codes = {new_enrolment_code() for _ in range(DRAWS)}
    assert len(codes) == DRAWS
    assert ENROLMENT_CODE_BITS >= 80
    for code in codes:
        groups = code.split("-")
        assert [len(g) for g in groups] == [4] * (ENROLMENT_CODE_CHARS // 4)
        assert normalize_enrolment_code(code) == code.replace("-", "")
        assert normalize_enrolment_code(code.lower().replace("-", " ")) == code.replace("-", "")
    assert normalize_enrolment_code("") is None
    assert normalize_enrolment_code("U" * ENROLMENT_CODE_CHARS) is None  # not in the alphabet
    assert normalize_enrolment_code("A" * (ENROLMENT_CODE_CHARS + 1)) is None


def test_a_card_opened_with_a_code_matches_it_only(ledger: Ledger) -> None:
    code = new_enrolment_code()
    account = ledger.open_card_account(PAN_A, EXPIRY, 1000, EUR, enrolment_code=code)
    found = ledger.check_enrolment(PAN_A, code)
    assert found.account == account and found.has_code and found.code_matches
    for wrong in (new_enrolment_code(), "", None, "no code", code[:-1]):
        checked = ledger.check_enrolment(PAN_A, wrong)
        assert checked.has_code and not checked.code_matches
    assert ledger.find_card_account(PAN_A) == account


def test_a_card_without_a_code_matches_none(ledger: Ledger) -> None:
    ledger.open_card_account(PAN_B, EXPIRY, 1000, EUR)
    checked = ledger.check_enrolment(PAN_B, new_enrolment_code())
    assert not checked.has_code and not checked.code_matches
    with pytest.raises(UnknownAccount):
        ledger.check_enrolment(PAN_A, None)


def test_a_new_code_replaces_the_earlier_one_and_a_closed_card_gets_none(ledger: Ledger) -> None:
    account = ledger.open_card_account(PAN_A, EXPIRY, 1000, EUR)
    first, second = new_enrolment_code(), new_enrolment_code()
    ledger.set_enrolment_code(account.account_id, first)
    assert ledger.check_enrolment(PAN_A, first).code_matches
    ledger.set_enrolment_code(account.account_id, second)
    assert not ledger.check_enrolment(PAN_A, first).code_matches
    assert ledger.check_enrolment(PAN_A, second).code_matches
    with pytest.raises(InvalidRequest):
        ledger.set_enrolment_code(account.account_id, "not a code")
    ledger.close_card_account(account.account_id)
    with pytest.raises(AccountStateError):
        ledger.set_enrolment_code(account.account_id, new_enrolment_code())
    with pytest.raises(UnknownAccount):
        ledger.set_enrolment_code("card-none", new_enrolment_code())


def test_the_hash_is_keyed_and_bound_to_its_account(
    backend: Backend, ledger: Ledger, keys: LedgerKeys
) -> None:
    """A hash copied onto another card's row matches nothing there."""
    code = new_enrolment_code()
    a = ledger.open_card_account(PAN_A, EXPIRY, 1000, EUR, enrolment_code=code)
    b = ledger.open_card_account(PAN_B, EXPIRY, 1000, EUR, enrolment_code=new_enrolment_code())
    canonical = normalize_enrolment_code(code) or ""
    held = enrolment_code_hash(keys, a.account_id, canonical)
    assert held != enrolment_code_hash(keys, b.account_id, canonical)
    assert held != enrolment_code_hash(LedgerKeys.generate(), a.account_id, canonical)
    backend.raw_execute(
        "UPDATE card_accounts SET enrolment_hash = (SELECT enrolment_hash FROM card_accounts"
        f" WHERE account_id = '{a.account_id}') WHERE account_id = '{b.account_id}'"
    )
    assert not ledger.check_enrolment(PAN_B, code).code_matches
    # Nor is the code in the database's files in any form a person would type it.
    stored = b"".join(path.read_bytes() for path in backend.files() if path.is_file())
    for form in (code, canonical, code.lower(), canonical.lower()):
        assert form.encode() not in stored
