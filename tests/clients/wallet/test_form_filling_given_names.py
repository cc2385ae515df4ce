"""A field name given that the Cardholder CA's form lacks is refused without repeating
it unless it is plainly a field name: a card number or the card's enrolment code typed
as a name, a code without a digit in it too, would otherwise reach the terminal and the
logs (``setcore.enrolment_code.given_name``, the merchant's rule as well)."""

from __future__ import annotations

import pytest

from clients.errors import RegistrationError
from clients.wallet.form_filling import filled_fields
from setcore.registration import RegistrationForm
from setcore.registration_cardholder import ENROLMENT_CODE_FIELD
from tests.cards import VISA

CODE = "7K3M-Q9TX-4B2D-8F6H"
# About one code in 400 holds no digit: letters and hyphens, shaped like a field name.
NO_DIGIT_CODE = "BNJZ-TZXB-KRPV-EXSM"
NOT_REPEATED = "characters given (not repeated: only a plain field name is)"
FORM = RegistrationForm(
    request_type=0,
    chall_ca=b"\x01" * 20,
    form_id="setpay-ch",
    fields=("cardholder-name", ENROLMENT_CODE_FIELD),
    policy_text="",
)


@pytest.mark.parametrize(
    "name",
    [VISA, CODE, f"{VISA}-name", "line-2"],
    ids=["card", "code", "card-in-name", "digit-in-name"],
)
def test_a_name_with_a_digit_is_not_repeated(name: str) -> None:
    with pytest.raises(RegistrationError) as refused:
        filled_fields(FORM, {name: "x", "cardholder-name": "A. Holder"}, code=CODE)
    said = str(refused.value)
    assert name not in said and CODE not in said
    assert (
        f"has no field named by the {len(name)} {NOT_REPEATED} "
        f"(its fields: 'cardholder-name', '{ENROLMENT_CODE_FIELD}')"
    ) in said


@pytest.mark.parametrize(
    "name",
    [NO_DIGIT_CODE, NO_DIGIT_CODE.lower(), NO_DIGIT_CODE.replace("-", ""),
     f"{ENROLMENT_CODE_FIELD}:{NO_DIGIT_CODE}", f"code-{NO_DIGIT_CODE}"],
    ids=["code", "lower-case", "unseparated", "labelled", "in-a-name"],
)  # fmt: skip
def test_a_code_without_digits_is_not_repeated(name: str) -> None:
    """``--form CODE=x`` or ``--form enrolment-code:CODE=x``: the name is the code, which
    a digit-only rule quoted whole."""
    with pytest.raises(RegistrationError) as refused:
        filled_fields(FORM, {name: "x"}, code=CODE)
    said = str(refused.value)
    assert NO_DIGIT_CODE.replace("-", "").lower() not in said.replace("-", "").lower()
    assert f"has no field named by the {len(name)} {NOT_REPEATED} (its fields: " in said


def test_a_card_number_as_a_name_beside_a_misspelt_one() -> None:
    """Each unknown name is judged alone: the misspelt one is still named."""
    with pytest.raises(RegistrationError) as refused:
        filled_fields(FORM, {VISA: "x", "cardholder-nmae": "A. Holder"})
    said = str(refused.value)
    assert VISA not in said and "'cardholder-nmae'" in said
    assert f"the {len(VISA)} {NOT_REPEATED}" in said


def test_a_code_as_a_name_beside_a_misspelt_one() -> None:
    with pytest.raises(RegistrationError) as refused:
        filled_fields(FORM, {NO_DIGIT_CODE: "x", "enrolment-cdoe": NO_DIGIT_CODE})
    said = str(refused.value)
    assert NO_DIGIT_CODE not in said and "'enrolment-cdoe'" in said
    assert f"the {len(NO_DIGIT_CODE)} {NOT_REPEATED}" in said


@pytest.mark.parametrize("name", ["cardholder-nmae", "Name", "billing-postcode"])
def test_a_plain_misspelt_name_is_quoted(name: str) -> None:
    with pytest.raises(RegistrationError) as refused:
        filled_fields(FORM, {name: "x"})
    assert f"has no field {name!r} (its fields: " in str(refused.value)


@pytest.mark.parametrize("name", ["post\tcode", "post code"])
def test_a_name_with_a_control_or_a_space_is_measured(name: str) -> None:
    with pytest.raises(RegistrationError) as refused:
        filled_fields(FORM, {name: "x"})
    said = str(refused.value)
    assert f"has no field named by the {len(name)} {NOT_REPEATED} (its fields: " in said


def test_values_are_never_in_the_refusal() -> None:
    with pytest.raises(RegistrationError) as refused:
        filled_fields(FORM, {"nmae": VISA, ENROLMENT_CODE_FIELD: CODE})
    said = str(refused.value)
    assert "'nmae'" in said and VISA not in said and CODE not in said
