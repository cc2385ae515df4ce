"""The merchant's metrics in-process, on their real page: every metric the module lists
and no other, each value in a label of its fixed set, the gateway calls counted by their
result, the requests waiting read from merchant.db; and when metrics refuse to start."""

from __future__ import annotations

import re
import socket
from pathlib import Path
from typing import Any, cast

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

from clients.errors import ConfigError, StoreError, TransportError
from clients.merchant import metrics, metrics_http
from clients.merchant.metrics_labels import (
    AUTHORIZATION,
    GATEWAY_CERTIFICATES,
    LABEL_VALUES,
    OTHER,
    WAITING_KINDS,
)
from clients.merchant.records import Authorization, OperationKind
from clients.merchant.store import MerchantStore
from hsm.errors import TransientBackendError
from setcore.errors import ErrorCode, PeerError, fail
from setcore.pki.bci import RevocationUnavailable
from setpay.v1 import authorization_pb2, purchase_pb2
from tests.clients.merchant.conftest import PAGE_POLL_SECONDS
from tests.clients.merchant.metrics_support import check_page, samples_of, scrape_text, value
from tests.clients.merchant.store_support import EUR, batch_request, purchased
from tests.metrics_page import PAN_SHAPE

CALLS = "setpay_merchant_gateway_calls_total"
WAITING = "setpay_merchant_requests_waiting"
UNVERIFIED = "setpay_merchant_requests_unverified"
# A method name, an error code and a status a peer could make up, with a PAN's shape
# (built here: no project file holds such a run of digits).
MADE_UP = "Evil-" + "4" * 16


class _Context:
    """The part of a gRPC servicer context the counting reads (a unit test's double)."""

    def __init__(self, remaining: float = 30.0, active: bool = True) -> None:
        self._code: grpc.StatusCode | None = None
        self._remaining = remaining
        self._active = active

    def code(self) -> grpc.StatusCode | None:
        return self._code

    def time_remaining(self) -> float:
        return self._remaining

    def is_active(self) -> bool:
        return self._active

    def abort(self, code: grpc.StatusCode, details: str) -> None:
        self._code = code
        raise RuntimeError(details)


def _context(remaining: float = 30.0, active: bool = True) -> grpc.ServicerContext:
    return cast(grpc.ServicerContext, _Context(remaining, active))


def test_the_page_holds_what_the_docstring_lists_and_nothing_else(page: int) -> None:
    text = scrape_text(page)
    on_page = {
        family.name + ("_total" if family.type == "counter" else "")
        for family in text_string_to_metric_families(text)
    }
    listed = set(re.findall(r"\bsetpay_merchant_[a-z_]+", metrics.__doc__ or ""))
    assert on_page == listed
    check_page(text)


def test_counters_start_at_zero_and_every_kind_waits_at_zero(page: int) -> None:
    samples = samples_of(scrape_text(page))
    for method in ("PInit", "Purchase", "Inquiry"):
        assert ("setpay_merchant_rpc_requests_total", frozenset({("method", method)})) in samples
    assert (
        "setpay_merchant_purchases_total",
        frozenset({("completion", "COMPLETION_CODE_AUTHORIZATION_PERFORMED")}),
    ) in samples
    for kind in ("authorization", "capture", "batch", "gateway-certificates"):
        for result in ("approved", "declined"):
            key = (CALLS, frozenset({("kind", kind), ("result", result)}))
            assert samples.get(key) == 0, key
    for kind in WAITING_KINDS:
        assert samples.get((WAITING, frozenset({("kind", kind)}))) == 0, kind
        assert samples.get((UNVERIFIED, frozenset({("kind", kind)}))) == 0, kind
    assert samples.get(("setpay_merchant_waiting_read_failures_total", frozenset())) == 0
    # The products of large sets appear with their first.
    assert not any(name == "setpay_merchant_rpc_errors_total" for name, _ in samples)


def test_calls_and_refusals_are_counted_in_bounded_labels(page: int) -> None:
    served = metrics.served("Purchase", lambda request, context: "PRes")
    assert served(object(), _context()) == "PRes"

    def unavailable(request: Any, context: Any) -> Any:
        context.abort(grpc.StatusCode.UNAVAILABLE, "payment gateway unavailable")

    with pytest.raises(RuntimeError):
        metrics.served("PInit", unavailable)(object(), _context())
    metrics.served(MADE_UP, lambda request, context: None)(object(), _context())
    metrics.refused("PInit", ErrorCode.ERROR_CODE_UNKNOWN_LID)
    metrics.refused(MADE_UP, 999_999)
    metrics.purchase_answered(purchase_pb2.COMPLETION_CODE_ORDER_RECEIVED)
    metrics.purchase_answered(999_999)
    text = scrape_text(page)
    samples = samples_of(text)
    requests = "setpay_merchant_rpc_requests_total"
    errors = "setpay_merchant_rpc_errors_total"
    assert value(samples, requests, method="Purchase") == 1
    assert value(samples, requests, method="PInit") == 1
    assert value(samples, requests, method=OTHER) == 1
    assert value(samples, errors, method="PInit", code="UNAVAILABLE") == 1
    assert value(samples, errors, method="PInit", code="ERROR_CODE_UNKNOWN_LID") == 1
    assert value(samples, errors, method=OTHER, code=OTHER) == 1
    assert value(samples, "setpay_merchant_rpc_in_flight", method="PInit") == 0
    assert value(samples, "setpay_merchant_rpc_duration_seconds_count", method="Purchase") == 1
    completion = "setpay_merchant_purchases_total"
    assert value(samples, completion, completion="COMPLETION_CODE_ORDER_RECEIVED") == 1
    assert value(samples, completion, completion=OTHER) == 1
    check_page(text)


@pytest.mark.parametrize(
    ("context", "status"),
    [
        (_context(remaining=0.0), "DEADLINE_EXCEEDED"),
        (_context(active=False), "CANCELLED"),
    ],
)
def test_a_call_answered_after_its_wallet_gave_up_is_no_pres_sent(
    page: int, context: grpc.ServicerContext, status: str
) -> None:
    # The handler answered, but its wallet had given up: the PRes never reached it, and
    # the call ended for the wallet with the status it got, as the bank counts its calls.
    def purchase(request: Any, context: Any) -> str:
        metrics.purchase_answered(purchase_pb2.COMPLETION_CODE_ORDER_RECEIVED)
        return "PRes"

    assert metrics.served("Purchase", purchase)(object(), context) == "PRes"
    samples = samples_of(scrape_text(page))
    assert value(samples, "setpay_merchant_rpc_requests_total", method="Purchase") == 1
    assert value(samples, "setpay_merchant_rpc_errors_total", method="Purchase", code=status) == 1
    completion = "setpay_merchant_purchases_total"
    assert value(samples, completion, completion="COMPLETION_CODE_ORDER_RECEIVED") == 0


def test_shed_calls_are_counted_by_method(page: int) -> None:
    metrics.rpc_shed("setpay.v1.MerchantService", "Purchase")
    metrics.rpc_shed("grpc.health.v1.Health", "Check")  # past its reserve
    metrics.rpc_shed("setpay.v1.MerchantService", MADE_UP)
    text = scrape_text(page)
    samples = samples_of(text)
    shed = "setpay_merchant_rpc_shed_total"
    assert value(samples, shed, method="Purchase") == 1
    assert value(samples, shed, method=OTHER) == 2
    # A shed call was never handled: no request counted for it.
    assert value(samples, "setpay_merchant_rpc_requests_total", method="Purchase") == 0
    check_page(text)


@pytest.mark.parametrize(
    ("raised", "result"),
    [
        (TransportError("gateway Authorize", "UNAVAILABLE"), "UNAVAILABLE"),
        (TransportError("gateway Authorize", "UNPARSEABLE_RESPONSE"), "UNPARSEABLE_RESPONSE"),
        (TransportError("gateway Authorize", MADE_UP), OTHER),
        (PeerError(ErrorCode.ERROR_CODE_MESSAGE_TOO_OLD), "ERROR_CODE_MESSAGE_TOO_OLD"),
        (fail(ErrorCode.ERROR_CODE_SIGNATURE_FAILURE, "bad signature"), "unverified"),
        (
            RevocationUnavailable("the revocation data is stale"),
            "revocation_unavailable",
        ),
        (TransientBackendError("token gone"), "merchant_failure"),
        (ConfigError("the gateway serves no certificate for brand setpay"), "merchant_failure"),
    ],
)
def test_a_gateway_call_that_fails_is_counted_by_why(
    page: int, raised: Exception, result: str
) -> None:
    @metrics.gateway_call("authorization")
    def send() -> None:
        raise raised

    with pytest.raises(type(raised)):
        send()
    samples = samples_of(scrape_text(page))
    assert value(samples, CALLS, kind="authorization", result=result) == 1
    assert value(samples, "setpay_merchant_gateway_call_duration_seconds_count",
                 kind="authorization") == 1  # fmt: skip


def test_certificates_refused_inside_an_authorization_are_no_authorization_declined(
    page: int,
) -> None:
    """``GatewayClient.authorize`` checks the answer against the gateway a PCertReq names,
    sent from inside it: a PCertRes serving no certificate for the brand is that PCertReq
    declined, and the authorization's own failure, its outcome still unknown."""
    refused = ConfigError("the gateway serves no certificate for brand setpay")

    @metrics.gateway_call(GATEWAY_CERTIFICATES)
    def fetch_certificates() -> None:
        raise refused

    @metrics.gateway_call(AUTHORIZATION)
    def authorize() -> None:
        fetch_certificates()

    with pytest.raises(ConfigError):
        authorize()
    samples = samples_of(scrape_text(page))
    assert value(samples, CALLS, kind=GATEWAY_CERTIFICATES, result="declined") == 1
    assert value(samples, CALLS, kind=AUTHORIZATION, result="declined") == 0
    assert value(samples, CALLS, kind=AUTHORIZATION, result="merchant_failure") == 1


def test_the_requests_waiting_are_read_from_the_store_at_each_scrape(
    page: int, store: MerchantStore
) -> None:
    approved = purchased(store, b"lid-1", b"a" * 32)
    store.record_auth_request(approved, b"r" * 32, b"auth-req", b"digest")
    answer = Authorization(authorization_pb2.AUTH_CODE_APPROVED, EUR, "A1", b"res", b"token")
    store.record_authorization(approved, answer, approved=True)
    for n in range(2):
        store.add_operation(approved, OperationKind.CAPTURE, bytes([n]) * 32, EUR.with_minor(1),
                            b"cap-req", b"digest")  # fmt: skip
    waiting = purchased(store, b"lid-2", b"b" * 32)
    doubtful = store.record_auth_request(waiting, b"s" * 32, b"auth-req", b"digest")
    store.postpone(doubtful, 2, 0)
    store.add_batch_request(batch_request(b"q" * 32))
    samples = samples_of(scrape_text(page))
    assert value(samples, WAITING, kind="authorization") == 1
    assert value(samples, UNVERIFIED, kind="authorization") == 1
    assert value(samples, WAITING, kind="capture") == 2
    assert value(samples, UNVERIFIED, kind="capture") == 0
    assert value(samples, WAITING, kind="batch") == 1
    store.record_failure(waiting, ErrorCode.ERROR_CODE_UNSPECIFIED_FAILURE + 1)
    again = samples_of(scrape_text(page))
    assert value(again, WAITING, kind="authorization") == 0
    assert value(again, UNVERIFIED, kind="authorization") == 0


def test_a_store_that_cannot_be_read_leaves_the_gauges_out_and_is_counted(
    page: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    def unreadable(self: object) -> list[object]:
        raise StoreError("merchant database read failed: disk I/O error")

    monkeypatch.setattr("clients.merchant.store.WaitingRequests.counts", unreadable)
    text = scrape_text(page)
    samples = samples_of(text)
    assert not any(name in (WAITING, UNVERIFIED) for name, _ in samples)
    assert value(samples, "setpay_merchant_waiting_read_failures_total") == 1
    check_page(text)


def test_metrics_refuse_to_start_where_they_could_not_serve(
    store: MerchantStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(metrics_http, "_POLL_SECONDS", PAGE_POLL_SECONDS)  # a prompt close
    path = tmp_path / "merchant.db"
    endpoint = metrics.start(path, "127.0.0.1", 0)
    try:
        with pytest.raises(ConfigError, match="already on"):
            metrics.start(path, "127.0.0.1", 0)
    finally:
        endpoint.close()
    endpoint.close()  # twice: harmless
    assert not metrics.enabled()
    monkeypatch.setenv(metrics.MULTIPROC_ENV, str(tmp_path))
    with pytest.raises(ConfigError, match=metrics.MULTIPROC_ENV):
        metrics.start(path, "127.0.0.1", 0)
    monkeypatch.delenv(metrics.MULTIPROC_ENV)
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        with pytest.raises(ConfigError, match="cannot serve metrics"):
            metrics.start(path, "127.0.0.1", holder.getsockname()[1])
    assert not metrics.enabled()


def test_label_sets_are_small_and_hold_no_number_of_a_pan_shape() -> None:
    for name, allowed in LABEL_VALUES.items():
        assert OTHER in allowed and len(allowed) <= 100, name
        assert not any(PAN_SHAPE.search(v) for v in allowed), name
