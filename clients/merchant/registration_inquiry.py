"""The Merchant CA's answer about the request recorded in ``registration.json``: to its
CertReq sent again, else to a CertInq; and the CertInqs that ask about a request the CA
has not decided yet.

A refusal of the request sent again is not final: the CA verifies it again before it
looks up its stored answer, so a certificate of ours expired or revoked since, a new CA
key-exchange certificate, or an answer purged after its retention refuses the resend of a
request it may have certified the first time. Only CertInq says (``answer_to_recorded``).

Two CertStatus codes say the CA has not decided yet (``UNDECIDED``): REQUEST_PENDED (a
person decides) and REQUEST_IN_PROGRESS (the CA is still at it). setpay's CA sends
neither to a merchant; another CA, or a later release, may send either, and may still
certify the request after either: both are asked about with CertInq
(``clients.pending_request.polled``), then kept recorded with their keys for a later
run, never taken for a refusal. Every other CertStatus (SET-PROTOCOL.md 4.1) is the CA's
decision of the request.
"""

from __future__ import annotations

import logging

from clients.authority import AuthorityClient
from clients.pending_request import NEVER_RECEIVED
from hsm.base import KeyBackend
from setcore.errors import PeerError
from setcore.pki.truststore import TrustStore
from setcore.registration import CERT_STATUS_NAMES, UNDECIDED
from setcore.registration_merchant import (
    MerchantCertificates,
    MerchantRequestState,
    build_merchant_cert_inquiry,
    open_merchant_cert_response,
)
from setpay.v1 import registration_pb2

log = logging.getLogger("setpay.merchant")

Answer = tuple[MerchantCertificates, MerchantRequestState]


def inquired(
    authority: AuthorityClient, backend: KeyBackend, trust: TrustStore, state: MerchantRequestState
) -> Answer:
    """The CA's answer to a CertInq about the request, with the inquiry's own state."""
    inquiry, state = build_merchant_cert_inquiry(backend, state)
    response = authority.cert_inq(inquiry)
    return open_merchant_cert_response(response, state, trust), state


def answer_to_recorded(
    authority: AuthorityClient,
    backend: KeyBackend,
    trust: TrustStore,
    state: MerchantRequestState,
    request: registration_pb2.CertRequest | None,
) -> Answer:
    """The CA's answer about the recorded request: to the CertReq sent again, else (or
    when the CA refuses it) to a CertInq.

    The CA keeps only certified requests: a CertInq finding none (UNKNOWN_LID) after a
    CertRes refusing the resend is not "never arrived", and a new request would only be
    refused again, so that CertRes is the answer, the CA's decision of this request. Any
    other UNKNOWN_LID is raised (``NEVER_RECEIVED``).
    """
    if request is None:
        log.info("resuming the unfinished request with CertInq")
        return inquired(authority, backend, trust, state)
    log.info("sending the unanswered certificate request again")
    decided: MerchantCertificates | None = None  # a CertRes refusing the resend
    try:
        result = open_merchant_cert_response(authority.cert(request), state, trust)
    except PeerError as exc:
        refusal = exc.code_name
    else:
        if result.complete or result.status in UNDECIDED:
            return result, state
        decided = result
        refusal = CERT_STATUS_NAMES.get(result.status, str(result.status))
    log.info(
        "the Merchant CA refused the request sent again (%s): asking with CertInq "
        "whether it decided it",
        refusal,
    )
    try:
        return inquired(authority, backend, trust, state)
    except PeerError as exc:
        if exc.code != NEVER_RECEIVED or decided is None:
            raise
        return decided, state
