"""What ``setpay gateway serve`` (``gateway.workers``) prepares for its supervisor before
any worker is forked, and removes once the supervisor is done (``prepared``).

TLS. The TLS server certificate is judged once for the bank, before anything is reserved:
an ended one is refused (``WorkerError``), one near its end warned of. Workers only read
its end (``gateway.process`` says why).

Ports. Each address is reserved before the fork (``gateway.ports``) and kept until the
supervisor is done: a port 0 becomes a real port before any worker starts, and every
worker, restarted ones too, binds that same port with SO_REUSEPORT.

Metrics and the ledger process. With metrics on, the sample directory and the scrape
endpoint; with a ledger service, its socket's private directory. What the supervisor
holds open and its children must close after the fork is listed (``inherited``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from gateway import metrics
from gateway.bank_errors import ProvisioningError
from gateway.config import BankConfig
from gateway.ledger_process import LedgerSocket
from gateway.ports import PortError, reserve
from gateway.process import check_tls_certificate
from gateway.scrape import MultiprocessDirectory, ScrapeEndpoint, prepare_multiprocess_directory
from gateway.worker import WorkerPlan


class WorkerError(Exception):
    """The workers cannot be started as configured."""


@dataclass(frozen=True)
class Bound:
    """What the bank serves on, once every worker is serving. With ``metrics_port = "any"``
    the scrape endpoint binds a port the OS picks: nothing else can take it in between."""

    port: int
    ca_port: int
    metrics_port: int | None
    workers: int


@dataclass(frozen=True)
class Prepared:
    """What the supervisor is given: the workers' plan, what the bank serves on, what its
    children close after the fork, the scrape endpoint and the sample directory (metrics
    on)."""

    plan: WorkerPlan
    bound: Bound
    inherited: list[Callable[[], None]]
    endpoint: ScrapeEndpoint | None
    samples: Path | None


@contextmanager
def prepared(config: BankConfig) -> Iterator[Prepared]:
    """Prepare what the supervisor of ``config``'s bank needs, removed as the block ends.

    Raises ``WorkerError``: the TLS server certificate has ended or cannot be read, a port
    cannot be reserved, metrics cannot be served, the ledger socket's directory cannot be
    made. What was prepared before is removed.
    """
    inherited: list[Callable[[], None]] = []  # what the supervisor holds, workers close
    directory: MultiprocessDirectory | None = None
    ledger_socket: LedgerSocket | None = None  # removed by the supervisor alone
    try:
        try:
            check_tls_certificate(config)  # once for the bank: see the module docstring
        except ProvisioningError as exc:
            raise WorkerError(str(exc)) from exc
        try:
            gateway = reserve(config.listen)
            inherited.append(gateway.close)
            ca = reserve(config.ca_listen)
            inherited.append(ca.close)
        except PortError as exc:
            raise WorkerError(str(exc)) from exc
        endpoint: ScrapeEndpoint | None = None
        if config.metrics_port:
            try:
                directory = prepare_multiprocess_directory()
                metrics.enable_supervisor(config.workers)
                port = config.metrics_port if isinstance(config.metrics_port, int) else 0
                endpoint = ScrapeEndpoint(config.metrics_host, port, directory)
            except metrics.MetricsError as exc:
                raise WorkerError(str(exc)) from exc
            inherited.append(endpoint.close)
        if config.uses_ledger_service():
            try:
                ledger_socket = LedgerSocket()
            except OSError as exc:  # its directory or demand board: a full temporary directory
                raise WorkerError(f"the ledger service's directory cannot be made: {exc}") from exc
        plan = WorkerPlan(
            config, gateway.address, ca.address, metrics=endpoint is not None,
            supervisor_pid=os.getpid(),
            ledger_socket=ledger_socket.path if ledger_socket else None,
        )  # fmt: skip
        bound = Bound(gateway.port, ca.port, endpoint.port if endpoint else None, config.workers)
        yield Prepared(plan, bound, inherited, endpoint, directory.path if directory else None)
    finally:
        for close in inherited:
            close()
        if directory is not None:
            directory.remove()
        if ledger_socket is not None:
            ledger_socket.close()
