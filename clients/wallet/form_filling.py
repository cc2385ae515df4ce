"""The Cardholder CA's registration form as the wallet fills it in: the values given
(``--form``), the card's enrolment code where the form asks for it, every other field
empty."""

from __future__ import annotations

from collections.abc import Mapping

from clients.errors import RegistrationError
from setcore.enrolment_code import unknown_field
from setcore.errors import quoted
from setcore.registration import RegistrationForm
from setcore.registration_cardholder import ENROLMENT_CODE_FIELD


def filled_fields(
    form: RegistrationForm, given: Mapping[str, str], code: str | None = None
) -> list[tuple[str, str]]:
    """Every field the CA's form asks for, with the value given or empty, and the card's
    enrolment ``code`` where the form asks for it and no value was given; a name it does
    not ask for is refused rather than dropped: it is most likely a misspelt field, which
    would otherwise go to the CA empty. The refusal quotes the CA's names (``quoted``): the
    form's id and fields are the CA's words, a peer's, and the command prints them; a
    name given is repeated only if it is plainly a field name, never if it could be a
    card number or an enrolment code (``setcore.enrolment_code.unknown_field``, the
    merchant's rule too), and no value is."""
    unknown = sorted(set(given) - set(form.fields))
    if unknown:
        raise RegistrationError(
            f"the Cardholder CA's form {quoted(form.form_id)} has no field "
            f"{', '.join(map(unknown_field, unknown))} (its fields: "
            f"{', '.join(map(quoted, form.fields)) or 'none'})"
        )
    values = dict(given)
    if code is not None and ENROLMENT_CODE_FIELD in form.fields:
        values.setdefault(ENROLMENT_CODE_FIELD, code)
    return [(name, values.get(name, "")) for name in form.fields]
