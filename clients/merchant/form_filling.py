"""The Merchant CA's registration form as the merchant fills it in: the values given
(``--form``), the legal name from merchant.toml, every other field empty."""

from __future__ import annotations

from collections.abc import Mapping

from clients.errors import RegistrationError
from clients.merchant.config import MerchantConfig
from setcore.enrolment_code import unknown_field
from setcore.errors import quoted
from setcore.registration import RegistrationForm


def filled_fields(
    form: RegistrationForm, config: MerchantConfig, given: Mapping[str, str]
) -> list[tuple[str, str]]:
    """Every field the CA's form asks for, with the value given (or known); a name it does
    not ask for is refused rather than dropped: most likely a misspelt field, which would
    otherwise go to the CA empty. The refusal quotes the CA's names (``quoted``), and a
    name given only if it is plainly a field name, never if it could be a card or account
    number or an enrolment code (``setcore.enrolment_code.unknown_field``, the wallet's rule
    too); no value is repeated."""
    unknown = sorted(set(given) - set(form.fields))
    if unknown:
        raise RegistrationError(
            f"the Merchant CA's form {quoted(form.form_id)} has no field "
            f"{', '.join(map(unknown_field, unknown))} (its fields: "
            f"{', '.join(map(quoted, form.fields)) or 'none'})"
        )
    known = {"legal-name": config.name or config.merchant_id}
    return [(name, given.get(name, known.get(name, ""))) for name in form.fields]
