"""Fingerprints on the command line: colon-separated, so no PAN scanner mistakes one."""

from __future__ import annotations

from cli.ca import parse_thumb
from cli.fingerprint import colon_hex
from tests.cards import VISA
from tests.clients.pan_scan import luhn_runs


def test_a_digest_is_shown_as_colon_separated_pairs_and_read_back() -> None:
    digest = bytes(range(32))
    shown = colon_hex(digest)
    assert shown.startswith("00:01:02:03:") and shown.endswith(":1E:1F")
    assert len(shown) == 32 * 3 - 1
    assert parse_thumb(shown) == digest  # what ca revoke --thumb accepts


def test_a_digest_whose_hex_looks_like_a_card_number_is_not_shown_as_one() -> None:
    # Plain hex of this digest starts with a Luhn-valid 16-digit run (a test card),
    # ended by a letter.
    digest = bytes.fromhex(VISA + "ab" * 24)
    assert luhn_runs(digest.hex().encode()) != []  # what plain hex printed
    assert luhn_runs(colon_hex(digest).encode()) == []
