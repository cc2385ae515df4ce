"""How ``gateway.answers`` answers an envelope sealed to a key this process does not hold.

``RecipientNotLoaded`` (``gateway.opening_keys``) has a row of its own: UNAVAILABLE, which
the merchant retries until a process on the renewed keys opens the envelope; never a
signed SET Error, which it would record as the bank's refusal; never the "answer
unavailable" of a decision left unanswered, which would send an operator looking in the
ledger. Served by a real gRPC server on port 0; the work that raises is the input.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import cast

import grpc
import pytest
from prometheus_client import CollectorRegistry

from gateway import answers, metrics
from gateway.answers import answer
from gateway.ledger import InvalidRequest, LedgerMisuse
from gateway.opening_keys import RecipientNotLoaded
from setcore.credentials import Credentials
from setcore.errors import ErrorCode
from setpay.v1 import error_pb2

SERVICE = "setpay.test.Answers"
METHOD = "Authorize"
# A thumbprint as a sealed envelope names its recipient (SHA-256).
THUMB = os.urandom(32)


class _Answering:
    """A servicer method that answers through ``answer`` and keeps what it was given."""

    def __init__(self) -> None:
        self.errors: list[error_pb2.SetError] = []

    def __call__(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        def work() -> bytes:
            raise RecipientNotLoaded(
                f"envelope sealed to the gateway's key-exchange certificate {THUMB.hex()[:8]},"
                " which the bank issued and this process does not hold"
            )

        def on_error(error: error_pb2.SetError) -> bytes:
            self.errors.append(error)
            return error.SerializeToString()

        # No Error may be built: credentials that cannot sign make sure of it.
        return answer(
            context, cast(Credentials, None), METHOD, lambda: request, b"r" * 32, work, on_error
        )


@pytest.fixture
def served() -> Iterator[tuple[_Answering, grpc.Channel]]:
    handler = _Answering()
    server = grpc.server(ThreadPoolExecutor(max_workers=1))
    server.add_generic_rpc_handlers(
        [
            grpc.method_handlers_generic_handler(
                SERVICE, {METHOD: grpc.unary_unary_rpc_method_handler(handler)}
            )
        ]
    )
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield handler, channel
    finally:
        channel.close()
        server.stop(None)


def test_an_envelope_for_a_key_not_loaded_here_is_unavailable_and_never_refused(
    served: tuple[_Answering, grpc.Channel], caplog: pytest.LogCaptureFixture
) -> None:
    handler, channel = served
    registry = CollectorRegistry()
    metrics.enable(0, registry)
    try:
        call = channel.unary_unary(f"/{SERVICE}/{METHOD}")
        with (
            caplog.at_level(logging.INFO, "setpay.gateway"),
            pytest.raises(grpc.RpcError) as raised,
        ):
            call(b"sealed request")
        refusals = [
            s
            for metric in registry.collect()
            for s in metric.samples
            if s.name == "setpay_rpc_errors_total"
        ]
    finally:
        metrics.disable()
    failure = cast(grpc.Call, raised.value)
    assert failure.code() == grpc.StatusCode.UNAVAILABLE
    assert failure.details() == "recipient key not loaded"
    assert handler.errors == []  # no signed SET Error was made
    assert refusals == []  # nor counted as a refusal
    # The peer learns nothing of the certificate; the operator's log names it by prefix,
    # as an expected state after a renewal, not as a failure of this process.
    assert THUMB.hex()[:8] not in (failure.details() or "")
    [record] = [r for r in caplog.records if r.name == "setpay.gateway"]
    assert record.levelno == logging.WARNING
    assert THUMB.hex() not in record.getMessage()


def test_the_gateways_own_wrong_call_to_the_ledger_is_no_refusal_of_the_request() -> None:
    """DECODING_FAILURE tells the merchant its request was bad, for good; a bug on the
    bank's side is UNSPECIFIED_FAILURE (``None`` here), which it does not record as final."""
    assert answers._error_code(InvalidRequest("amount out of range")) == (
        ErrorCode.ERROR_CODE_DECODING_FAILURE
    )
    assert answers._error_code(LedgerMisuse("the prebuilt approval names another hold")) is None
