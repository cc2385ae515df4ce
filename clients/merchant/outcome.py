"""One policy for the gateway's answers, for every request the merchant sends it.

    what came back                                           the request is
    an answer that verifies: signed by a gateway whose       final: recorded (approved,
    chain verifies, naming our RRPID, our name and our       declined, succeeded, refused)
    request, settling no more than was asked
    a SET Error that verifies: signed by a gateway, naming   final: failed, with its code
    our RRPID (``setcore.error_message.open_error``)
      but UNSPECIFIED_FAILURE                                pending: it does not say the
                                                             gateway did nothing
      but MESSAGE_TOO_OLD                                    ``renewal``'s: built afresh
                                                             under a new RRPID, or pending
    nothing (``TransportError``: unreachable, a deadline,    pending
    a frame that does not parse)
    anything that does not verify (``ProtocolError``: a     pending
    bad signature, another RRPID, an unsigned Error, an
    answer that does not open or parse, another amount)

Pending means "outcome unknown, will retry": the gateway may have applied the request (a
hold on the card, a capture, a refund), so it is neither failed nor forgotten. It was
stored byte for byte before it was first sent (``store``), and those bytes go again
until a final answer comes back: the authorization worker, ``Settlement.resume`` and
``Batches.resume`` (a batch open, close or purge is a request like the others).
The gateway keeps one decision and its exact answer per RRPID
(``gateway.ledger.idempotency``), so a retry gets what was decided the first time, and
never a second hold or capture. No check is relaxed: what does not verify is never
recorded, it is asked for again.
"""

from __future__ import annotations

import logging

from clients.errors import OutcomeUnknown, TransportError
from clients.merchant import renewal
from setcore.errors import ErrorCode, PeerError, ProtocolError

UNSPECIFIED_FAILURE = ErrorCode.ERROR_CODE_UNSPECIFIED_FAILURE

GatewayFailure = TransportError | PeerError | ProtocolError
"""What a call of ``GatewayClient`` raises instead of a verified answer."""
GATEWAY_FAILURES = (TransportError, PeerError, ProtocolError)


def is_refusal(error: PeerError) -> bool:
    """True when ``error`` is the gateway's verified refusal of the request, which is
    final: a SET Error signed by the gateway naming our RRPID (``open_error`` raises no
    other as ``PeerError``), but for UNSPECIFIED_FAILURE."""
    return error.code != UNSPECIFIED_FAILURE


def why_unknown(error: GatewayFailure) -> str:
    """For the log: why the request's outcome is unknown (never card data: there is none)."""
    if isinstance(error, TransportError):
        return f"no answer from the gateway: {error}"
    if isinstance(error, PeerError) and renewal.refused_as_stale(error):
        return "refused as too old, but only just: an earlier sending may still be at the gateway"
    if isinstance(error, PeerError):
        return f"the gateway failed without saying it did nothing: {error.code_name}"
    return f"the gateway's answer did not verify: {error}"


def pending(log: logging.Logger, what: str, error: GatewayFailure) -> OutcomeUnknown:
    """Log that ``what`` (an order or an operation, by short ids) stays pending, and why;
    the ``OutcomeUnknown`` to raise where someone waits for the answer (a command).

    An answer that does not verify is an error (a gateway, a key or a trust store that is
    wrong, or someone in between); no answer at all is a warning.
    """
    reason = why_unknown(error)
    level = logging.ERROR if isinstance(error, ProtocolError) else logging.WARNING
    log.log(level, "%s: outcome unknown, will retry (%s)", what, reason)
    return OutcomeUnknown(what, reason, error)
