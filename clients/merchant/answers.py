"""The one place where the merchant's failures become answers to the wallet.

    ProtocolError (setcore)                 signed SET Error with its code
    StoreError, TransientBackendError,      gRPC UNAVAILABLE (the merchant cannot serve
    TransportError (gateway unreachable)    now; the wallet may retry)
    anything else                           signed SET Error UNSPECIFIED_FAILURE, logged

The wallet never sees a stack trace, nor which check failed beyond the code (SET-PROTOCOL.md
7.6). The local log gets the code and the reason; the merchant has no PAN to leak.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import NoReturn, TypeVar

import grpc

from clients.errors import StoreError, TransportError
from clients.merchant import metrics
from hsm.errors import KeyBackendError, TransientBackendError
from setcore.credentials import Credentials
from setcore.error_message import build_error
from setcore.errors import ErrorCode, ProtocolError
from setpay.v1 import error_pb2

log = logging.getLogger("setpay.merchant")

R = TypeVar("R")


def _unavailable(
    context: grpc.ServicerContext, rpc: str, what: str, exc: Exception | str
) -> NoReturn:
    log.warning("%s: %s unavailable: %s", rpc, what, exc)
    context.abort(grpc.StatusCode.UNAVAILABLE, f"{what} unavailable")
    raise AssertionError("context.abort returned")  # abort always raises


def answer(
    context: grpc.ServicerContext,
    credentials: Credentials,
    rpc: str,
    request: Callable[[], bytes],
    rrpid: bytes,
    work: Callable[[], R],
    on_error: Callable[[error_pb2.SetError], R],
) -> R:
    """Run ``work``; turn a failure into a signed SET Error (via ``on_error``) or a status.

    The Error names ``rrpid``, the request header's, and ``request()``, the request's
    ``request_digest`` over its bytes as received, as the gateway's do. A callable: only
    a refusal needs it, so a request answered is not hashed for it.
    """
    try:
        return work()
    except StoreError as exc:
        _unavailable(context, rpc, "merchant database", exc)
    except TransientBackendError as exc:
        _unavailable(context, rpc, "merchant key backend", exc)
    except TransportError as exc:
        _unavailable(context, rpc, "payment gateway", exc)
    except ProtocolError as exc:
        log.info("%s refused: %s (%s)", rpc, exc.code_name, exc.reason)
        code = exc.code
    except Exception:
        log.exception("%s: unexpected failure", rpc)
        code = ErrorCode.ERROR_CODE_UNSPECIFIED_FAILURE
    try:
        error = build_error(credentials, code, rrpid=rrpid, request=request())
    except KeyBackendError as exc:  # the Error cannot be signed either: named, not quoted
        _unavailable(context, rpc, "merchant key backend", type(exc).__name__)
    metrics.refused(rpc, code)  # a gRPC status (the abort above) is counted by the server
    return on_error(error)
