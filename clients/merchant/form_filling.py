"""The Merchant CA's registration form as the merchant fills it in: the values given
(``--form``), the legal name from merchant.toml, every other field empty."""

from __future__ import annotations

from collections.abc import Mapping

from clients.errors import RegistrationError
from clients.merchant.config import MerchantConfig
from setcore.errors import quoted
from setcore.registration import RegistrationForm


def _given_name(name: str) -> str:
    """A field name given (``--form NAME=VALUE``) as a refusal names it: quoted, unless it
    holds a digit, then only its length: a card or account number typed there by mistake
    would otherwise reach the terminal and the logs (the wallet's
    ``clients.wallet.form_filling.given_name``, the same rule)."""
    if any(char.isdigit() for char in name):
        return f"a name of {len(name)} characters (not repeated: it holds digits)"
    return quoted(name)


def filled_fields(
    form: RegistrationForm, config: MerchantConfig, given: Mapping[str, str]
) -> list[tuple[str, str]]:
    """Every field the CA's form asks for, with the value given (or known); a name it does
    not ask for is refused rather than dropped: most likely a misspelt field, which would
    otherwise go to the CA empty. The refusal quotes the CA's names (``quoted``), and a
    name given unless it holds a digit (``_given_name``); no value is repeated."""
    unknown = sorted(set(given) - set(form.fields))
    if unknown:
        raise RegistrationError(
            f"the Merchant CA's form {quoted(form.form_id)} has no field "
            f"{', '.join(map(_given_name, unknown))} (its fields: "
            f"{', '.join(map(quoted, form.fields)) or 'none'})"
        )
    known = {"legal-name": config.name or config.merchant_id}
    return [(name, given.get(name, known.get(name, ""))) for name in form.fields]
