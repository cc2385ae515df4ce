"""What the CA hands out and how long it remembers: forms and lifetimes, as frozen config."""

from __future__ import annotations

from dataclasses import dataclass

from setcore.pki.roles import CARDHOLDER_CA, MERCHANT_CA
from setcore.registration import FormTemplate

# A registration (CardCInit to CertReq) is a few round trips a person may pause in; an
# hour is generous for that and bounds how long an unused Chall-CA stays acceptable.
SESSION_LIFETIME_MS = 60 * 60 * 1000
# Answers are kept this long for retries of the same request bytes; a week outlasts any
# sensible retry. A CertInq needs none of them: it is answered from a certified or pended
# request, kept for good. A refused cardholder request is kept only as its answer, so
# after this a CertInq about it finds no request (UNKNOWN_LID), as for one that never
# arrived. A CertReq resent after this is refused (RRPID_REUSED for a certified or pended
# request, MESSAGE_TOO_OLD by its date otherwise): a requester asks with CertInq before it
# registers again.
RESPONSE_RETENTION_MS = 7 * 24 * 60 * 60 * 1000

CARDHOLDER_FORM = FormTemplate(
    form_id="setpay-cardholder-1",
    fields=("cardholder-name", "billing-postcode"),
    policy_text="Certificates are issued to holders of active cards of this brand.",
)
MERCHANT_FORM = FormTemplate(
    form_id="setpay-merchant-1",
    fields=("legal-name", "contact-email"),
    policy_text="Certificates are issued to merchants under contract with the acquirer.",
)
GATEWAY_FORM = FormTemplate(
    form_id="setpay-gateway-1",
    fields=("operator",),
    policy_text="Certificates are issued to the acquirer's payment gateways.",
)


@dataclass(frozen=True)
class CaPolicy:
    """The forms each CA hands out and how long sessions and answers are kept."""

    cardholder_form: FormTemplate = CARDHOLDER_FORM
    merchant_form: FormTemplate = MERCHANT_FORM
    gateway_form: FormTemplate = GATEWAY_FORM
    session_lifetime_ms: int = SESSION_LIFETIME_MS
    response_retention_ms: int = RESPONSE_RETENTION_MS
    #: Whether the Payment Gateway CA answers Me-AqCInit and CertReq on the CA service.
    #: Off: the CA port is open to anyone, and a gateway key-exchange certificate is what
    #: wallets seal card numbers to; the bank's gateway is certified by ``setpay init``.
    gateway_registration: bool = False

    def form_for(self, ca_type: int) -> FormTemplate:
        """The form of the CA of this CertificateType."""
        if ca_type == CARDHOLDER_CA:
            return self.cardholder_form
        return self.merchant_form if ca_type == MERCHANT_CA else self.gateway_form
