"""A field name given that the Merchant CA's form lacks is refused without repeating it
unless it is plainly a field name (a card or account number, or a code of letters only,
typed as a name, is only measured); a misspelt name is still quoted. The rule is the
wallet's (``setcore.enrolment_code.given_name``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from clients.errors import RegistrationError
from clients.merchant.config import MerchantConfig, load, write_config
from clients.merchant.form_filling import filled_fields
from clients.peers import PeerConfig
from setcore.registration import RegistrationForm
from tests.cards import VISA

NOT_REPEATED = "characters given (not repeated: only a plain field name is)"
# A secret of letters and hyphens only, as one enrolment code in about 400 is.
NO_DIGIT_CODE = "BNJZ-TZXB-KRPV-EXSM"

FORM = RegistrationForm(
    request_type=0,
    chall_ca=b"\x01" * 20,
    form_id="setpay-merchant",
    fields=("legal-name", "contact-email"),
    policy_text="",
)


def _config(tmp_path: Path) -> MerchantConfig:
    directory = tmp_path / "shop"
    peer = PeerConfig("127.0.0.1:9", directory / "tls/root.pem")
    write_config(directory, merchant_id="m-form", name="Shop", gateway=peer, ca=peer)
    return load(directory)


@pytest.mark.parametrize(
    "name", [VISA, f"iban-{VISA}", "line-2"], ids=["card", "card-in-name", "digit-in-name"]
)
def test_a_name_with_a_digit_is_not_repeated(tmp_path: Path, name: str) -> None:
    with pytest.raises(RegistrationError) as refused:
        filled_fields(FORM, _config(tmp_path), {name: "x"})
    said = str(refused.value)
    assert name not in said
    assert (
        f"has no field named by the {len(name)} {NOT_REPEATED} "
        "(its fields: 'legal-name', 'contact-email')"
    ) in said


@pytest.mark.parametrize(
    "name",
    [NO_DIGIT_CODE, NO_DIGIT_CODE.lower(), f"enrolment-code:{NO_DIGIT_CODE}"],
    ids=["code", "lower-case", "labelled"],
)
def test_a_code_without_digits_is_not_repeated(tmp_path: Path, name: str) -> None:
    with pytest.raises(RegistrationError) as refused:
        filled_fields(FORM, _config(tmp_path), {name: "x"})
    said = str(refused.value)
    assert NO_DIGIT_CODE.lower() not in said.lower()
    assert f"has no field named by the {len(name)} {NOT_REPEATED} (its fields: " in said


def test_a_misspelt_name_is_quoted_and_no_value_repeated(tmp_path: Path) -> None:
    with pytest.raises(RegistrationError) as refused:
        filled_fields(FORM, _config(tmp_path), {"legal-nmae": VISA, VISA: "x"})
    said = str(refused.value)
    assert "'legal-nmae'" in said and VISA not in said
    assert f"the {len(VISA)} {NOT_REPEATED}" in said


def test_known_names_fill_the_form(tmp_path: Path) -> None:
    filled = filled_fields(FORM, _config(tmp_path), {"contact-email": "a@example.org"})
    assert filled == [("legal-name", "Shop"), ("contact-email", "a@example.org")]
