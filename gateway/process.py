"""Assemble a running bank from its configuration: keys, ledger, CA, services, server.

Everything that opens a key backend session or a gRPC server happens here, so a worker
process can call it after fork (DESIGN.md 5.4: sessions and gRPC are never inherited).
When metrics are on in this process (``gateway.metrics.enable``), the key backend and the
ledger report to them and a sampler copies the counters of the trust store, the pool and
the revocation watcher.

The TLS server certificate (``[gateway.tls] cert``, both servers') is judged once per
bank start (``check_tls_certificate``): a bank refuses to start on one that has ended,
since every handshake would fail (its clients would see only UNAVAILABLE), and warns when
it ends within TLS_EXPIRY_WARNING. ``start_bank`` judges it for a bank run in-process; the
supervisor of ``setpay gateway serve`` judges it before it forks (``gateway.workers``),
and its workers (``supervised``) only read its end. A bank already serving is never
stopped for it: its open connections keep working past the end, as TLS checks validity at
the handshake, so a worker restarted after the end serves, and says at WARNING that new
handshakes with it fail, rather than refuse (a worker that cannot start stops the whole
bank, and with it those connections). Metrics show the end (``gateway.metrics``).

The certificates the bank presents are judged the same way (``gateway.bank_presented``):
every worker of a bank starting judges them, and a refusal stops the start; a worker
forked once the bank has served only replaces one that died, and is not judged (its
peers would refuse a certificate that ended meanwhile message by message, as they did
the running workers'), so that one certificate's end never stops a serving bank.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc

from gateway import metrics
from gateway.bank import Bank
from gateway.bank_errors import ProvisioningError
from gateway.bank_pki import BankPki, bank_keys_uri, load_bank_pki, open_ca_store
from gateway.ca.authority import CertificateAuthority
from gateway.ca.servicer import CertificateAuthorityServicer
from gateway.ca.store import CaStore
from gateway.config import BankConfig, config_option
from gateway.health_monitor import HealthMonitor
from gateway.issuer import LedgerDirectory, open_ledger
from gateway.ledger import Ledger
from gateway.server import Server, ServerLimits, ServiceBinding, TlsConfig, create_server
from gateway.servicer import PaymentGatewayServicer
from hsm.errors import InvalidKeyURI
from hsm.uri import SoftwareKeyURI, parse_key_uri
from setcore.errors import ConfigurationError
from setcore.pki.tls import NOT_AFTER_FORMAT, chain_not_after

log = logging.getLogger("setpay.gateway")

# A bank starting on a TLS server certificate that ends sooner than this warns: two weeks
# leave room to issue a new one (``setpay ca issue-tls``), install it and restart within
# a change window, and are short enough that the warning is not routinely ignored.
TLS_EXPIRY_WARNING = timedelta(days=14)
# ``RunningBank.drain`` cuts the calls left at the end of the grace period itself; the stop
# it begins gives gRPC a grace this much longer, so gRPC's own cut is only a backstop (for
# a drain that fails between the two) and never comes before the count. A second is far
# more than drain takes from the grace end to its cut, and still bounds a stop.
CUT_BACKSTOP_SECONDS = 1.0


@dataclass
class RunningBank:
    """A bank serving on two ports, with what must be closed when it stops."""

    server: Server
    port: int
    health: HealthMonitor
    ca_server: Server
    ca_port: int
    ca_health: HealthMonitor
    bank: Bank
    pki: BankPki
    ledger: Ledger
    authority: CertificateAuthority
    ca_store: CaStore
    sampler: metrics.Sampler
    not_serving_seconds: float = 0.0
    """How long ``drain`` answers health checks NOT_SERVING before its grace period (none
    when it has no grace period: a stop at once)."""

    def stop(self, grace: float | None) -> int:
        """``drain``, then ``close``; how many calls the drain cut."""
        cut = self.drain(grace)
        self.close()
        return cut

    def drain(self, grace: float | None) -> int:
        """NOT_SERVING, still serving for ``not_serving_seconds``, then let in-flight calls
        finish within ``grace`` and stop serving; how many calls, on both servers, were
        still in flight when the grace period ended (cut: gRPC cancels them, and their
        callers get UNAVAILABLE, "Cancelling all calls", not an answer). Health Watch and
        reflection streams are ended at once, and never counted."""
        self.health.stop()
        self.ca_health.stop()
        if grace is not None:
            # A stopped server refuses new connections: a load balancer that polls health
            # Check, rather than keeping a Watch open, sees NOT_SERVING only in this pause.
            time.sleep(self.not_serving_seconds)
        # No grace is a grace of none, and no notice: what is in flight now is cut, and
        # counted so.
        grace = 0.0 if grace is None else grace
        # The rule for what was cut: a call whose handler had not returned when its
        # server's calls were cancelled. So drain cuts them itself, each server's count
        # read just before its cut: gRPC's own cut at the grace end completes its stop
        # within milliseconds, while the handlers it cancelled still run, and a count taken
        # only if the stop had not completed by then read such calls as finished.
        ends = time.monotonic() + grace
        servers = (self.server, self.ca_server)
        stopping = [server.stop(grace + CUT_BACKSTOP_SECONDS) for server in servers]
        cut = 0
        for server, stopped in zip(servers, stopping, strict=True):
            # One wait for both: the grace period is one, and the second server's calls
            # are cut at its end too, not after the first one's cut.
            if not stopped.wait(max(0.0, ends - time.monotonic())):
                # Read before the cut, so a handler that returns in the microseconds
                # between the two is counted cut though its caller got its answer: the
                # race's chosen side. Read after, the calls cut whose handlers returned
                # meanwhile would go uncounted, a stop that cut calls exiting 0 (what this
                # count is for); the pool counts calls, not which gRPC cancelled, so no
                # read is exact, and a stop that may have cut calls reads as one that did.
                cut += server.in_flight
                server.stop(None)  # the cut: gRPC cancels its calls now
        for stopped in stopping:
            stopped.wait()
        return cut

    def close(self) -> None:
        """Close key sessions, the ledger and the CA's store, once ``drain`` has stopped
        the servers. A call cut still runs on its thread until it returns, and the ledger
        finishes what it had queued for it before closing."""
        # Each is closed even if one before it fails (that failure is raised after).
        with contextlib.ExitStack() as closing:
            closing.callback(self.pki.close)
            closing.callback(self.ledger.close)
            closing.callback(self.ca_store.close)
            self.sampler.stop()


def tls_config(config: BankConfig, *, mutual: bool) -> TlsConfig | None:
    """A server's TLS material (client certificates required when ``mutual``), or None
    for an insecure (local experiment) server."""
    if config.insecure or config.tls is None:
        return None
    return TlsConfig(
        certificate_chain=config.tls.cert.read_bytes(),
        private_key=config.tls.key.read_bytes(),
        client_ca=config.tls.client_ca.read_bytes() if mutual else None,
    )


def tls_not_after(config: BankConfig) -> datetime | None:
    """When the bank's TLS server certificate ends (None for an insecure bank), unjudged."""
    if config.insecure or config.tls is None:
        return None
    path = config.tls.cert
    try:
        return chain_not_after(path.read_bytes())
    except OSError as exc:  # read here first, before any worker: a typo'd path is likely
        raise ProvisioningError(
            f"TLS server certificate {path}: cannot read it ({exc.strerror}): point"
            " [gateway.tls] cert at the bank's PEM certificate"
        ) from exc
    except ConfigurationError as exc:
        raise ProvisioningError(f"TLS server certificate {path}: {exc}") from exc


def check_tls_certificate(config: BankConfig, now: datetime | None = None) -> datetime | None:
    """When the bank's TLS server certificate ends (None for an insecure bank); refuses
    one that has ended (``ProvisioningError``), warns of one within TLS_EXPIRY_WARNING.
    Once per bank start: see the module docstring."""
    ends = tls_not_after(config)
    if ends is None or config.tls is None:
        return None
    path = config.tls.cert
    left = ends - (now or datetime.now(UTC))
    shown = ends.strftime(NOT_AFTER_FORMAT)
    if left <= timedelta(0):
        raise ProvisioningError(
            f"the TLS server certificate {path} ended at {shown} (notAfter): every TLS"
            " handshake would fail; issue a new one (`setpay ca issue-tls"
            f" {config_option(config)} --role server --name HOST --out DIR`, HOST the name"
            " clients dial, DIR where to write it), point [gateway.tls] cert and key at it,"
            " and start the bank again"
        )
    if left < TLS_EXPIRY_WARNING:
        log.warning(
            "the TLS server certificate %s ends at %s (notAfter), in %.1f days: every TLS"
            " handshake fails after that; issue a new one (`setpay ca issue-tls %s --role"
            " server --name HOST --out DIR`, HOST the name clients dial, DIR where to write"
            " it) and restart the bank on it",
            path, shown, left / timedelta(days=1), config_option(config),
        )  # fmt: skip
    return ends


def warn_pin_file_in_bank(config: BankConfig) -> None:
    """Warn, once per bank start (``setpay gateway serve``), when the key URI reads its PIN
    or passphrase from a file inside the bank directory (symbolic links followed): the
    default of ``setpay init`` (``keys.pass``), fine for trying setpay out, and a trap
    for a bank, since every copy of the directory (the backup docs/OPERATIONS.md section
    10 makes) then holds it beside ledger.keys. Names the file, never what it holds."""
    try:
        uri = parse_key_uri(bank_keys_uri(config))
    except InvalidKeyURI:
        return  # opening the backend says why
    source = uri.pin_source
    if source.kind != "file":
        return
    path = Path(os.path.realpath(config.base_dir / source.location))
    if not path.is_relative_to(os.path.realpath(config.base_dir)):
        return
    opens = "the software keystore" if isinstance(uri, SoftwareKeyURI) else "the token's keys"
    log.warning(
        "the key URI reads its PIN or passphrase from %s, a file inside the bank directory:"
        " whoever holds a copy of the directory (a backup of it) opens %s with it, and so"
        " every card number in the ledger. That is for trying setpay out only: a bank"
        " keeps the file outside the bank directory and its backups (pin-source=file:PATH"
        " in [bank] keys), or uses a token",
        path, opens,
    )  # fmt: skip


def _served_tls_ends(config: BankConfig, supervised: bool) -> datetime | None:
    """The TLS server certificate's end: judged (a bank's start), or, for a worker whose
    supervisor judged it, only read, and its end said at WARNING once passed."""
    if not supervised:
        return check_tls_certificate(config)
    ends = tls_not_after(config)
    if ends is not None and config.tls is not None and ends <= datetime.now(UTC):
        log.warning(
            "the TLS server certificate %s ended at %s (notAfter): this worker serves, but"
            " every new TLS handshake with it fails; issue a new one (`setpay ca issue-tls"
            " %s --role server --name HOST --out DIR`, HOST the name clients dial, DIR where"
            " to write it) and restart the bank on it",
            config.tls.cert, ends.strftime(NOT_AFTER_FORMAT), config_option(config),
        )  # fmt: skip
    return ends


def _stop_at_once(server: grpc.Server, health: HealthMonitor) -> None:
    health.stop()
    server.stop(None).wait()


def start_bank(
    config: BankConfig,
    *,
    listen: str | None = None,
    ca_listen: str | None = None,
    reuse_port: bool = False,
    ledger_service: str | None = None,
    sweep_holds: bool = False,
    announce_stop: bool = False,
    supervised: bool = False,
    judge_presented: bool = True,
) -> RunningBank:
    """Open keys, ledger and CA; serve PaymentGateway (mutual TLS) and CertificateAuthority
    (server TLS) each on its own port. ``ledger_service``: the socket of the ledger
    process that commits for this worker, if there is one. ``sweep_holds``: run the
    ledger's hold sweeper in this process (one per bank: worker 0). ``announce_stop``:
    say NOT_SERVING for ``config.not_serving_seconds`` before a stop drains, for the load
    balancers that poll a served worker (``gateway.worker``); a bank run in-process (the
    demo, tests, tools) has none to tell, and stops without the pause. ``supervised``: a
    worker, whose supervisor judged the TLS server certificate for the whole bank (see
    the module docstring). ``judge_presented``: refuse to start on a certificate the
    bank presents that no peer accepts (``gateway.bank_presented``); False for a worker
    that replaces one that died while the bank served."""
    on = metrics.enabled()
    tls_ends = _served_tls_ends(config, supervised)  # first: nothing is open to undo yet
    # Whatever is opened or started is undone, newest first, if a later step fails: a bank
    # that cannot start leaves no server serving, no prober probing, no database open.
    with contextlib.ExitStack() as undo:
        observer = metrics.key_operation if on else None
        pki = load_bank_pki(config, observer, judge_presented=judge_presented)
        undo.callback(pki.close)
        ledger = open_ledger(
            config,
            metrics.ledger_commit if on else None,
            service=ledger_service,
            backend=pki.backend,
        )
        undo.callback(ledger.close)
        if sweep_holds:
            ledger.start_hold_sweeper(observer=metrics.holds_expired if on else None)
        bank = Bank(
            credentials=pki.gateway,
            trust=pki.trust,
            token_key=pki.token_sealer(),
            ledger=ledger,
            gateway_chain=pki.gateway.chain,
            opening=pki.opening_keys(),
        )
        ca_store = open_ca_store(config)
        undo.callback(ca_store.close)
        authority = CertificateAuthority(
            pki.authority_keys(),
            ca_store,
            pki.trust,
            LedgerDirectory(ledger, config.settlement_currency),
        )
        bank = replace(bank, refresh_revocation=authority.watcher.check)
        limits = ServerLimits(
            max_message_bytes=config.max_message_bytes,
            max_concurrent_rpcs=config.max_concurrent_rpcs,
            threads=config.threads,
            reuse_port=reuse_port,
        )
        # Before the servers: create_server starts each serving, and its health SERVING,
        # before it returns, and the page must have the revocation data's end by then.
        # Samples at once, which writes to the sample directory and so can fail too.
        sampler = metrics.Sampler(pki.trust, pki.backend, authority.watcher, authority).start()
        undo.callback(sampler.stop)
        if on and tls_ends is not None:
            metrics.tls_certificate_valid_until(tls_ends.timestamp())
        probes = (pki.backend.check_health, ledger.check_health)
        server, port, health = create_server(
            [ServiceBinding("PaymentGatewayService", PaymentGatewayServicer(bank))],
            listen or config.listen,
            limits,
            tls=tls_config(config, mutual=True),
            reflection_enabled=config.reflection,
            probes=probes,
        )
        undo.callback(_stop_at_once, server, health)
        ca_server, ca_port, ca_health = create_server(
            [
                ServiceBinding(
                    "CertificateAuthorityService", CertificateAuthorityServicer(authority)
                )
            ],
            ca_listen or config.ca_listen,
            limits,
            tls=tls_config(config, mutual=False),
            reflection_enabled=config.reflection,
            probes=probes,
        )
        undo.callback(_stop_at_once, ca_server, ca_health)
        undo.pop_all()  # started: RunningBank.stop closes it all from now on
    mode = "INSECURE plaintext (local experiments only)" if config.insecure else "TLS"
    log.info("gateway on port %d, CA on port %d (%s)", port, ca_port, mode)
    return RunningBank(
        server, port, health, ca_server, ca_port, ca_health, bank, pki, ledger, authority,
        ca_store, sampler, config.not_serving_seconds if announce_stop else 0.0,
    )  # fmt: skip
