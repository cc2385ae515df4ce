"""The supervisor's side of the metrics: the workers' sample directory and the endpoint
that serves their samples, merged, to Prometheus (DESIGN.md 5.5).

``prepare_multiprocess_directory`` runs in the supervisor before it forks any worker: it
sets PROMETHEUS_MULTIPROC_DIR, which prometheus_client reads when first imported (see
``gateway.metrics``). ``ScrapeEndpoint`` is served from the supervisor's own loop, one
request at a time, so the supervisor stays single-threaded and forking stays safe.

Errors: ``gateway.metrics.MetricsError`` (a directory or a port that cannot be used).
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import tempfile
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from types import FrameType

from gateway.bank_cpu import BankCpuCollector, Children
from gateway.metrics import MULTIPROC_ENV, MetricsError, client_is_multiprocess
from gateway.metrics_files import PARTIAL_SUFFIX, PROBE_PREFIX

log = logging.getLogger("setpay.metrics")

# A scraper that connects and then stalls, or sends its request a byte at a time, holds the
# supervisor's loop (which also forwards SIGTERM and restarts workers) this long at most.
# Merging even a 64-worker directory takes milliseconds.
SCRAPE_SECONDS = 2.0


@dataclass(frozen=True)
class MultiprocessDirectory:
    """Where the workers' sample files live; ``owned``: made by us, removed by us."""

    path: Path
    owned: bool

    def remove(self) -> None:
        """Delete the directory if we made it (samples of a stopped bank mean nothing),
        with the probe directories a process killed mid-probe left in it."""
        if not self.owned:
            return
        _remove_probes(self.path)
        for entry in self.path.iterdir():
            entry.unlink()
        self.path.rmdir()


def _remove_probes(path: Path) -> None:
    """Remove the probe directories in ``path`` (``metrics_files.PROBE_PREFIX``): each
    process probes at its start, and one killed mid-probe leaves its directory behind."""
    for probe in path.glob(f"{PROBE_PREFIX}*"):
        if probe.is_dir() and not probe.is_symlink():
            shutil.rmtree(probe)


def prepare_multiprocess_directory() -> MultiprocessDirectory:
    """Point PROMETHEUS_MULTIPROC_DIR at a clean directory; call before forking workers.

    A directory the operator set is emptied of old sample files (a previous run's counters
    would be added to ours), of files a run left half made and of its probe directories
    (``metrics_files``); otherwise a fresh private one is made.
    """
    configured = os.environ.get(MULTIPROC_ENV)
    if configured:
        path = Path(configured)
        if not path.is_dir():
            raise MetricsError(f"{MULTIPROC_ENV} is not a directory")
        for stale in [*path.glob("*.db"), *path.glob(f"*{PARTIAL_SUFFIX}")]:
            stale.unlink()
        _remove_probes(path)
        directory = MultiprocessDirectory(path, owned=False)
    else:
        path = Path(tempfile.mkdtemp(prefix="setpay-metrics-"))
        directory = MultiprocessDirectory(path, owned=True)
        os.environ[MULTIPROC_ENV] = str(path)
    if not client_is_multiprocess():
        directory.remove()
        raise MetricsError(f"prometheus_client was imported before {MULTIPROC_ENV} was set")
    return directory


class _ScrapeTooSlow(BaseException):
    """A scrape outlived SCRAPE_SECONDS. Not an ``Exception``: the HTTP server answers those
    itself; this one it lets through after closing the connection."""


class _ScrapeServer(HTTPServer):
    """A one-request-at-a-time HTTP server on IPv4 or IPv6."""

    def __init__(
        self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], family: int
    ) -> None:
        self.address_family = family
        super().__init__(address, handler)


class ScrapeEndpoint:
    """Serves every process's samples, merged, over HTTP; handled one request at a time by
    the supervisor's loop (it stays single-threaded, so forking a new worker is safe)."""

    def __init__(self, host: str, port: int, directory: MultiprocessDirectory) -> None:
        # Imported here like everything of prometheus_client (see gateway.metrics).
        from prometheus_client import CollectorRegistry  # noqa: PLC0415
        from prometheus_client.exposition import MetricsHandler  # noqa: PLC0415
        from prometheus_client.multiprocess import MultiProcessCollector  # noqa: PLC0415

        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=str(directory.path))  # type: ignore[no-untyped-call]
        self._registry = registry
        handler = type(
            "ScrapeHandler", (MetricsHandler,), {"registry": registry, "timeout": SCRAPE_SECONDS}
        )
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        try:
            self._server = _ScrapeServer((host.strip("[]"), port), handler, family)
        except OSError as exc:
            raise MetricsError(f"cannot serve metrics on {host}:{port}: {exc.strerror}") from exc
        # Poll, never block: the loop calls handle() only when a connection is waiting.
        self._server.timeout = 0

    def count_cpu_of(self, children: Children) -> None:
        """Serve the bank's CPU too (``gateway.bank_cpu``): the supervisor's, and that of
        the ``children`` it runs; called once, by the supervisor."""
        self._registry.register(BankCpuCollector(children))

    @property
    def port(self) -> int:
        """The bound port."""
        return int(self._server.server_address[1])

    def fileno(self) -> int:
        """The listening socket, for the supervisor's selector."""
        return self._server.fileno()

    def handle(self) -> None:
        """Answer the waiting scrape (if it is still there), within SCRAPE_SECONDS.

        The handler's timeout bounds each read and write, not the request: a client that
        trickles its request would keep it going. So an alarm bounds the whole scrape; it
        is armed only here, in the supervisor's one thread, and raises only while armed.
        """
        armed = True

        def too_slow(signum: int, frame: FrameType | None) -> None:
            if armed:
                raise _ScrapeTooSlow

        previous = signal.signal(signal.SIGALRM, too_slow)
        try:
            signal.setitimer(signal.ITIMER_REAL, SCRAPE_SECONDS)
            try:
                self._server.handle_request()
            finally:
                armed = False
                signal.setitimer(signal.ITIMER_REAL, 0)
        except _ScrapeTooSlow:
            log.warning("a scrape took more than %.0f s: its connection was closed", SCRAPE_SECONDS)
        finally:
            signal.signal(signal.SIGALRM, previous)

    def close(self) -> None:
        """Stop listening."""
        self._server.server_close()
