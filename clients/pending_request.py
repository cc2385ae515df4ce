"""A certificate request kept until the CA decides it, as both requesters record it.

The merchant (``registration.json``, ``clients.merchant.registration_pending``) and the
wallet (the sealed card file, ``clients.wallet.pending``) keep the same fields of a
request's exchange, base64 in JSON: ``lid_ee``, ``lid_ca``, ``ca_certificate``, and while
the CertReq is unanswered its exact bytes (``cert_request``) with ``rrpid`` and
``chall_ee3``. Each rebuilds the exchange here and the rest of its state itself.

Errors: a record that cannot be read raises ``KeyError``, ``ValueError``, ``TypeError``
or protobuf's ``DecodeError``, which each caller turns into its ``RegistrationError``; a
CA certificate that no longer verifies raises the trust store's error.

A CA answer whose CertStatusCode this release does not know (``CertStatusUnknown``,
raised once every other check of the answer passed) leaves the record as it is: both
requesters' ``register`` and ``renew`` report it as ``RegistrationOutcomeUnknown``
(``unknown_status_reported``), never as a refusal or a pended request, and install
nothing. The next run sends the kept request again (or asks with CertInq), as for a
lost answer, and reads the CA's answer to it: once setpay is upgraded, as what it is.
"""

from __future__ import annotations

import base64
import functools
from collections.abc import Callable, Mapping
from typing import Any, ParamSpec, Protocol, TypeVar

from clients.errors import RegistrationOutcomeUnknown
from setcore.error_message import request_digest
from setcore.errors import ErrorCode
from setcore.freshness import new_id
from setcore.pki.roles import CertificateUsage
from setcore.pki.truststore import TrustStore
from setcore.registration import UNDECIDED
from setcore.registration_certreq import CertStatusUnknown, Exchange
from setpay.v1 import registration_pb2

P = ParamSpec("P")
R = TypeVar("R")
S = TypeVar("S", bound="_Status")
T = TypeVar("T")

# The one answer meaning the CA holds no request for the registration: a CertInq finds
# none. The CertReq never arrived, or the CA refused it (it keeps no refused request); no
# certificate was issued either way.
NEVER_RECEIVED = ErrorCode.ERROR_CODE_UNKNOWN_LID
# A request the CA has not decided (``setcore.registration.UNDECIDED``) is asked about
# this many times, this far apart, before the command leaves it for a later run: a CA
# that decides automatically answers within these seconds; one waiting for a person will
# not, whatever we wait.
PENDED_POLLS = 3
PENDED_POLL_SECONDS = 1.0


class _Status(Protocol):
    @property
    def status(self) -> int: ...


def polled(
    answer: tuple[S, T], ask: Callable[[T], tuple[S, T]], sleep: Callable[[float], None]
) -> tuple[S, T]:
    """The CA's ``answer`` about a request (its result, and the state it was opened
    under), asked about again with ``ask`` (a CertInq from that state) while it says the
    request is ``UNDECIDED``, up to ``PENDED_POLLS`` times: its last answer."""
    result, state = answer
    for _ in range(PENDED_POLLS):
        if result.status not in UNDECIDED:
            break
        sleep(PENDED_POLL_SECONDS)
        result, state = ask(state)
    return result, state


def resumed_exchange(
    record: Mapping[str, Any], trust: TrustStore, ca_type: int
) -> tuple[Exchange, registration_pb2.CertRequest | None]:
    """The recorded request's exchange with its CA (of ``ca_type``), and the CertReq to
    send again if it is still unanswered (else fresh RRPID and challenge, for CertInq)."""
    ca = trust.verify_chain(
        base64.b64decode(record["ca_certificate"]), (), ca_type, CertificateUsage.SIGNATURE
    )
    request = None
    rrpid, chall_ee3, sent = new_id(), new_id(), b""
    if "cert_request" in record:
        request = registration_pb2.CertRequest.FromString(base64.b64decode(record["cert_request"]))
        rrpid = base64.b64decode(record["rrpid"])
        chall_ee3 = base64.b64decode(record["chall_ee3"])
        sent = request_digest(request.DESCRIPTOR.full_name, request.cert_req)
    exchange = Exchange(
        rrpid, chall_ee3, base64.b64decode(record["lid_ee"]),
        base64.b64decode(record["lid_ca"]), ca, request_digest=sent,
    )  # fmt: skip
    return exchange, request


def unknown_status_message(ca: str, status_name: str, command: str, kept: str) -> str:
    """What the user is told of a verified CertRes of an unknown status: the code, that
    the outcome is unknown and nothing was installed, and what to do."""
    return (
        f"the {ca} answered the certificate request with {status_name}, a status this "
        "release of setpay does not know: the outcome is unknown (the CA may have pended "
        "or refused the request) and no certificate was installed. Upgrade setpay, then "
        f"run `{command}` again: the pending request is kept in {kept}, so the same "
        "request is asked about again and the CA's answer to it read"
    )


def unknown_status_reported(
    ca: str, command: str, kept: str
) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorates a registrar's ``register`` or ``renew``: ``CertStatusUnknown`` from it
    becomes ``RegistrationOutcomeUnknown`` naming the code, the ``ca`` (``Merchant CA``),
    the ``command`` to run again, whole (``setpay wallet register --card CARD.json``), and
    where the request is ``kept``. Nothing else is done: the record stays as the method
    left it."""

    def decorate(run: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(run)
        def reported(*args: P.args, **kwargs: P.kwargs) -> R:
            try:
                return run(*args, **kwargs)
            except CertStatusUnknown as exc:
                message = unknown_status_message(ca, exc.status_name, command, kept)
                raise RegistrationOutcomeUnknown(message, exc.status, exc) from exc

        return reported

    return decorate
