"""An enrolment code's written form, and what a refusal repeats of a text given as a form
field's name: only a plain field name, never what could be a card number or a code, a
code without a digit in it included (about one in 400 is one)."""

from __future__ import annotations

import pytest

from setcore.enrolment_code import (
    ENROLMENT_CODE_CHARS,
    MAX_SHOWN_NAME_LETTERS,
    could_be_enrolment_code,
    given_name,
    normalize_enrolment_code,
)
from tests.cards import VISA

# A code as an issuer's letter may print it, with no digit in it: 22 of the alphabet's 32
# characters are letters, so (22/32)^16, about one code in 400, is one of these.
NO_DIGIT_CODE = "BNJZ-TZXB-KRPV-EXSM"
CODE = "7K3M-Q9TX-4B2D-8F6H"
# The code in fullwidth letters: letters, but not ASCII, so no code's shape.
FULLWIDTH_CODE = NO_DIGIT_CODE.replace("-", "").translate(
    {ord(c): ord(c) + 0xFEE0 for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ"}
)
LENGTH_ONLY = "characters given (not repeated: only a plain field name is)"

# Every way a code may be typed that a name-shaped check alone would let through or
# that the CA would read as the code.
CODE_SHAPES = {
    "no-digit": NO_DIGIT_CODE,
    "lower-case": NO_DIGIT_CODE.lower(),
    "no-separators": NO_DIGIT_CODE.replace("-", ""),
    "spaced": NO_DIGIT_CODE.replace("-", " "),
    "mixed-case": "bNjZ-tZxB-kRpV-eXsM",
    "read-as": "BNJZ-TZXB-KRPV-EXSL",  # L for 1: the CA reads it as a code
    "miscopied-u": "BNJZ-TZXB-KRPU-EXSM",  # no code the CA takes, still 15 of 16 chars
    "with-digits": CODE,
}


@pytest.mark.parametrize("text", CODE_SHAPES.values(), ids=CODE_SHAPES.keys())
def test_a_code_however_typed_could_be_one(text: str) -> None:
    assert could_be_enrolment_code(text)


@pytest.mark.parametrize(
    "text",
    ["", "cardholder-name", "billing-postcode", NO_DIGIT_CODE[:-1], NO_DIGIT_CODE + "X",
     f"enrolment-code:{NO_DIGIT_CODE}", "BNJZ_TZXB_KRPV_EXSM", FULLWIDTH_CODE],
    ids=["empty", "field", "longest-field", "short", "long", "labelled", "underscores",
         "fullwidth"],
)  # fmt: skip
def test_other_text_is_not_code_shaped(text: str) -> None:
    """A character short or long, or not ASCII letters and digits between separators:
    not a code's shape (whether such text is repeated is ``given_name``'s other tests)."""
    assert not could_be_enrolment_code(text)


def test_the_ca_reads_back_what_could_be_a_code() -> None:
    """``could_be_enrolment_code`` is never narrower than what the CA takes."""
    for text in CODE_SHAPES.values():
        canonical = normalize_enrolment_code(text)
        assert canonical is None or len(canonical) == ENROLMENT_CODE_CHARS
    assert normalize_enrolment_code(NO_DIGIT_CODE.lower()) == NO_DIGIT_CODE.replace("-", "")
    assert normalize_enrolment_code(CODE_SHAPES["miscopied-u"]) is None


@pytest.mark.parametrize(
    "text",
    [*CODE_SHAPES.values(), f"enrolment-code:{NO_DIGIT_CODE}", f"code-{NO_DIGIT_CODE}x",
     VISA, "line-2", "post\tcode", "cardholder name", "name=", "-name", "name-", "a--b",
     "naïve", "x" * (MAX_SHOWN_NAME_LETTERS + 1), "\x1b[2Jname", ""],
    ids=[*CODE_SHAPES.keys(), "labelled-code", "code-in-name", "card", "digit", "tab",
         "space", "equals", "leading-hyphen", "trailing-hyphen", "double-hyphen",
         "non-ascii", "too-long", "escape", "empty"],
)  # fmt: skip
def test_anything_but_a_plain_field_name_is_only_measured(text: str) -> None:
    said = given_name(text)
    assert said == f"the {len(text)} {LENGTH_ONLY}"
    if text:
        assert text not in said and text.lower() not in said.lower()


@pytest.mark.parametrize(
    "text",
    ["cardholder-nmae", "legal-nmae", "Name", "billing-postcod", "billing-postcode", "e",
     "x" * MAX_SHOWN_NAME_LETTERS, "a-b-c-d-e-f-g-h-i-j-k-l-m-n-o"],
    ids=["misspelt", "merchant-misspelt", "capital", "short-postcode", "longest-field",
         "one-letter", "most-letters", "most-hyphens"],
)  # fmt: skip
def test_a_plain_field_name_is_named(text: str) -> None:
    """Letters and hyphens, fewer letters than a code has characters: a misspelt field,
    named so the holder can see the slip (setpay's longest, billing-postcode, fits)."""
    assert given_name(text) == repr(text)


@pytest.mark.parametrize(
    "text", ["billing-postcodes", "cardholder-full-name", "x" * (MAX_SHOWN_NAME_LETTERS + 1)]
)
def test_a_name_of_a_codes_letters_is_measured(text: str) -> None:
    """The price of the rule: a name of sixteen letters or more (hyphens aside) could be
    or hold a code, and is only measured; the CA's form lists its own names beside it."""
    assert given_name(text) == f"the {len(text)} {LENGTH_ONLY}"


def test_every_code_shape_is_measured() -> None:
    """What ``could_be_enrolment_code`` takes for a code is never repeated, whatever the
    name check says of it: the letter bound is below the code's length."""
    assert MAX_SHOWN_NAME_LETTERS < ENROLMENT_CODE_CHARS
    for text in [*CODE_SHAPES.values(), "A" * ENROLMENT_CODE_CHARS, "a-" * 15 + "a"]:
        assert could_be_enrolment_code(text)
        assert given_name(text) == f"the {len(text)} {LENGTH_ONLY}"
