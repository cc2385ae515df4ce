"""The issuer's codes are written in ``setcore.enrolment_code``'s form, the one the wallet
and the merchant keep out of what they print: one written form, not a copy in gateway."""

from __future__ import annotations

from gateway.ledger import enrolment
from setcore import enrolment_code

# Codes drawn to see each one take the shape the clients look for.
DRAWS = 200


def test_the_ledger_names_setcores_written_form() -> None:
    """The names the ledger and the bank's commands import from gateway are setcore's."""
    assert enrolment.normalize_enrolment_code is enrolment_code.normalize_enrolment_code
    assert enrolment.ENROLMENT_CODE_CHARS == enrolment_code.ENROLMENT_CODE_CHARS
    assert enrolment.ENROLMENT_CODE_BITS == enrolment_code.ENROLMENT_CODE_BITS
    assert not {"_ALPHABET", "_READ_AS", "_SEPARATORS"} & set(vars(enrolment))


def test_every_code_the_issuer_makes_could_be_one_and_is_never_named() -> None:
    for _ in range(DRAWS):
        code = enrolment.new_enrolment_code()
        assert enrolment_code.could_be_enrolment_code(code)
        assert enrolment_code.normalize_enrolment_code(code) == code.replace("-", "")
        for typed in (code, code.lower(), code.replace("-", "")):
            assert typed not in enrolment_code.given_name(typed)
