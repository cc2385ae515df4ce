"""The characters a name may hold (``setcore.names``): every script's, joiners too; no
control, separator or bidirectional control."""

from __future__ import annotations

import sys
import unicodedata

import pytest

from setcore.names import BIDI_CONTROLS, describe, refused_character

# The bidirectional classes of the embeddings, overrides and isolates: the characters
# that reorder what follows them on screen.
_REORDERING_CLASSES = {"LRE", "RLE", "PDF", "LRO", "RLO", "LRI", "RLI", "FSI", "PDI"}
# The marks: format characters of a strong direction (LRM, RLM, ALM), as good as one
# letter of that script placed where no letter shows.
_MARKS = {"\u200e", "\u200f", "\u061c"}


def test_the_bidirectional_controls_are_unicodes_whole_set() -> None:
    found = {
        chr(code) for code in range(sys.maxunicode + 1)
        if unicodedata.bidirectional(chr(code)) in _REORDERING_CLASSES
    }  # fmt: skip
    assert found | _MARKS == BIDI_CONTROLS


@pytest.mark.parametrize(
    "name",
    [
        "\u0645\u06cc\u200c\u062e\u0627\u0646\u0647",  # Persian: a zero-width non-joiner
        "\u0915\u094d\u200d\u0937",  # Devanagari: a conjunct held half-formed by ZWJ
        "\U0001f468\u200d\U0001f469\u200d\U0001f467",  # an emoji family: ZWJ sequence
        "Donau\u00addampf\u00adschiff",  # soft hyphens
        "Caf\u00e9 \u5c71\u7530",
    ],
)
def test_names_real_merchants_have_are_taken(name: str) -> None:
    assert refused_character(name) is None


@pytest.mark.parametrize(
    ("name", "refused"),
    [
        ("a\nb", "\n"),  # Cc: forges a line
        ("a\u2028b", "\u2028"),  # Zl
        ("a\u2029b", "\u2029"),  # Zp
        ("m-\u202eevil", "\u202e"),  # RIGHT-TO-LEFT OVERRIDE
        ("a\u2067b\u2069", "\u2067"),  # RIGHT-TO-LEFT ISOLATE, the first refused one
    ],
)
def test_the_first_refused_character_is_named(name: str, refused: str) -> None:
    assert refused_character(name) == refused


def test_a_refused_character_is_described_by_code_point_and_name() -> None:
    assert describe("\u202e") == "U+202E RIGHT-TO-LEFT OVERRIDE"
    assert describe("\n") == "U+000A control character"
