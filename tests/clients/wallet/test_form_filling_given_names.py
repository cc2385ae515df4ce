"""A field name given that the Cardholder CA's form lacks is refused without repeating
it when it holds a digit: a card number or the card's enrolment code typed as a name
would otherwise reach the terminal and the logs."""

from __future__ import annotations

import pytest

from clients.errors import RegistrationError
from clients.wallet.form_filling import filled_fields
from setcore.registration import RegistrationForm
from setcore.registration_cardholder import ENROLMENT_CODE_FIELD
from tests.cards import VISA

CODE = "7K3M-Q9TX-4B2D-8F6H"
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
        f"has no field a name of {len(name)} characters (not repeated: it holds digits) "
        f"(its fields: 'cardholder-name', '{ENROLMENT_CODE_FIELD}')"
    ) in said


def test_a_card_number_as_a_name_beside_a_misspelt_one() -> None:
    """Each unknown name is judged alone: the misspelt one is still named."""
    with pytest.raises(RegistrationError) as refused:
        filled_fields(FORM, {VISA: "x", "cardholder-nmae": "A. Holder"})
    said = str(refused.value)
    assert VISA not in said and "'cardholder-nmae'" in said
    assert f"a name of {len(VISA)} characters" in said


@pytest.mark.parametrize(
    ("name", "named"),
    [("cardholder-nmae", "'cardholder-nmae'"), ("post\tcode", "'post\\tcode'")],
)
def test_a_name_without_digits_is_quoted(name: str, named: str) -> None:
    with pytest.raises(RegistrationError) as refused:
        filled_fields(FORM, {name: "x"})
    assert f"has no field {named} (its fields: " in str(refused.value)


def test_values_are_never_in_the_refusal() -> None:
    with pytest.raises(RegistrationError) as refused:
        filled_fields(FORM, {"nmae": VISA, ENROLMENT_CODE_FIELD: CODE})
    said = str(refused.value)
    assert "'nmae'" in said and VISA not in said and CODE not in said
