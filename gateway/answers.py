"""The one place where failures become answers: SET Errors for protocol failures, gRPC
status codes for infrastructure (DESIGN.md 5.2).

    AnswerNotStored (ledger)           gRPC UNAVAILABLE "answer unavailable", counted
    ProtocolError (setcore)            signed SET Error with its code
    PiPreviouslyUsed (ledger)          signed SET Error PI_PREVIOUSLY_USED
    RrpidReused (ledger)               signed SET Error RRPID_REUSED
    RequestFenced (ledger)             signed SET Error MESSAGE_TOO_OLD: a sending of bytes
                                       the gateway refused as too old, reaching the
                                       ledger after the refusal, is refused alike
    LedgerMisuse (ledger)              signed SET Error UNSPECIFIED_FAILURE, logged here:
                                       the gateway's own call was wrong, so the merchant
                                       must not take it as a final refusal of its request
    InvalidRequest (ledger)            signed SET Error DECODING_FAILURE
    DecisionSettled (ledger)           gRPC UNAVAILABLE "answer unavailable", its message
                                       logged: a resend of a decision an operator
                                       settled by hand, never answered
    StoreUnavailable (ledger)          gRPC UNAVAILABLE "database unavailable"
    TransientBackendError (hsm)        gRPC UNAVAILABLE "key backend unavailable"
    CaUnavailable (gateway.ca)         gRPC UNAVAILABLE "certificate authority <what>
                                       unavailable": ca.db, or no current revocation data
                                       (``Bank.refresh_revocation``, the CA's watcher)
    RecipientNotLoaded (opening_keys)  gRPC UNAVAILABLE "recipient key not loaded": sealed
                                       to a live gateway certificate renewed since this
                                       process started; another process, or this one
                                       restarted, opens it
    AnswerUnavailable (here)           gRPC UNAVAILABLE "answer unavailable"
    anything else                      signed SET Error UNSPECIFIED_FAILURE, logged here

An outage of the bank's own parts is UNAVAILABLE, never a SET Error: a merchant records
an Error as the gateway's refusal, while UNAVAILABLE has it send the same bytes later.

The peer never sees a stack trace or which check failed beyond the code. The local log
gets the code, the reason and the request's RRPID (its header's, in hex: not a secret,
and what the merchant's own log names the request by), never a PAN (setcore's reasons
and the ledger's messages never carry one; a peer's value they quote is cut short,
``setcore.errors.quoted``). Every SET Error answered is counted here by code
(``gateway.metrics.refused``); gRPC statuses are counted by the server.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeVar

import grpc

from gateway import metrics
from gateway.ca.errors import CaUnavailable
from gateway.ledger import (
    AnswerNotStored,
    InvalidRequest,
    LedgerError,
    LedgerMisuse,
    PiPreviouslyUsed,
    RequestFenced,
    RrpidReused,
    StoreUnavailable,
)
from gateway.ledger.errors import DecisionSettled
from hsm.errors import KeyBackendError, TransientBackendError
from setcore.credentials import Credentials
from setcore.echoed_ids import echoed_id
from setcore.error_message import build_error
from setcore.errors import ErrorCode, ProtocolError
from setcore.freshness import ID_BYTES
from setpay.v1 import error_pb2

log = logging.getLogger("setpay.gateway")


R = TypeVar("R")


class AnswerUnavailable(Exception):
    """The ledger decided these very request bytes, but their answer cannot be built now.

    Answered with a status a client retries, never with a refusal: a refusal such as
    MESSAGE_TOO_OLD tells a merchant the gateway holds nothing for the request, and one
    built afresh would be applied a second time (``clients.merchant.renewal``).
    """


# The log names a request by the first bytes of its RRPID, as the gateway's other lines
# do: 8 hex digits find it among a day's requests, and can never read as a card number to
# a log scanner (a whole 64-digit RRPID often holds a run of 13 or more decimal digits).
RRPID_LOG_BYTES = 4


def _rrpid_for_log(rrpid: bytes) -> str:
    """The header's RRPID as the log names it: its first bytes in hex, and its length when
    that is not an RRPID's (the header is the peer's to fill)."""
    if not rrpid:
        return "(no RRPID)"
    shown = rrpid[:RRPID_LOG_BYTES].hex()
    return shown if len(rrpid) == ID_BYTES else f"{shown}... ({len(rrpid)} bytes)"


def _error_code(exc: Exception) -> int | None:
    if isinstance(exc, ProtocolError):
        return exc.code
    if isinstance(exc, PiPreviouslyUsed):
        return ErrorCode.ERROR_CODE_PI_PREVIOUSLY_USED
    if isinstance(exc, RrpidReused):
        return ErrorCode.ERROR_CODE_RRPID_REUSED
    if isinstance(exc, RequestFenced):
        return ErrorCode.ERROR_CODE_MESSAGE_TOO_OLD
    if isinstance(exc, LedgerMisuse):
        return None  # UNSPECIFIED_FAILURE, logged at ERROR as the ledger's failures are
    if isinstance(exc, InvalidRequest):
        return ErrorCode.ERROR_CODE_DECODING_FAILURE
    return None


def answer(
    context: grpc.ServicerContext,
    credentials: Credentials,
    rpc: str,
    request: Callable[[], bytes],
    rrpid: bytes,
    work: Callable[[], R],
    on_error: Callable[[error_pb2.SetError], R],
) -> R:
    """Run ``work``; map any failure to a signed SET Error (via ``on_error``) or a status.

    The Error names ``rrpid``, the request header's (only where it is an RRPID's size,
    ``setcore.echoed_ids``; a refusal's log line shows any other by its first bytes and
    length), and ``request()``, the request's
    ``setcore.gateway_exchange.request_digest`` over its bytes as received: the requester
    takes it for the answer to its own request only when both are its request's
    (``setcore.error_message.open_error``). The header's RRPID alone is anyone's to copy.
    A callable, so that a request answered normally is not hashed here a second time.
    """
    try:
        return work()
    except (AnswerUnavailable, DecisionSettled) as exc:
        # DecisionSettled here, before StoreUnavailable (its base): the database answered
        # that the decision was settled by hand, which is logged and answered as the
        # servicer's AnswerUnavailable for such a request is (no reason; the RRPID by its
        # first bytes).
        # opening_keys subclasses AnswerUnavailable from here, so it is imported once
        # both are loaded: at the top of this module the import would be circular.
        from gateway.opening_keys import RecipientNotLoaded  # noqa: PLC0415

        if isinstance(exc, RecipientNotLoaded):
            # Expected for a while after a renewal, not a fault of this process; the
            # status names no certificate (the log does, by thumbprint prefix).
            log.warning("%s: %s", rpc, exc)
            context.abort(grpc.StatusCode.UNAVAILABLE, "recipient key not loaded")
            raise  # abort raises; this line is never reached
        log.error("%s: %s", rpc, exc)
        context.abort(grpc.StatusCode.UNAVAILABLE, "answer unavailable")
        raise  # abort raises; this line is never reached
    except AnswerNotStored as exc:
        # Decided and unanswered: a refusal would tell the merchant nothing happened.
        log.error("%s: %s: %s", rpc, exc, exc.__cause__)
        metrics.answer_failed(rpc)
        context.abort(grpc.StatusCode.UNAVAILABLE, "answer unavailable")
        raise  # abort raises; this line is never reached
    except (StoreUnavailable, TransientBackendError) as exc:
        what = "database" if isinstance(exc, StoreUnavailable) else "key backend"
        log.warning("%s: %s unavailable: %s", rpc, what, type(exc).__name__)
        context.abort(grpc.StatusCode.UNAVAILABLE, f"{what} unavailable")
        raise  # abort raises; this line is never reached
    except CaUnavailable as exc:
        log.warning("%s: certificate authority %s unavailable: %s", rpc, exc.what, exc)
        context.abort(grpc.StatusCode.UNAVAILABLE, f"certificate authority {exc.what} unavailable")
        raise  # abort raises; this line is never reached
    except Exception as exc:
        code = _error_code(exc)
        named = _rrpid_for_log(rrpid)
        if code is None:
            if isinstance(exc, LedgerError | KeyBackendError):
                log.error("%s %s: %s: %s", rpc, named, type(exc).__name__, exc)
            else:
                log.exception("%s %s: unexpected failure", rpc, named)
            code = ErrorCode.ERROR_CODE_UNSPECIFIED_FAILURE
        else:
            reason = exc.reason if isinstance(exc, ProtocolError) else type(exc).__name__
            log.info("%s %s refused: %s (%s)", rpc, named, ErrorCode.Name(code), reason)
        try:
            error = build_error(credentials, code, rrpid=echoed_id(rrpid), request=request())
        except KeyBackendError as signing:
            # The Error cannot be signed either (the token went away): a status, never
            # the backend's own words in gRPC's "Exception calling application".
            log.warning(
                "%s: key backend unavailable to sign the Error: %s", rpc, type(signing).__name__
            )
            context.abort(grpc.StatusCode.UNAVAILABLE, "key backend unavailable")
            raise
        metrics.refused(rpc, code)  # a refusal answered: an UNAVAILABLE is counted as one
        return on_error(error)
