"""The Cardholder CA's answer about the request held in the sealed card file
(``clients.wallet.pending``): the CertReq sent again byte for byte while it is
unanswered, else a CertInq.

A refusal of the resent CertReq that leaves open whether the CA decided it is followed by
a CertInq (``ASK_BEFORE_REGISTERING``); any other refusal is the caller's to read.
"""

from __future__ import annotations

import logging

from clients.authority import AuthorityClient
from hsm.base import KeyBackend
from setcore.errors import ErrorCode, PeerError
from setcore.pki.truststore import TrustStore
from setcore.registration_cardholder import (
    CardCertificate,
    CardRequestState,
    build_card_cert_inquiry,
    open_card_cert_response,
)
from setpay.v1 import registration_pb2

log = logging.getLogger("setpay.wallet")

# Refusals of a resent CertReq that do not say whether the CA decided it: its date is
# outside the window (a request the CA refused, keeping no answer or no longer, or one it
# never saw), or its RRPID names a certified or pended request whose answer was purged
# (the wallet resends its own bytes, so that request is this one). The CA is asked with
# CertInq before anything else is done.
ASK_BEFORE_REGISTERING = frozenset(
    {ErrorCode.ERROR_CODE_MESSAGE_TOO_OLD, ErrorCode.ERROR_CODE_RRPID_REUSED}
)


def answer_to_held(
    authority: AuthorityClient,
    backend: KeyBackend,
    trust: TrustStore,
    state: CardRequestState,
    request: registration_pb2.CertRequest | None,
) -> tuple[CardCertificate, CardRequestState]:
    """The CA's answer about the held request: to the CertReq sent again, else (or when
    that refusal leaves open whether the CA decided it) to a CertInq; with the state the
    answer was opened under (a CertInq's own)."""
    masked = state.pan.masked
    if request is not None:
        log.info("sending the certificate request of card %s again", masked)
        try:
            return open_card_cert_response(authority.cert(request), state, trust), state
        except PeerError as exc:
            if exc.code not in ASK_BEFORE_REGISTERING:
                raise
            log.info(
                "the Cardholder CA refused the request of card %s sent again (%s): "
                "asking with CertInq whether it decided it",
                masked, exc.code_name,
            )  # fmt: skip
    else:
        log.info("resuming the pended registration of card %s with CertInq", masked)
    # The answer is opened as a CertRes is: an issued certificate must certify the key
    # this state holds and carry the blinded account of its CardSecret.
    inquiry, state = build_card_cert_inquiry(backend, state)
    return open_card_cert_response(authority.cert_inq(inquiry), state, trust), state
