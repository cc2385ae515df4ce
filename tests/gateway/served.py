"""A bank run as ``setpay gateway serve`` in a subprocess, for the worker and metrics tests.

``ServedBank`` starts the real command (supervisor plus forked workers) on ports the OS
picks (gateway, CA, metrics: the port file says which), opens merchant channels that each
get a connection of their own, and gives the actors of ``actors.py`` a ``World`` whose ledger is
the same SQLite file opened from the test process. Output goes to files, never to pipes
nobody reads. Every wait is bounded.

The bank runs with ``SETPAY_ALLOW_INSPECTION=1`` unless a test asks otherwise: the tests
read its processes' ``/proc/PID/fd`` and ``maps``, which a bank that is not dumpable shuts
to every process of its user that lacks ``CAP_SYS_PTRACE``: to the whole suite when a
non-root user runs it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from prometheus_client.parser import text_string_to_metric_families

from cli.hardening import ALLOW_INSPECTION
from gateway.config import load
from gateway.issuer import open_ledger
from gateway.ledger import Ledger
from gateway.ledger_process import PROCESS_NAME
from gateway.provisioning import init_bank
from hsm.software import SoftwareBackend
from setpay.v1 import services_pb2_grpc

from .actors import World

REPOSITORY = Path(__file__).resolve().parents[2]
# The bank is up within seconds; on a loaded 2-core CI machine allow much more.
START_SECONDS = 60.0
STOP_SECONDS = 60.0
WAIT_SECONDS = 30.0

Sample = tuple[str, frozenset[tuple[str, str]]]


def wait_for(what: str, check: Callable[[], bool], seconds: float = WAIT_SECONDS) -> None:
    """Poll ``check`` until it holds; fail naming ``what`` after ``seconds``."""
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def children_of(pid: int) -> list[int]:
    """The live child processes of ``pid`` (Linux /proc)."""
    path = Path(f"/proc/{pid}/task/{pid}/children")
    try:
        return [int(p) for p in path.read_text().split()]
    except FileNotFoundError:
        return []


LEDGER_PROCESS_NAME = PROCESS_NAME.decode()
# The environment of a bank whose ledger runs in a process of its own.
LEDGER_PROCESS = {"SETPAY_LEDGER_SERVICE": "1"}


def _named(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except FileNotFoundError:
        return ""


def workers_of(pid: int) -> list[int]:
    """The bank's worker processes: its children but the ledger process."""
    return [c for c in children_of(pid) if _named(c) != LEDGER_PROCESS_NAME]


def ledger_process_of(pid: int) -> list[int]:
    """The bank's ledger process (a list: empty while there is none)."""
    return [c for c in children_of(pid) if _named(c) == LEDGER_PROCESS_NAME]


def the_ledger_process(bank: ServedBank) -> int:
    """The pid of ``bank``'s one ledger process, once it runs (``LEDGER_PROCESS``)."""
    wait_for("the ledger process", lambda: len(ledger_process_of(bank.process.pid)) == 1)
    (ledger,) = ledger_process_of(bank.process.pid)
    return ledger


def threads_of(pid: int) -> int:
    """How many threads the process ``pid`` runs (Linux /proc)."""
    return len(list(Path(f"/proc/{pid}/task").iterdir()))


def mapped_files(pid: int) -> str:
    """The files the process ``pid`` has mapped (shared libraries among them)."""
    return Path(f"/proc/{pid}/maps").read_text()


@dataclass
class _Running:
    """What the actors need of a running bank: its ledger and its root certificate."""

    ledger: Ledger
    root_der: bytes

    @property
    def pki(self) -> _Running:
        return self

    def stop(self, grace: float | None) -> None:
        self.ledger.close()


@dataclass
class ServedBank:
    """A ``setpay gateway serve`` process and what the tests use to talk to it."""

    directory: Path
    process: subprocess.Popen[bytes]
    stdout: Path
    stderr: Path
    port: int
    ca_port: int
    metrics_port: int | None
    world: World
    _channels: list[grpc.Channel] = field(default_factory=list)

    def channel(self) -> services_pb2_grpc.PaymentGatewayServiceStub:
        """A stub on a new channel with its own connection (so the kernel may hand it to
        another worker: SO_REUSEPORT balances connections, not calls)."""
        tls = self.directory / "tls"
        credentials = grpc.ssl_channel_credentials(
            root_certificates=(tls / "root.pem").read_bytes(),
            private_key=(tls / "merchant-client.key").read_bytes(),
            certificate_chain=(tls / "merchant-client.pem").read_bytes(),
        )
        channel = grpc.secure_channel(
            f"127.0.0.1:{self.port}", credentials, options=[("grpc.use_local_subchannel_pool", 1)]
        )
        self._channels.append(channel)
        return services_pb2_grpc.PaymentGatewayServiceStub(channel)  # type: ignore[no-untyped-call]

    def log(self) -> str:
        """Everything the bank wrote to stderr so far."""
        return self.stderr.read_text(errors="replace")

    def scrape_text(self) -> str:
        """One scrape of the metrics endpoint."""
        assert self.metrics_port is not None
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as response:
            return str(response.read().decode())

    def scrape(self) -> dict[Sample, float]:
        """One scrape, as (sample name, labels) -> value."""
        samples: dict[Sample, float] = {}
        for family in text_string_to_metric_families(self.scrape_text()):
            for s in family.samples:
                samples[(s.name, frozenset(s.labels.items()))] = s.value
        return samples

    def stop(self, sig: int = signal.SIGTERM) -> int:
        """Signal the supervisor and wait for it; its exit status."""
        self.process.send_signal(sig)
        return self.process.wait(timeout=STOP_SECONDS)

    def close(self) -> None:
        for channel in self._channels:
            channel.close()
        self.world.close()
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=STOP_SECONDS)


def value(samples: dict[Sample, float], name: str, **labels: str) -> float:
    """A sample's value (0 when the scrape does not have it)."""
    return samples.get((name, frozenset(labels.items())), 0.0)


@dataclass
class Launched:
    """A ``setpay gateway serve`` process started, not yet known to serve."""

    directory: Path
    process: subprocess.Popen[bytes]
    ports: Path
    stdout: Path
    stderr: Path
    metrics: bool

    def log(self) -> str:
        """Everything the bank wrote to stderr so far."""
        return self.stderr.read_text(errors="replace")


def launch(
    root: Path,
    *,
    workers: int,
    metrics: bool = True,
    keys: str | None = None,
    extra_env: dict[str, str] | None = None,
    prepare: Callable[[Path], None] = lambda directory: None,
    command: Sequence[str] = ("cli.main",),
    inspectable: bool = True,
) -> Launched:
    """``setpay init`` a bank under ``root`` and start serving it; returns at once.

    ``command``: the module run as ``setpay`` and its own arguments (a test's wrapper,
    which then runs ``setpay`` itself). The bank runs in a session of its own, so a test
    can signal its whole process group (what a terminal's Ctrl-C does) without
    signalling itself. ``inspectable``: dumpable (``SETPAY_ALLOW_INSPECTION=1``), so
    that its ``/proc`` files are open to the tests as to any process of their user."""
    directory = root / "bank"
    init_bank(directory, profile="ec", keys=keys, merchant_tls=True, env={})
    prepare(directory)
    ports = root / "ports"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SETPAY_", "PROMETHEUS_"))}
    if inspectable:
        env[ALLOW_INSPECTION] = "1"
    env.update(extra_env or {})
    stdout, stderr = root / "stdout.txt", root / "stderr.txt"
    argv = [
        sys.executable, "-m", *command, "--log-level", "INFO", "gateway", "serve",
        "--config", str(directory / "setpay.toml"), "--listen", "127.0.0.1:0",
        "--ca-listen", "127.0.0.1:0", "--workers", str(workers), "--port-file", str(ports),
        # "any": a port the OS picks as the bank binds it, the port file's third number.
        "--metrics-port", "any" if metrics else "0",
    ]  # fmt: skip
    with stdout.open("wb") as out, stderr.open("wb") as err:
        process = subprocess.Popen(
            argv, env=env, cwd=REPOSITORY, stdout=out, stderr=err, start_new_session=True
        )
    return Launched(directory, process, ports, stdout, stderr, metrics)


def serve_bank(root: Path, **options: object) -> ServedBank:
    """``setpay init`` a bank under ``root`` and serve it (``launch``'s options); returns
    once it is serving."""
    started = launch(root, **options)  # type: ignore[arg-type]
    process, ports = started.process, started.ports
    try:
        deadline = time.monotonic() + START_SECONDS
        while not ports.exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        if not ports.exists():
            raise AssertionError(f"the bank did not start:\n{started.log()}")
        numbers = [int(p) for p in ports.read_text().split()]
        assert len(numbers) == (3 if started.metrics else 2), numbers
        port, ca_port, *metrics_port = numbers
        world = _world(started.directory, port, ca_port)
    except BaseException:
        process.kill()
        process.wait(timeout=STOP_SECONDS)
        raise
    return ServedBank(
        started.directory, process, started.stdout, started.stderr, port, ca_port,
        metrics_port[0] if metrics_port else None, world,
    )  # fmt: skip


def _world(directory: Path, port: int, ca_port: int) -> World:
    from .actors import channels_for

    config = load(directory / "setpay.toml", env={})
    running = _Running(open_ledger(config), (directory / "certs/brand-root.der").read_bytes())
    gw_channel, ca_channel = channels_for(directory, port, ca_port)
    return World(
        directory, config, running,  # type: ignore[arg-type]
        services_pb2_grpc.PaymentGatewayServiceStub(gw_channel),  # type: ignore[no-untyped-call]
        services_pb2_grpc.CertificateAuthorityServiceStub(ca_channel),  # type: ignore[no-untyped-call]
        [gw_channel, ca_channel], SoftwareBackend.ephemeral(), "ec",
    )  # fmt: skip


def served(root: Path, **options: object) -> Iterator[ServedBank]:
    """A fixture body: serve, yield, close."""
    bank = serve_bank(root, **options)  # type: ignore[arg-type]
    try:
        yield bank
    finally:
        bank.close()
