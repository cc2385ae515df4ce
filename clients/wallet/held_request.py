"""The Cardholder CA's answer about the request held in the sealed card file
(``clients.wallet.pending``): the CertReq sent again byte for byte while it is
unanswered, else a CertInq; and the CertInqs that ask about a request not decided yet.

Until the CA's first answer is verified, the pending state also holds the CertReq's
exact bytes: a request lost on the way, or whose answer was lost, is sent again as it
was. The CA answers a repeated RRPID with the answer it stored: a week, for a request it
certified or pended or the card's issuer refused; never, for another refusal, which
changes nothing. A resend finding none is decided as new: refused RRPID_REUSED under a
certified or pended request's RRPID, MESSAGE_TOO_OLD once its date is five minutes old,
so the wallet then asks with CertInq (``ASK_BEFORE_REGISTERING``), which the CA answers
from a certified or pended request, kept for good (the certificate, for the key the
wallet holds, or the pended status). A CertInq answered UNKNOWN_LID (``NEVER_RECEIVED``)
means the CA holds no request for this registration: the CertReq never arrived, or was
refused. Nothing was certified either way: the registrar discards the pending state with
its key version, and starts over with a new key, whose request hears any refusal again.
Any other refusal leaves the pending state for a later run, as does an answer of a
CertStatus this release does not know (``clients.pending_request``).

Two CertStatus codes say the CA has not decided yet (``UNDECIDED``): REQUEST_PENDED (a
person decides) and REQUEST_IN_PROGRESS (the CA is still at it). setpay's CA sends only
the first; another CA, or a later release, may send either, and may still certify the
request after either: both are asked about with CertInq
(``clients.pending_request.polled``), then kept with their key version for a later run,
never taken for a refusal. Every other CertStatus (SET-PROTOCOL.md 4.1) is the CA's
decision of the request.
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
    return inquired(authority, backend, trust, state)


def inquired(
    authority: AuthorityClient, backend: KeyBackend, trust: TrustStore, state: CardRequestState
) -> tuple[CardCertificate, CardRequestState]:
    # The answer is opened as a CertRes is: an issued certificate must certify the key
    # this state holds and carry the blinded account of its CardSecret.
    inquiry, state = build_card_cert_inquiry(backend, state)
    return open_card_cert_response(authority.cert_inq(inquiry), state, trust), state
