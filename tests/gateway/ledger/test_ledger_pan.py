"""PAN protection: keys, sealing bound to the account, keyed index, masking."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.ledger import InvalidRequest, Ledger, LedgerKeys, PanUnreadable
from gateway.ledger.pan import mask_pan, open_pan, pan_index, seal_pan, validate_pan
from setcore.pan import MAX_PAN_DIGITS, MIN_PAN_DIGITS, PAN
from tests.cards import AMEX, NINETEEN_DIGITS, luhn_complete
from tests.gateway.ledger.ledger_support import EUR, EXPIRY, PAN_A, PAN_B, sqlite_backend

# A card of each length a SET card may have (a 4, then twos, and the Luhn check digit).
CARDS = [luhn_complete("4" + "2" * (n - 2)) for n in range(MIN_PAN_DIGITS, MAX_PAN_DIGITS + 1)]


def test_keys_repr_hides_both_keys() -> None:
    keys = LedgerKeys(data_key=b"\x01" * 32, index_key=b"\x02" * 32)
    shown = repr(keys) + str(keys)
    assert "redacted" in shown
    assert "\\x01" not in shown and "\\x02" not in shown and "01010101" not in shown


@pytest.mark.parametrize(
    ("data_key", "index_key", "match"),
    [
        (b"\x01" * 31, b"\x02" * 32, "32 bytes each"),
        (b"\x01" * 32, b"\x02" * 33, "32 bytes each"),
        (b"\x03" * 32, b"\x03" * 32, "must differ"),
    ],
)
def test_keys_must_be_32_bytes_and_distinct(data_key: bytes, index_key: bytes, match: str) -> None:
    with pytest.raises(InvalidRequest, match=match):
        LedgerKeys(data_key=data_key, index_key=index_key)


def test_sealed_pan_opens_only_for_its_account() -> None:
    keys = LedgerKeys.generate()
    sealed = seal_pan(keys, "card-1", PAN_A)
    assert PAN_A.encode() not in sealed
    assert open_pan(keys, "card-1", sealed) == PAN_A
    with pytest.raises(PanUnreadable) as excinfo:
        open_pan(keys, "card-2", sealed)
    assert PAN_A not in str(excinfo.value)


def test_sealed_pan_does_not_open_under_another_key() -> None:
    sealed = seal_pan(LedgerKeys.generate(), "card-1", PAN_A)
    with pytest.raises(PanUnreadable):
        open_pan(LedgerKeys.generate(), "card-1", sealed)


@pytest.mark.parametrize("length", [0, 5, 11, 27])
def test_a_stored_pan_too_short_to_hold_a_nonce_and_a_tag_is_unreadable(length: int) -> None:
    """A damaged row is PanUnreadable, as a wrong key is, never a bare ValueError."""
    with pytest.raises(PanUnreadable, match="too short"):
        open_pan(LedgerKeys.generate(), "card-1", bytes(length))


def test_sealing_is_randomized() -> None:
    keys = LedgerKeys.generate()
    assert seal_pan(keys, "card-1", PAN_A) != seal_pan(keys, "card-1", PAN_A)


def test_index_is_keyed_and_deterministic() -> None:
    keys = LedgerKeys.generate()
    assert pan_index(keys, PAN_A) == pan_index(keys, PAN_A)
    assert pan_index(keys, PAN_A) != pan_index(keys, PAN_B)
    assert pan_index(keys, PAN_A) != pan_index(LedgerKeys.generate(), PAN_A)


@pytest.mark.parametrize(
    ("pan", "masked"),
    [
        (PAN_A, "411111******1111"),
        (NINETEEN_DIGITS, "601100*********4520"),
        (AMEX, "37828******0005"),
        (CARDS[0], "422******2222"),
    ],
)
def test_mask_shows_bin_and_last_four_and_hides_at_least_six(pan: str, masked: str) -> None:
    assert mask_pan(pan) == masked
    assert masked.count("*") >= 6


@pytest.mark.parametrize(
    "pan",
    [
        "",
        "41111111111",
        "4" + "1" * 11,  # 12 digits: an ISO/IEC 7812 PAN, but no SET card (setcore.pan)
        "4" + "1" * 19,
        "4111 1111 1111 1111",
        "\uff14\uff11\uff11\uff11" * 4,
    ],
)
def test_malformed_pan_refused_without_echo(pan: str) -> None:
    with pytest.raises(InvalidRequest, match=r"^pan must be") as excinfo:
        validate_pan(pan)
    if pan:
        assert pan not in str(excinfo.value)


@pytest.mark.parametrize("digits", CARDS, ids=lambda digits: f"{len(digits)}-digits")
def test_the_ledger_masks_a_card_as_setcore_does(digits: str) -> None:
    """One card, one printed form: the ledger's column and ``PAN.masked`` agree."""
    assert mask_pan(digits) == PAN(digits).masked == str(PAN(digits))


def test_an_opened_account_shows_the_card_as_the_pan_does(tmp_path: Path) -> None:
    ledger = Ledger(sqlite_backend(tmp_path / "ledger.db").open_store(), LedgerKeys.generate())
    try:
        for digits in (CARDS[0], AMEX, PAN_A):
            card = ledger.open_card_account(digits, EXPIRY, 1000, EUR)
            assert card.masked_pan == PAN(digits).masked
            assert ledger.find_card_account(digits).masked_pan == PAN(digits).masked
        # The ledger takes no card setcore would refuse (none could register or pay).
        with pytest.raises(InvalidRequest, match="13 to 19 digits"):
            ledger.open_card_account(luhn_complete("4" * 11), EXPIRY, 1000, EUR)
    finally:
        ledger.close()
