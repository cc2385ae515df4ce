"""The merchant process put together: keys, trust, store, gateway and CA clients, services.

``Merchant.open(config)`` opens everything the configuration names; ``serve()`` starts
the authorization worker, the Merchant service for wallets, a thread that sends
again the settlement operations and batch changes still waiting for an answer, and,
when ``server.metrics_port`` asks for it, the Prometheus page (``metrics``); the
CLI's capture, refund and batch commands use ``settlement`` and ``batches`` on an opened
merchant without serving.

``serve()`` first judges the signature and key-exchange certificates the merchant
presents as its peers would, with the revocation data it has just fetched
(``setcore.pki.presented``), and refuses to serve (``ConfigError``) on one that no peer
accepts (of another brand, ended, revoked, of another type or usage), naming it and what
to do: a wallet and the gateway would refuse every message under it.
"""

from __future__ import annotations

import logging
import threading
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime

import grpc

from clients.authority import AuthorityClient
from clients.errors import ClientError, ConfigError
from clients.identity import read_root
from clients.merchant import metrics
from clients.merchant.authorizer import Authorizer
from clients.merchant.batches import Batches
from clients.merchant.checkout import Checkout
from clients.merchant.config import METRICS_ANY_PORT, MerchantConfig, ServerConfig
from clients.merchant.gateway_client import GatewayClient, GatewayKeys
from clients.merchant.gateway_keys import JudgedFetch
from clients.merchant.registration import current_credentials
from clients.merchant.registration_again import (
    REVOKED,
    ended,
    registering_again,
    renew_command,
    still_live,
)
from clients.merchant.servicer import (
    GRACE_SECONDS,
    MerchantServer,
    MerchantServicer,
    ServerSettings,
    start_server,
)
from clients.merchant.settlement import Settlement
from clients.merchant.store import MerchantStore
from clients.revocation import RevocationFeed
from clients.transport import Caller, open_channel
from hsm.base import KeyBackend
from hsm.uri import describe_uri, open_backend
from setcore.credentials import Credentials
from setcore.errors import ProtocolError, SetcoreError
from setcore.freshness import now_ms
from setcore.pki.certificate import load_certificate
from setcore.pki.extensions import read_merchant_data
from setcore.pki.presented import Presented, verify_presented
from setcore.pki.roles import MERCHANT, CertificateUsage
from setcore.pki.truststore import TrustStore

log = logging.getLogger("setpay.merchant")

# A serving merchant sends again, this often, the settlement operations and batch
# changes still waiting for an answer: sent by a command while the gateway was
# unreachable, or left by a crash (one whose answers did not verify, once a round reached
# them all since the start, only when it is due again: ``outcome.next_try``). Only those
# stored more than RESUME_AFTER_MS ago: a command's own sending ends within its deadline
# (``gateway_client.SETTLEMENT_DEADLINE_SECONDS``) well before.
RESUME_SECONDS = 30.0
RESUME_AFTER_MS = 60_000

#: What a refused signature certificate neither ended nor revoked advises (one of another
#: brand, type or usage, or not valid yet): a renewal is signed under it, so the Merchant
#: CA refuses that too, and ``register`` refuses while it is neither.
SIGNATURE_REMEDY = (
    "the Merchant CA refuses a renewal signed under it too, and register refuses while it "
    "has neither ended nor been revoked: put back the certificate the Merchant CA issued "
    "for this key, from the merchant's backup"
)


def signature_remedy(
    config: MerchantConfig,
    der: bytes,
    refusal: ProtocolError,
    backend: KeyBackend,
    trust: TrustStore,
    chain: tuple[bytes, ...],
) -> str:
    """What to do about the merchant's signature certificate ``der`` that no peer accepts
    (``refusal``): register again once it has ended or is revoked, as ``register`` judges
    it (``clients.merchant.registration_again``), after the acquirer revokes each of its
    certificates in ``backend`` still live (``register`` refuses until then, as the
    Merchant CA would); put back the one issued otherwise."""
    now = datetime.now(UTC)  # one moment, for the judgement and the advice
    if refusal.code == REVOKED or ended(der, now):
        return registering_again(config, still_live(trust, backend, chain, now), now)
    return SIGNATURE_REMEDY


def server_tls(server: ServerConfig) -> tuple[bytes, bytes] | None:
    """The Merchant service's TLS certificate chain and key, read from their files; None
    when ``insecure``. ``ConfigError`` when either is unnamed or unreadable: the loaded
    configuration refuses that already, but one built otherwise may still ask for it."""
    if server.insecure:
        return None
    if server.tls_cert is None or server.tls_key is None:
        raise ConfigError("server.tls_cert and server.tls_key are required unless insecure")
    try:
        return server.tls_cert.read_bytes(), server.tls_key.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read the server TLS files: {exc.strerror}") from exc


@dataclass
class Merchant:
    """An opened merchant: everything its services and commands use."""

    config: MerchantConfig
    backend: KeyBackend
    credentials: Credentials
    trust: TrustStore
    store: MerchantStore
    revocation: RevocationFeed
    gateway: GatewayClient
    gateway_keys: GatewayKeys
    authorizer: Authorizer
    checkout: Checkout
    settlement: Settlement
    batches: Batches
    _channels: list[grpc.Channel] = field(default_factory=list)
    _server: MerchantServer | None = None
    _resumer: threading.Thread | None = None
    _stop_resuming: threading.Event = field(default_factory=threading.Event)
    #: The port the Merchant service listens on, once serving.
    port: int = 0
    _metrics: metrics.MetricsEndpoint | None = None
    #: The port of the metrics page, once serving it (0: metrics off).
    metrics_port: int = 0
    _closed: bool = False

    @classmethod
    def open(cls, config: MerchantConfig, backend: KeyBackend | None = None) -> Merchant:
        """Open keys, trust store, store and channels (no network call yet).

        A ``backend`` handed in is the caller's until this returns; one opened here is
        closed again when anything after refuses (keys refused at start, another merchant
        id), as are the channels and the store, so that nothing is left open.
        """
        with ExitStack() as opened:
            if backend is None:
                uri = config.keys_uri()
                log.info("merchant %s: keys in %s", config.merchant_id, describe_uri(uri))
                backend = open_backend(uri)
                opened.callback(backend.close)
            merchant = cls._made(config, backend, opened)
            opened.pop_all()
        return merchant

    @classmethod
    def _made(cls, config: MerchantConfig, backend: KeyBackend, opened: ExitStack) -> Merchant:
        credentials = current_credentials(backend, config.chain)
        merchant_data = read_merchant_data(load_certificate(credentials.signature_cert))
        if merchant_data is None or merchant_data.merchant_id != config.merchant_id:
            raise ConfigError("the merchant certificate names another merchant id than merchant.id")
        trust = TrustStore(read_root(config.root))
        trust.add_certificates(credentials.chain)
        ca_channel = open_channel(config.ca.channel(), "CA")
        opened.callback(ca_channel.close)
        authority = AuthorityClient(Caller(ca_channel, "CA"))
        revocation = RevocationFeed(trust, lambda: authority.revocation(config.brand_id))
        gateway_channel = open_channel(config.gateway.channel(), "gateway")
        opened.callback(gateway_channel.close)
        store = MerchantStore(config.store)
        opened.callback(store.close)
        gateway = GatewayClient(
            Caller(gateway_channel, "gateway"), credentials, trust, config.merchant_id, store
        )

        # Revocation data that could not judge a PCertRes is not asked with again: nothing
        # is sent until the feed installs other data (at most a minute after the CA is back).
        fetch_gateway_certificates = JudgedFetch(
            trust, revocation.ensure_fresh, lambda: gateway.gateway_certificates(config.brand_id)
        )
        # Judged by the trust store the feed keeps current: a revoked certificate is
        # fetched again at the next use, not at the TTL's end.
        keys = GatewayKeys(fetch_gateway_certificates, trust=trust)
        authorizer = Authorizer(store, credentials, gateway, keys, config.merchant_id, revocation)
        checkout = Checkout(
            credentials, trust, store, keys, authorizer, revocation, config.brand_id,
            config.answer, config.server.threads,
        )  # fmt: skip
        settlement = Settlement(store, credentials, gateway, keys, config.merchant_id)
        batches = Batches(store, credentials, gateway, keys, config.merchant_id)
        return cls(
            config=config, backend=backend, credentials=credentials, trust=trust, store=store,
            revocation=revocation, gateway=gateway, gateway_keys=keys, authorizer=authorizer,
            checkout=checkout, settlement=settlement, batches=batches,
            _channels=[ca_channel, gateway_channel],
        )  # fmt: skip

    def serve(self) -> int:
        """Fetch revocation data, judge the merchant's own certificates with it
        (``_check_presented``), fetch the gateway's certificates, send again what a
        previous run left unanswered, start the worker and the service.

        Returns the bound port (the configuration may ask for port 0); 0 when
        ``request_stop`` came during the start-up, which then starts nothing. The metrics
        page, if configured, comes first: the start-up's own gateway calls are counted.
        """
        self._serve_metrics()
        self.revocation.refresh()
        self._check_presented()
        self.gateway_keys.current()
        self._resume_operations()
        if self._stop_resuming.is_set():
            log.info("merchant %s: stopped while starting, before serving", self.config.merchant_id)
            return 0
        self.authorizer.start()
        self._resumer = threading.Thread(target=self._resume_loop, name="resumer", daemon=True)
        self._resumer.start()
        server_config = self.config.server
        settings = ServerSettings(
            listen=server_config.listen, threads=server_config.threads,
            max_concurrent_rpcs=server_config.max_concurrent_rpcs, tls=server_tls(server_config),
        )  # fmt: skip
        self._server, port = start_server(
            MerchantServicer(self.checkout, self.credentials), settings
        )
        self.port = port
        log.info(
            "merchant %s serving wallets on port %d (answer: %s)",
            self.config.merchant_id, port, self.config.answer.value,
        )  # fmt: skip
        return port

    def _check_presented(self) -> None:
        """``ConfigError`` naming the first of the merchant's signature and current
        key-exchange certificates that a peer would refuse (``setcore.pki.presented``),
        judged with the revocation data the start has just fetched, before anything is
        sent; with what to do: renewing mends a key-exchange certificate, as the Merchant
        CA judges only the signature certificate a renewal is signed under; registering
        again, with new keys, a signature certificate ended or revoked (``register`` takes
        it as ended or revoked then too), once the acquirer has revoked each of its
        certificates still live (the Merchant CA registers an ID none of whose
        certificates is live, and ``register`` refuses before that); putting back the one
        issued any other.

        Only serving is refused: ``register`` and ``renew`` open no ``Merchant``, and the
        settlement commands on an opened one get the gateway's own refusal. The older
        key-exchange versions kept after a renewal are no longer handed to peers, and are
        not judged.
        """
        credentials = self.credentials
        kex_key, kex_der = credentials.key_exchange_key, credentials.key_exchange_cert
        if kex_key is None or kex_der is None:
            raise ConfigError("the merchant has no key-exchange certificate")
        renew = f"renew its certificates with `{renew_command(self.config)}`, then start it again"
        for key, der, usage in (
            (credentials.signature_key, credentials.signature_cert, CertificateUsage.SIGNATURE),
            (kex_key, kex_der, CertificateUsage.KEY_EXCHANGE),
        ):
            name = f"the certificate of key {key.label!r} v{key.version}"
            try:
                verify_presented(
                    self.trust, Presented(name, der, credentials.chain, MERCHANT, usage)
                )
            except ProtocolError as exc:
                remedy = (
                    signature_remedy(
                        self.config, der, exc, self.backend, self.trust, credentials.chain
                    )
                    if usage is CertificateUsage.SIGNATURE
                    else renew
                )
                raise ConfigError(
                    f"{name}: no peer accepts it ({exc}), so the merchant does not serve on "
                    f"it: {remedy}"
                ) from exc

    def _serve_metrics(self) -> None:
        server_config = self.config.server
        if server_config.metrics_port == 0:
            return
        port = 0 if server_config.metrics_port == METRICS_ANY_PORT else server_config.metrics_port
        self._metrics = metrics.start(self.config.store, server_config.metrics_host, port)
        self.metrics_port = self._metrics.port

    def _resume_loop(self) -> None:
        while not self._stop_resuming.wait(RESUME_SECONDS):
            try:
                now = now_ms()
                self._resume_operations(stored_before_ms=now - RESUME_AFTER_MS, due_at_ms=now)
            except Exception:  # the thread must outlive any one round's fault
                log.exception("unanswered operations not resumed now; trying again later")

    def _resume_operations(
        self, *, stored_before_ms: int | None = None, due_at_ms: int | None = None
    ) -> None:
        """Send again what a previous run (or a CLI command) left unanswered: at start all
        of it, in the rounds only what ``stored_before_ms`` and ``due_at_ms`` let through
        (``StoredRequests.resume``: every one due or not until a round reached them all).
        A round stops after the request in flight once ``close`` asks.

        Never stops the start or the serving: each operation's failure is logged by
        ``resume``; one here (the store unreadable) leaves them all for the next round.
        Revocation data is kept current first: a merchant that only settles makes no
        purchase that would refresh it, and answers checked against data gone stale would
        leave every operation waiting.
        """
        try:
            self.revocation.ensure_fresh()
            resumed = self.settlement.resume(
                stored_before_ms=stored_before_ms, due_at_ms=due_at_ms, stop=self._stop_resuming
            )
            batches = self.batches.resume(
                stored_before_ms=stored_before_ms, due_at_ms=due_at_ms, stop=self._stop_resuming
            )
        except (ClientError, SetcoreError) as exc:
            log.warning("unanswered operations not resumed now: %s", exc)
            return
        if resumed or batches:
            log.info(
                "resumed %d unanswered operations and %d batch requests", len(resumed), len(batches)
            )

    def request_stop(self) -> None:
        """Ask the merchant to stop, from any thread: a resume round (the start-up's, run
        by ``serve`` before anything serves, or a later one) ends after the request in
        flight, and a ``serve`` still starting starts nothing more. ``close`` still closes.

        ``setpay merchant serve`` calls it on SIGTERM or SIGINT from its stop watcher's
        thread (``cli.stop_watcher``), never from a signal handler: it sets an Event, whose
        lock the thread a handler interrupts may be holding inside that Event's wait."""
        self._stop_resuming.set()

    def wait(self) -> None:
        """Block until the server stops."""
        if self._server is not None:
            self._server.wait_for_termination()

    def close(self) -> None:
        """Stop serving (in-flight calls get the grace period), the worker, and close all.

        The resume rounds and the worker stop after the request each has in flight (its
        call bounded by its deadline); what they had not reached yet stays waiting for the
        next start. Closing twice is harmless.
        """
        if self._closed:
            return
        self._closed = True
        if self._server is not None:
            self._server.stop(GRACE_SECONDS).wait()
            self._server = None
        self._stop_resuming.set()
        if self._resumer is not None:
            self._resumer.join()
        self.authorizer.stop()
        if self._metrics is not None:
            self._metrics.close()
            self._metrics = None
        for channel in self._channels:
            channel.close()
        self.store.close()
        self.backend.close()
