"""``setpay bench``: the authorization load generator and its reference services.

    setpay bench authorize --spawn [--profile ec|rsa] [--keys URI] [--workers N] ...
    setpay bench authorize --target HOST:PORT --bank-config FILE ...
    setpay bench serve --mode ceiling|echo --config FILE [--workers N] [--delay-ms MS]
    setpay bench compare REPORT... | --group LABEL REPORT... [--group LABEL REPORT...]

``authorize`` prepares a merchant and cardholders against a bank (opening their card
accounts in the bank's ledger: a bank it spawned, or the one ``--bank-config`` names),
then drives AuthReq traffic and reports (docs/BENCHMARKS.md). ``serve`` runs the crypto
ceiling or the echo service with a bank's keys and limits (``gateway.ceiling``); the
bench starts it itself for ``--ceiling``. ``compare`` prints the medians of JSON reports,
by group (``clients.loadtest.compare``). ``serve`` and ``compare`` live in modules of
their own (``bench_serve``, ``bench_compare``); their errors are dispatched here.
``authorize``'s options are read and checked in ``bench_options``.

This module is the one place that knows both the bank (its ledger, its configuration)
and the load generator (``clients.loadtest``), which never import each other: it reads
the bank's ledger for the bench (``ledger_probe``: the holds each gateway run made for
the run's own merchant) and names the filesystem the ledger is on. Exit status
(``EXIT_STATUS``): 0 when every step of every service ran clean and the report doubts
nothing, 1 when the run failed or a request was unaccounted for (the figures cannot be
trusted), 2 for usage errors (argparse's, and options that make no runnable plan:
``PlanError``), 3 when the run completed and every request was accounted for but a step
was not clean (errors, timeouts, a closed loop that ran out of requests) or the report
says DOUBT (requests the bank's page or ledger could not check, the bench sending late,
the machine changing speed, a ceiling slower than the gateway, a sweep that passed above
a failure, a closed loop out with under ten requests per caller, a ledger in memory, a
server the bench started whose processes changed during the run: ``changed_processes``):
the reports are written all the same (``bench_files``: one that could not be written
fails the run). A failed run writes a JSON report saying why. A gone reader (``| head``)
changes only a clean run's status, and only without --json: its text, its one answer, was
lost (141, ``cli.main``). The progress on standard error is no answer: its reader gone
(``2>&1 | head -1``), the run goes on without it.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from contextlib import ExitStack, suppress
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from cli import bench_compare, bench_files, bench_serve, bench_stop, stdout_reader
from cli.bench_ledger import ledger_filesystem, ledger_probe, memory_ledger_doubt
from cli.bench_options import DEFAULT_CREDIT_LIMIT, check_options, check_outputs, read_numbers
from cli.bench_workdir import Workdir, workdir
from clients.errors import ClientError
from clients.loadtest import cpu, machine, spawn
from clients.loadtest.bank_page import PageProbe
from clients.loadtest.bank_page import no_probe as no_page
from clients.loadtest.bank_page import probe_of as page_probe
from clients.loadtest.bench import Bench, BenchResult
from clients.loadtest.channels import GatewayAccess
from clients.loadtest.errors import BenchError, PlanError
from clients.loadtest.plan import Plan, Service, Target
from clients.loadtest.prepare import Parties, Population
from clients.loadtest.progress import ProgressBar
from clients.loadtest.report import run_status, to_text, write_failure
from clients.loadtest.speed import SpeedSampler
from clients.loadtest.spread import WorkerSpread
from clients.transport import ChannelConfig, open_channel
from gateway.ceiling import WorkerStartFailed
from gateway.config import BankConfig, ConfigError, load
from gateway.issuer import open_ledger
from gateway.ledger import Ledger
from hsm.errors import KeyBackendError
from setcore.errors import SetcoreError
from setcore.pan import PAN
from setcore.profiles import PROFILES, profile_named

# Defaults of a run without a traffic shape (``make bench``): the closed loop that finds
# the gateway's maximum, then an open loop at 80 % of it, as the targets are stated.
DEFAULT_CONCURRENCY = 32
DEFAULT_LOAD_FRACTION = 0.8
# Cardholders (card accounts and certificates): enough that per-card locks in the ledger
# do not serialize the load, few enough to register in seconds.
DEFAULT_CARDHOLDERS = 50
# The bench's card range: card numbers are random under this BIN (never printed).
DEFAULT_BIN = "411111"
DEFAULT_EXPIRY = "203012"
# Minor units of the bank's settlement currency a purchase (the cards' credit limit:
# ``cli.bench_options``).
DEFAULT_AMOUNT = 1000
# Worker processes of a bank the bench spawns, unless --workers says otherwise: one, so
# that a plain run measures one worker and a comparison asks for more explicitly.
SPAWN_WORKERS = 1
# Listen addresses that name every interface: fine to bind, not to dial. The bench dials
# a bank's loopback instead, the address the TLS certificate of `setpay init` names.
WILDCARD_HOSTS = frozenset({"0.0.0.0", "::", "[::]", ""})  # noqa: S104  matched, never bound
LOOPBACK = "127.0.0.1"
# The machine entries of the reference loop timed before and after the run.
BEFORE = "reference loop ms (before)"
AFTER = "reference loop ms (after)"
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_NOT_CLEAN = 3
EXIT_STATUS = ("exit status: 0 every step ran clean and nothing is in doubt; 1 the run "
               "failed, or a request was unaccounted for (the bank's page or ledger disagrees); "
               "2 usage error; 3 a step had errors or timeouts or ran out of requests (a sweep "
               "past capacity does), or the report says DOUBT (requests not checked against "
               "the bank, the bench sending late, the machine changing speed, a ceiling "
               "slower than the gateway, a sweep above a failure, a closed loop with under "
               "ten requests per caller, a ledger on tmpfs the bench chose, a server's "
               "processes changing: a worker restarted), reports "
               "written; 141 a clean run without --json whose reader went (| head)")  # fmt: skip


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register the subcommand."""
    p = sub.add_parser("bench", help="load-test the authorization path")
    ops = p.add_subparsers(dest="bench_command", required=True)
    _add_authorize(ops)
    bench_serve.add_parser(ops)
    bench_compare.add_parser(ops)


def _add_authorize(ops: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    a = ops.add_parser(
        "authorize", help="drive AuthReq traffic at a gateway and report", epilog=EXIT_STATUS
    )
    where = a.add_mutually_exclusive_group(required=True)
    where.add_argument("--spawn", action="store_true", help="start a bank of our own")
    where.add_argument("--target", metavar="HOST:PORT", help="a running PaymentGateway")
    a.add_argument(
        "--bank-config",
        type=Path,
        metavar="FILE",
        help="the target bank's setpay.toml (its ledger, TLS files, keys)",
    )
    a.add_argument(
        "--ca-target",
        metavar="HOST:PORT",
        help="the target bank's CertificateAuthority (default: its ca_listen)",
    )
    a.add_argument(
        "--metrics-url",
        help="the target's Prometheus page (server CPU, ledger commits, calls per worker)",
    )
    a.add_argument(
        "--metrics", action="store_true",
        help="--spawn: the bank serves its metrics; the report shows its ledger commits and "
        "calls per worker",
    )  # fmt: skip
    a.add_argument("--profile", choices=sorted(PROFILES), default="ec", help="--spawn only")
    a.add_argument("--keys", metavar="URI", help="--spawn: key backend URI for setpay init")
    a.add_argument(
        "--workers",
        help=f"gateway worker processes (--spawn: {SPAWN_WORKERS}; --target: the bank "
        "configuration's), also those of the ceiling and echo services",
    )
    a.add_argument(
        "--workdir", type=Path,
        help="--spawn: keep the bank in this new (or empty) directory, not removed afterwards",
    )  # fmt: skip
    a.add_argument("--rate", help="open loop at this many AuthReq/s")
    a.add_argument("--rates", help="a sweep: open loop at each of these rates (a,b,c)")
    a.add_argument("--concurrency", help="closed loop with this many callers")
    a.add_argument(
        "--load-fraction",
        help="after the closed loop, open loop at this fraction of its throughput",
    )
    a.add_argument("--duration", default=10.0, help="seconds per run (10)")
    a.add_argument("--channels", default=8, help="gRPC channels (connections)")
    a.add_argument("--timeout", default=5.0, help="per-call deadline, s (5)")
    a.add_argument("--requests", help="AuthReqs prepared for a closed loop")
    a.add_argument("--p99-max", default=50.0, help="p99 bound of a sweep, ms")
    a.add_argument("--no-warmup", action="store_true", help="skip the warm-up")
    a.add_argument("--cardholders", default=DEFAULT_CARDHOLDERS)
    a.add_argument("--bin", default=DEFAULT_BIN, help="the cards' BIN (6 digits)")
    a.add_argument("--amount", default=DEFAULT_AMOUNT, help="minor units per AuthReq")
    a.add_argument(
        "--ceiling",
        action="store_true",
        help="also run the crypto ceiling and the echo service, report ratios",
    )
    a.add_argument("--json", type=Path, metavar="FILE", help="write the JSON report here")
    a.add_argument("--plot", type=Path, metavar="FILE.png", help="latency against rate")
    a.set_defaults(bench_handler=authorize)  # fmt: skip


def _say(message: str) -> None:
    # Its reader gone (``2>&1 | head -1``), a message is lost, never the run (a progress
    # bar alike, ``_progress``).
    stdout_reader.say(f"setpay bench: {message}")


def _progress(label: str, total: int) -> ProgressBar:
    return ProgressBar(label, total, stdout_reader.Stderr())


def plan_from(args: argparse.Namespace) -> Plan:
    """The plan the options describe (the default: closed loop, then 80 % of its max)."""
    rates: tuple[float, ...] = ()
    if args.rate is not None:
        rates += (args.rate,)
    if args.rates:
        rates += args.rates
    concurrency, fraction = args.concurrency, args.load_fraction
    if not rates and concurrency is None:
        concurrency = DEFAULT_CONCURRENCY
        fraction = DEFAULT_LOAD_FRACTION if fraction is None else fraction
    return Plan(
        duration=args.duration, rates=rates, concurrency=concurrency, load_fraction=fraction,
        channels=args.channels, timeout=args.timeout,
        requests=args.requests, p99_max_ms=args.p99_max, warmup=not args.no_warmup,
    )  # fmt: skip


@dataclass
class Bank:
    """The bank under test as the bench sees it."""

    config: BankConfig
    config_path: Path
    gateway: GatewayAccess
    ca_target: str
    gateway_cpu: cpu.ServerCpuProbe
    workers: int
    servers: list[spawn.Server] = field(default_factory=list)
    page: PageProbe = no_page
    process_cpu: cpu.ProcessCpuProbe = cpu.no_process_probe
    spread: WorkerSpread | None = None
    processes: cpu.WatchedCpu | None = None  # its CPU, if watched


def _spawned_bank(args: argparse.Namespace, place: Workdir, stack: ExitStack) -> Bank:
    _say(f"creating a {args.profile} bank in {place.path / 'bank'}")
    config_path = spawn.init_bank(place.path / "bank", args.profile, args.keys, holds=place.holds)
    config = load(config_path)
    workers = SPAWN_WORKERS if args.workers is None else args.workers
    server = spawn.serve_bank(config_path, place.path, workers, metrics=args.metrics,
                              holds=place.holds)  # fmt: skip
    stack.callback(server.stop)
    ca_port = server.ports[1] if len(server.ports) > 1 else 0
    access = GatewayAccess.from_tls_dir(server.target, _tls(config))
    page = no_page
    if server.metrics_port is not None:
        page = page_probe(f"http://{LOOPBACK}:{server.metrics_port}/metrics")
    pid = server.process.pid
    processes = cpu.ServerProcesses([pid])
    return Bank(config, config_path, access, f"{LOOPBACK}:{ca_port}", processes.server_cpu,
                workers, [server], page, processes.child_cpu,
                WorkerSpread(pid, server.port), processes)  # fmt: skip


def _tls(config: BankConfig) -> Path | None:
    """A bank's TLS files (None for an insecure bank)."""
    return None if config.insecure else config.base_dir / "tls"


def _target_bank(args: argparse.Namespace) -> Bank:
    if args.bank_config is None:
        raise PlanError("--target needs --bank-config: the bench opens its cardholders' card "
                         "accounts in that bank's ledger")  # fmt: skip
    config = load(args.bank_config)
    access = GatewayAccess.from_tls_dir(args.target, _tls(config))
    page_cpu = cpu.PageCpu(args.metrics_url) if args.metrics_url else None
    probe = page_cpu.server_cpu if page_cpu is not None else cpu.no_probe
    page = page_probe(args.metrics_url) if args.metrics_url else no_page
    ca_target = args.ca_target or dialable(config.ca_listen)
    workers = config.workers if args.workers is None else args.workers
    return Bank(config, args.bank_config, access, ca_target, probe, workers, page=page,
                processes=page_cpu)  # fmt: skip


def dialable(listen: str) -> str:
    """``listen`` as an address to dial: a wildcard host (every interface) becomes the
    loopback, where a bank on this host answers and which its TLS certificate names."""
    host, _, port = listen.rpartition(":")
    return f"{LOOPBACK}:{port}" if host in WILDCARD_HOSTS else listen


def _references(
    bank: Bank, place: Workdir, stack: ExitStack, watched: dict[Service, cpu.WatchedCpu]
) -> list[Target]:
    targets = []
    for mode, service in (("ceiling", Service.CEILING), ("echo", Service.ECHO)):
        server = spawn.serve_reference(mode, bank.config_path, place.path, bank.workers,
                                       threads=bank.config.threads, holds=place.holds)  # fmt: skip
        stack.callback(server.stop)
        pid = server.process.pid
        processes = watched[service] = cpu.ServerProcesses([pid])
        targets.append(
            Target(service, bank.gateway.at(server.target), processes.server_cpu,
                   workers=bank.workers, process_cpu=processes.child_cpu,
                   spread=WorkerSpread(pid, server.port))
        )  # fmt: skip
    return targets


def changed_processes(result: BenchResult, watched: dict[Service, cpu.WatchedCpu]) -> list[str]:
    """A DOUBT for each server the bench started whose processes changed while it read
    their CPU (``cpu.ServerProcesses``), and for a --target bank whose CPU counter went
    back or changed (``cpu.PageCpu``), naming the runs whose server CPU is unknown."""
    found = []
    for service, processes in watched.items():
        if not processes.changes:
            continue
        runs = [("warm-up", result.warmup.get(service))]
        runs += [(step.shape.label, step.tallies.get(service)) for step in result.steps]
        unknown = [run for run, t in runs if t is not None and t.server_cpu_seconds is None]
        where = f"its server CPU is unknown (-) in {', '.join(unknown)}" if unknown else (
            "between runs, its server CPU known"
        )  # fmt: skip
        how = (
            "its CPU counter went back or changed, as a restarted bank's does"
            if isinstance(processes, cpu.PageCpu)
            else "one ended or started, as a restarted worker does"
        )
        found.append(
            f"the {service}'s processes changed while the bench read their CPU ({how}):"
            f" {where}; the runs around the change measured a server that was not steady;"
            " repeat the run"
        )
    return found


def _channel(bank: Bank, target: str, *, mutual: bool) -> grpc.Channel:
    tls = _tls(bank.config)
    if tls is None:
        return open_channel(ChannelConfig(target, insecure=True), "bench")
    return open_channel(
        ChannelConfig(
            target, ca_pem=(tls / "root.pem").read_bytes(),
            client_cert_pem=(tls / "merchant-client.pem").read_bytes() if mutual else None,
            client_key_pem=(tls / "merchant-client.key").read_bytes() if mutual else None,
        ),
        "gateway" if mutual else "CA",
    )  # fmt: skip


def _register(bank: Bank, population: Population, ledger: Ledger) -> Parties:
    root = (bank.config.path(bank.config.certs_dir) / "brand-root.der").read_bytes()
    ca_channel = _channel(bank, bank.ca_target, mutual=False)
    gateway_channel = _channel(bank, bank.gateway.target, mutual=True)

    def open_account(pan: PAN, expiry: str, limit: int, currency: int) -> None:
        ledger.open_card_account(pan.reveal(), expiry, limit, currency)

    parties = Parties(population, root, ca_channel, gateway_channel, open_account)
    bar = _progress("registering merchant and cardholders", population.cardholders + 1)
    try:
        parties.register(bar)
    finally:
        bar.close()
        ca_channel.close()
        gateway_channel.close()
    return parties


def authorize(args: argparse.Namespace) -> int:
    """Prepare, drive, report."""
    read_numbers(args)  # argparse left them as typed (``cli.bench_options`` says why)
    plan = plan_from(args)
    check_options(args)
    check_outputs(args, plan)
    # SIGTERM and SIGHUP end the run like Ctrl-C: what it started is stopped on the way out.
    bench_stop.exit_on_stop_signals()
    try:
        result = _measure(args, plan)
    except PlanError:  # a usage error (exit 2): no report, as for the options above
        raise
    except BaseException as exc:
        # An earlier run's reports must not pass for this one's. Unwritable, they leave the
        # failure's own message to be said.
        with suppress(OSError):
            write_failure(bench_stop.failure(exc), args.json, args.plot)
        raise
    return _report(args, result)


def _measure(args: argparse.Namespace, plan: Plan) -> BenchResult:
    """The bank set up, its parties registered, the plan run against it."""
    with ExitStack() as stack:
        # Where the servers it starts keep their files (``cli.bench_workdir``): removed
        # afterwards, however the bench ends, unless the user's --workdir.
        place = stack.enter_context(workdir(args.workdir))
        bank = _spawned_bank(args, place, stack) if args.spawn else _target_bank(args)
        ledger = open_ledger(bank.config)
        stack.callback(ledger.close)
        population = Population(
            profile=profile_named(bank.config.profile), brand_id=bank.config.brand_id,
            bin=args.bin, cardholders=args.cardholders, expiry=DEFAULT_EXPIRY,
            credit_limit=DEFAULT_CREDIT_LIMIT, currency=bank.config.settlement_currency,
            amount=args.amount,
        )  # fmt: skip
        # The run's merchant is its own: its holds are the bench's alone (``holds``).
        probe = ledger_probe(ledger, population.merchant_id)
        targets = [
            Target(Service.GATEWAY, bank.gateway, bank.gateway_cpu, page=bank.page,
                   workers=bank.workers, process_cpu=bank.process_cpu, spread=bank.spread,
                   ledger=probe)
        ]  # fmt: skip
        # Servers whose processes the bench watches, a target's CPU page (``changed_processes``).
        watched: dict[Service, cpu.WatchedCpu] = {}
        if bank.processes is not None:
            watched[Service.GATEWAY] = bank.processes
        if args.ceiling:
            targets += _references(bank, place, stack, watched)
        parties = _register(bank, population, ledger)
        stack.callback(parties.close)
        described = {**machine.describe(), BEFORE: round(machine.reference_loop_ms(), 1)}
        setting: dict[str, object] = {
            "profile": bank.config.profile, "keys": spawn.keys_kind(bank.config.keys_uri()),
            "workers": bank.workers, "threads per worker": bank.config.threads,
            "channels": plan.channels, "cardholders": population.cardholders,
            "bank": "spawned" if args.spawn else "target",
            "ledger filesystem": ledger_filesystem(bank.config), "machine": described,
        }  # fmt: skip
        # A target's ledger is where its bank keeps it: the user's choice, shown, not doubted.
        chosen = args.target is not None or args.workdir is not None
        # The machine's speed during each run: readings from a process of their own.
        sampler = stack.enter_context(SpeedSampler())
        result = Bench(parties, targets, plan, say=_say, progress=_progress,
                       speed=sampler.between).run(setting)  # fmt: skip
        result.doubts += memory_ledger_doubt(str(setting["ledger filesystem"]), chosen)
        result.doubts += changed_processes(result, watched)
        described[AFTER] = round(machine.reference_loop_ms(), 1)
    return result


def _report(args: argparse.Namespace, result: BenchResult) -> int:
    # The files first: a gone reader (``| head``) must not lose them. The run's status
    # stands whenever a script has it without the text (a run that failed or is in doubt,
    # --json written, a file that failed): only a clean run's lost text ends with 141.
    status = run_status(result, failed=EXIT_FAILED, not_clean=EXIT_NOT_CLEAN)
    stands = True
    try:
        bench_files.write_reports(result, args.json, args.plot)
        stands = status != 0 or args.json is not None
    finally:
        try:
            stdout_reader.write_text(to_text(result))
        except BrokenPipeError as broken:
            if not stands:
                raise  # cli.main: 141
            stdout_reader.gone(broken)  # to the null device, as cli.main does: its flush passes
    return status


_FAILURES: tuple[type[Exception], ...] = (
    BenchError,
    ClientError,
    SetcoreError,
    ConfigError,
    KeyBackendError,
    OSError,
    ValueError,
    WorkerStartFailed,
)


def run(args: argparse.Namespace) -> int:
    """Dispatch the bench subcommand."""
    handler: Callable[[argparse.Namespace], int] = args.bench_handler
    try:
        return handler(args)
    except BrokenPipeError:
        raise  # standard output's reader went away (``| head``): cli.main ends quietly
    except PlanError as exc:  # the options ask for something that cannot run: usage
        _say(str(exc))
        return EXIT_USAGE
    except _FAILURES as exc:
        _say(str(exc) or type(exc).__name__)
        return EXIT_FAILED
