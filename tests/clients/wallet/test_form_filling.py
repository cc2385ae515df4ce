"""The wallet's filling of the Cardholder CA's form: a refusal quotes the CA's names."""

from __future__ import annotations

import pytest

from clients.errors import RegistrationError
from clients.wallet.form_filling import filled_fields
from setcore.errors import MAX_QUOTED_CHARS, quoted
from setcore.registration import MAX_FORM_ID_CHARS, MAX_FORM_TEXT_CHARS, RegistrationForm
from setcore.registration_cardholder import ENROLMENT_CODE_FIELD

# What a hostile CA may put into its form and the wallet's refusal would print: a line
# break and a terminal escape (a forged second line, a cleared screen), at the longest a
# form read off the wire may have (read_form's bounds).
HOSTILE_FIELD = ("name\n\x1b[2J" + "x" * MAX_FORM_TEXT_CHARS)[:MAX_FORM_TEXT_CHARS]
HOSTILE_FORM_ID = ("form\r\x07" + "y" * MAX_FORM_ID_CHARS)[:MAX_FORM_ID_CHARS]


def _form(form_id: str, *fields: str) -> RegistrationForm:
    return RegistrationForm(
        request_type=0, chall_ca=b"\x01" * 20, form_id=form_id, fields=fields, policy_text=""
    )


def test_a_refusal_quotes_and_bounds_the_cas_names() -> None:
    """The form's id and fields are a peer's words: the refusal, which the command prints,
    stays one line without control characters, each name cut to MAX_QUOTED_CHARS."""
    form = _form(HOSTILE_FORM_ID, "cardholder-name", HOSTILE_FIELD)
    with pytest.raises(RegistrationError) as refused:
        filled_fields(form, {"postcode": "1000"})
    said = str(refused.value)
    assert said.isprintable(), said
    assert quoted(HOSTILE_FORM_ID) in said and quoted(HOSTILE_FIELD) in said
    assert f"({MAX_FORM_TEXT_CHARS} characters)" in said
    assert "x" * (MAX_QUOTED_CHARS + 1) not in said
    assert "has no field 'postcode'" in said


def test_an_unasked_name_given_that_is_no_plain_name_is_measured() -> None:
    """What the user gave (--form) is repeated only when plainly a field name: one with a
    tab is measured, and the CA's names are still quoted."""
    with pytest.raises(RegistrationError) as refused:
        filled_fields(_form("setpay-ch", "cardholder-name"), {"post\tcode": "1000"})
    assert str(refused.value).endswith(
        "has no field named by the 9 characters given (not repeated: only a plain field "
        "name is) (its fields: 'cardholder-name')"
    )


def test_a_form_is_filled_in_its_own_order() -> None:
    """The values given, the enrolment code where asked for, every other field empty."""
    form = _form("setpay-ch", "cardholder-name", ENROLMENT_CODE_FIELD, "billing-postcode")
    filled = filled_fields(form, {"cardholder-name": "A. Holder"}, code="1234")
    assert filled == [
        ("cardholder-name", "A. Holder"),
        (ENROLMENT_CODE_FIELD, "1234"),
        ("billing-postcode", ""),
    ]
