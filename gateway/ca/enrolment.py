"""The enrolment code at the Cardholder CA: the form field that asks for it, and the
issuer's answer about a card that says whether the card has one.

A card the issuer gave an enrolment code (``gateway.ledger.enrolment``: 80 random bits
sent to the holder with the card) is certified only with that code, so guessing its
expiry gains nothing: its refusals are logged but never lock it (``card_failures``),
and knowing its number no longer lets anyone keep its holder from registering. A card
opened before codes existed has none: its refusals lock it as before.

The CA asks for the code in every cardholder form it hands out (``with_code_field``,
whatever form the policy configures), initial and renewal alike: the CA cannot tell
from a renewed certificate which card it was issued for (it carries the account only
blinded under a secret the CA never keeps), so a renewal that needed no code would let
any certified cardholder try another card's expiry without one. A request that leaves
the field out is decided as one with a wrong code: the issuer refuses a card that has
one, and one without a code goes on as before.

``EnrolmentDirectory`` is what an ``IssuerDirectory`` offers to take the code: the
bank's ``gateway.issuer.LedgerDirectory`` does; one that does not (a test's own) is
asked ``check_card`` and its cards are taken to have no code.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Protocol, runtime_checkable

from gateway.ca.issuer import IssuerDirectory
from setcore.pan import PAN
from setcore.registration import FormTemplate, completes_form
from setcore.registration_cardholder import ENROLMENT_CODE_FIELD
from setpay.v1 import registration_pb2


@dataclass(frozen=True)
class CardWord:
    """The issuer's answer about a card (``IssuerDirectory.check_card``'s status), and
    whether the card has an enrolment code (then its refusals lock nothing)."""

    status: int
    has_code: bool = False
    #: Why it was refused, for the CA's log only (never the code or the number).
    reason: str = ""


@runtime_checkable
class EnrolmentDirectory(Protocol):
    """An issuer that checks a card's enrolment code along with its number and expiry."""

    def check_enrolled_card(self, pan: PAN, expiry: str, enrolment_code: str | None) -> CardWord:
        """``check_card`` that also refuses (REJECTED_BY_ISSUER) a card with an enrolment
        code when ``enrolment_code`` is not that code (None: none was given)."""
        ...


def ask_issuer(issuer: IssuerDirectory, pan: PAN, expiry: str, code: str | None) -> CardWord:
    """The issuer's word on the card, with the code if the issuer takes one."""
    if isinstance(issuer, EnrolmentDirectory):
        return issuer.check_enrolled_card(pan, expiry, code)
    return CardWord(issuer.check_card(pan, expiry))


def with_code_field(form: FormTemplate) -> FormTemplate:
    """``form`` asking for the enrolment code too (last, once)."""
    if ENROLMENT_CODE_FIELD in form.fields:
        return form
    return replace(form, fields=(*form.fields, ENROLMENT_CODE_FIELD))


def completes_but_code(data: registration_pb2.CertReqData, form: FormTemplate) -> bool:
    """True when a CertReq fills in ``form`` (``completes_form``) or all of it but the
    enrolment code, which is then taken as a wrong one."""
    if completes_form(data, form):
        return True
    others = replace(form, fields=tuple(f for f in form.fields if f != ENROLMENT_CODE_FIELD))
    return others.fields != form.fields and completes_form(data, others)


def given_code(data: registration_pb2.CertReqData) -> str | None:
    """The enrolment code a CertReq gives, None when it leaves the field out."""
    for filled in data.reg_form:
        if filled.name == ENROLMENT_CODE_FIELD:
            return filled.value
    return None


__all__ = [
    "CardWord",
    "EnrolmentDirectory",
    "ask_issuer",
    "completes_but_code",
    "given_code",
    "with_code_field",
]
