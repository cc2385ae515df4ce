"""gRPC channels and calls for the clients: TLS, explicit deadlines, bounded retries.

Requests travel as the exact bytes the caller serialized once: a retry re-sends those
bytes, so the peer's idempotency (keyed by RRPID, checked against the request bytes)
sees the same request and answers with its stored response. Only two statuses are
retried. UNAVAILABLE: the call did not reach the peer, or the peer asked us to come back.
RESOURCE_EXHAUSTED only when the peer shed the call before reading it: its status carries
a ``google.rpc.RetryInfo`` (the bank's servers and the merchant's shed load so:
``setcore.admission``), and the retry waits the delay it asks for; or it is a gRPC
server's own refusal past its ``maximum_concurrent_rpcs`` (``GRPC_CONCURRENCY_REFUSAL``:
the backstop above that admission). gRPC raises RESOURCE_EXHAUSTED on the client too, for
an answer larger than ``MAX_MESSAGE_BYTES``, after the peer did the work, and sending the
request again would only make it do the work again. Any other status ends the call at
once as ``TransportError``. A call whose every attempt was shed unread ends as
``NotRead``: the peer's unsigned word that it read none of it, which may be untrue (a
peer that did the work can answer the same), so a caller tells it apart but takes it for
no proof (a wallet keeps a purchase request shed so, for an inquiry to settle). Either
names, after the status, the address the channel went to and the setting that named it
(``ChannelConfig.origin``), and for UNAVAILABLE quotes the peer's reason when the peer
answered it (down for now: its gateway, its ledger), or else asks whether the peer runs
there: a user who sees "CA ...: UNAVAILABLE" alone knows neither which address was tried
nor where to change it.
"""

from __future__ import annotations

import logging
import random
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

import grpc
from google.protobuf.message import DecodeError, Message
from google.rpc import error_details_pb2  # type: ignore[import-untyped]
from grpc_status import rpc_status

from clients.errors import ConfigError, NotRead, TransportError
from setcore.admission import GRPC_CONCURRENCY_REFUSAL
from setcore.errors import quoted

log = logging.getLogger("setpay.clients.transport")

# Largest message a client accepts or sends: a response with a few certificate chains
# and CRLs stays far below 1 MB, and the bound stops a peer making us buffer more.
MAX_MESSAGE_BYTES = 1 << 20
# Attempts per call, counting the first: four attempts over the backoff below span about
# 1.5 s, enough to ride out a shed burst without hiding an outage from the caller.
MAX_ATTEMPTS = 4
# Backoff before the second attempt, doubled each time up to the cap, with full jitter so
# that clients shed together do not come back together.
FIRST_BACKOFF_SECONDS = 0.1
MAX_BACKOFF_SECONDS = 1.0

# After a peer went away, gRPC waits before reconnecting, doubling up to two minutes by
# default. A merchant must notice its gateway is back within seconds (pending
# authorizations are retried every few seconds), so the wait starts at 200 ms and never
# exceeds 5 s.
MIN_RECONNECT_BACKOFF_MS = 200
MAX_RECONNECT_BACKOFF_MS = 5000


M = TypeVar("M", bound=Message)


@dataclass(frozen=True)
class ChannelConfig:
    """Where a peer is and how the channel to it is protected.

    ``ca_pem`` authenticates the server; ``client_cert_pem`` and ``client_key_pem`` (both or
    neither) make it mutual TLS. ``insecure`` is plaintext gRPC for local experiments.
    ``origin``: the setting that named ``target`` (``ca.target in DIR/merchant.toml``, an
    environment variable, an option), said with it when a call fails; "" when unknown.
    """

    target: str
    ca_pem: bytes | None = field(default=None, repr=False)
    client_cert_pem: bytes | None = field(default=None, repr=False)
    client_key_pem: bytes | None = field(default=None, repr=False)
    insecure: bool = False
    origin: str = ""

    def __post_init__(self) -> None:
        if not self.target:
            raise ConfigError("a channel needs a target HOST:PORT")
        if (self.client_cert_pem is None) != (self.client_key_pem is None):
            raise ConfigError("a client certificate needs its key, and a key its certificate")
        if not self.insecure and self.ca_pem is None:
            raise ConfigError(f"TLS to {self.target} needs a CA certificate (or insecure)")

    def destination(self) -> str:
        """The target, and the setting that named it, for messages."""
        return f"at {self.target}" + (f" ({self.origin})" if self.origin else "")


# Where each channel ``open_channel`` made goes (``ChannelConfig.destination``), for the
# failures of the calls a ``Caller`` makes on it: kept here, the one place every client
# channel is made, rather than handed to each of the callers. Weak keys: an entry goes
# with its channel.
_DESTINATIONS: weakref.WeakKeyDictionary[grpc.Channel, str] = weakref.WeakKeyDictionary()


def open_channel(config: ChannelConfig, peer: str) -> grpc.Channel:
    """A channel to ``peer`` (a name for logs: "gateway", "merchant", "CA")."""
    options = [
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ("grpc.initial_reconnect_backoff_ms", MIN_RECONNECT_BACKOFF_MS),
        ("grpc.min_reconnect_backoff_ms", MIN_RECONNECT_BACKOFF_MS),
        ("grpc.max_reconnect_backoff_ms", MAX_RECONNECT_BACKOFF_MS),
    ]
    if config.insecure:
        log.warning(
            "%s channel to %s is PLAINTEXT (insecure = true): local experiments only",
            peer, config.target,
        )  # fmt: skip
        channel = grpc.insecure_channel(config.target, options=options)
        _DESTINATIONS[channel] = config.destination()
        return channel
    credentials = grpc.ssl_channel_credentials(
        root_certificates=config.ca_pem,
        private_key=config.client_key_pem,
        certificate_chain=config.client_cert_pem,
    )
    mutual = "mutual TLS" if config.client_cert_pem is not None else "TLS"
    log.info("%s channel to %s over %s", peer, config.target, mutual)
    channel = grpc.secure_channel(config.target, credentials, options=options)
    _DESTINATIONS[channel] = config.destination()
    return channel


def _identity(data: bytes) -> bytes:
    return data


def _peer_retry_delay(exc: grpc.RpcError) -> float | None:
    """The delay the peer asked for in its status's RetryInfo; None when it sent none
    (the status is gRPC's own, or the peer's without that detail)."""
    if not isinstance(exc, grpc.Call):
        return None
    try:
        status = rpc_status.from_call(exc)
    except ValueError:  # rich status at odds with the call's own: not the peer's word
        return None
    for detail in status.details if status is not None else ():
        retry = error_details_pb2.RetryInfo()
        if detail.Unpack(retry):
            return float(max(0.0, retry.retry_delay.ToTimedelta().total_seconds()))
    return None


def _refused_unread(exc: grpc.RpcError) -> bool:
    """Whether a gRPC server refused the call past its concurrency limit, unread. Its
    client-side refusal of an answer too large says "Received message larger than max
    ...", never this."""
    return isinstance(exc, grpc.Call) and exc.details() == GRPC_CONCURRENCY_REFUSAL


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently a call is retried (the module constants by default)."""

    attempts: int = MAX_ATTEMPTS
    first_backoff: float = FIRST_BACKOFF_SECONDS
    max_backoff: float = MAX_BACKOFF_SECONDS

    def backoff(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based), jittered."""
        ceiling = min(self.max_backoff, self.first_backoff * (2 ** (attempt - 1)))
        return random.uniform(0, ceiling)  # noqa: S311 - jitter, not a secret


class Caller:
    """Calls unary methods of one channel with exact request bytes, deadlines and retries."""

    def __init__(
        self,
        channel: grpc.Channel,
        peer: str,
        policy: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._channel = channel
        self._peer = peer
        self._policy = policy or RetryPolicy()
        self._sleep = sleep
        self._destination = _DESTINATIONS.get(channel, "")

    @property
    def channel(self) -> grpc.Channel:
        """The underlying channel."""
        return self._channel

    def call(self, method: str, request: bytes, response_cls: type[M], *, deadline: float) -> M:
        """Call ``method`` (``/package.Service/Method``) with ``request`` bytes.

        ``deadline`` bounds the whole call including retries; each attempt gets what is
        left of it. Raises ``TransportError`` with the final gRPC status; ``NotRead``
        when every attempt made was shed before the peer read it.
        """
        stub = self._channel.unary_unary(
            method, request_serializer=_identity, response_deserializer=_identity
        )
        give_up_at = time.monotonic() + deadline
        attempt = 0
        # Whether the peer read none of the attempts so far (each shed unread).
        unread = True
        while True:
            attempt += 1
            remaining = give_up_at - time.monotonic()
            if remaining <= 0:
                failure = NotRead if unread else TransportError
                raise failure(
                    f"{self._peer} {_short(method)}", "DEADLINE_EXCEEDED", where=self._where(None)
                )
            try:
                raw: bytes = stub(request, timeout=remaining)
                break
            except grpc.RpcError as exc:
                code = exc.code() if isinstance(exc, grpc.Call) else grpc.StatusCode.UNKNOWN
                asked = 0.0
                retryable = code is grpc.StatusCode.UNAVAILABLE
                if code is grpc.StatusCode.RESOURCE_EXHAUSTED:
                    delay = _peer_retry_delay(exc)
                    if delay is None and _refused_unread(exc):
                        delay = 0.0  # asks for no delay: the backoff alone spaces retries
                    retryable, asked = delay is not None, delay or 0.0
                    unread = unread and retryable
                else:
                    unread = False
                if not retryable or attempt >= self._policy.attempts:
                    log.warning(
                        "%s %s failed: %s (attempt %d)",
                        self._peer, _short(method), code.name, attempt,
                    )  # fmt: skip
                    what = f"{self._peer} {_short(method)}"
                    said = (exc.details() if isinstance(exc, grpc.Call) else "") or ""
                    if code is grpc.StatusCode.RESOURCE_EXHAUSTED and not retryable:
                        # Likely gRPC's own (an answer over MAX_MESSAGE_BYTES): its words
                        # say which, and that the peer may have done the work.
                        what = f"{what} (not retried: {quoted(said)})"
                    failure = NotRead if unread else TransportError
                    raise failure(what, code.name, where=self._where(code, said)) from exc
                # At least the delay the peer asked for, jittered beyond it so that callers
                # it shed together do not come back together.
                pause = min(asked + self._policy.backoff(attempt), max(0.0, remaining))
                log.info(
                    "%s %s: %s, retrying the same request in %.2fs",
                    self._peer, _short(method), code.name, pause,
                )  # fmt: skip
                self._sleep(pause)
        try:
            return response_cls.FromString(raw)
        except DecodeError as exc:
            what = f"{self._peer} {_short(method)}"
            raise TransportError(what, "UNPARSEABLE_RESPONSE", where=self._where(None)) from exc

    def _where(self, code: grpc.StatusCode | None, said: str = "") -> str:
        """Where the call went, for its failure; for UNAVAILABLE, what the peer ``said``
        (its status details) when it answered itself (down for now: its gateway, its
        ledger or its keys), or else (nothing answered there) what to check. "" for a
        channel ``open_channel`` did not make."""
        if code is grpc.StatusCode.UNAVAILABLE and said and not _grpc_own(said):
            answered = f"the {self._peer} answered: {quoted(said)}"
            return f"{self._destination}: {answered}" if self._destination else answered
        if not self._destination:
            return ""
        if code is grpc.StatusCode.UNAVAILABLE:
            return f"{self._destination}: is the {self._peer} running, and reachable there?"
        return self._destination


# What gRPC itself says, lower-cased, when it made the UNAVAILABLE: no connection (refused,
# reset, timed out, TLS handshake), no address (DNS), the connection lost or closed
# (GOAWAY, keepalive, socket closed), or a proxy's HTTP error in place of the peer. The
# texts of grpcio's C core (1.6x-1.8x); a peer's own reason (setpay's servers answer
# "payment gateway unavailable", a ledger or key outage) says none of them.
_GRPC_OWN_TEXTS = (
    "failed to connect",
    "connection refused",
    "connection reset",
    "connection timed out",
    "connect failed",
    "dns resolution failed",
    "errors resolving",
    "name resolution",
    "empty address",
    "no addresses",
    "socket closed",
    "broken pipe",
    "endpoint",
    "goaway",
    "keepalive",
    "too many pings",
    "handshake",
    "ssl",
    "received http2 header with status",
    "channel shutdown",
    "channel is being destroyed",
    "cancelling all calls",
    "delayed close",
    "stream removed",
    "transport closed",
    "connections to all backends failing",
)


def _grpc_own(details: str) -> bool:
    """Whether an UNAVAILABLE's details are gRPC's own words (nothing answered) rather
    than a peer's reason."""
    lowered = details.lower()
    return any(text in lowered for text in _GRPC_OWN_TEXTS)


def _short(method: str) -> str:
    return method.rsplit("/", 1)[-1]
