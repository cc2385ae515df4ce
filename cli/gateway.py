"""``setpay gateway serve``: run the bank (PaymentGateway and CertificateAuthority).

The bank runs as worker processes under a supervisor (``gateway.workers``); settings
come from the configuration file, then ``SETPAY_*`` variables, then these flags, and are
judged once all are in: a flag replaces a variable's value unread. A value a flag gave
that the configuration's rules refuse is a usage error (exit 2) naming the flag; the
file's and the environment's are refused with exit 1, as is a TLS server certificate that
has ended (before any worker starts: ``gateway.workers``).

``--port-file`` gets "GATEWAY_PORT CA_PORT" once every worker serves, for scripts and
tests that asked for port 0; with metrics on a port the OS picked (``--metrics-port
any``) a third number follows, the metrics port. A file with a fixed metrics port or
none keeps its two numbers, so readers written for two go on working.

``--lifeline-fd FD`` names an inherited pipe's read end: once every copy of its write end
is closed, the process that started the bank gone however it went, the bank stops as on
SIGTERM (``gateway.supervisor_signals``). ``setpay bench --spawn`` starts its bank so; a
descriptor that is not an open pipe's read end (a write end, a socket, a file) is a usage
error (exit 2).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from cli import stdout_reader
from cli.number_options import shown
from gateway import workers
from gateway.config import CONFIG_FILE, BankConfig, ConfigError, load
from gateway.environment import METRICS_ANY_PORT, MetricsPort, parse_metrics_port, parse_whole
from gateway.ports import write_port_file
from gateway.process import warn_pin_file_in_bank
from gateway.stop_signals import open_lifeline
from gateway.worker import CALLS_CUT


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register the subcommand."""
    p = sub.add_parser("gateway", help="run the bank's gRPC services")
    ops = p.add_subparsers(dest="gateway_command", required=True)
    s = ops.add_parser("serve", help="serve PaymentGateway and CertificateAuthority")
    s.add_argument("--config", type=Path, default=Path(CONFIG_FILE), help="bank setpay.toml")
    s.add_argument("--listen", help="PaymentGateway HOST:PORT (overrides the configuration)")
    s.add_argument("--ca-listen", help="CertificateAuthority HOST:PORT (overrides it too)")
    s.add_argument("--no-reflection", action="store_true", help="turn server reflection off")
    s.add_argument(
        "--workers",
        type=_whole,
        help="worker processes (default: configuration, else one per CPU)",
    )
    s.add_argument(
        "--metrics-port",
        type=_metrics_port,
        help=f"serve Prometheus metrics on this port (0: off; {METRICS_ANY_PORT}: one the OS "
        "picks)",
    )
    s.add_argument(
        "--port-file",
        type=Path,
        help="write the bound ports (gateway, CA, and metrics if the OS picked it) here once "
        "serving",
    )
    s.add_argument(
        "--lifeline-fd",
        type=_whole,
        metavar="FD",
        help="stop as on SIGTERM once this inherited pipe's write end is closed everywhere "
        "(the process that started the bank is gone)",
    )


def _whole(text: str) -> int:
    try:
        return parse_whole(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be a number in digits 0-9, not {shown(text)}"
        ) from None


def _metrics_port(text: str) -> MetricsPort:
    try:
        return parse_metrics_port(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be a port number or {METRICS_ANY_PORT}, not {shown(text)}"
        ) from None


def _announce(args: argparse.Namespace, config: BankConfig, bound: workers.Bound) -> None:
    if args.port_file is not None:
        ports = [bound.port, bound.ca_port]
        # Only when the OS picked it: a reader of two numbers never meets a third.
        if config.metrics_port == METRICS_ANY_PORT and bound.metrics_port is not None:
            ports.append(bound.metrics_port)
        write_port_file(args.port_file, *ports)
    metrics = f", metrics on port {bound.metrics_port}" if bound.metrics_port is not None else ""
    print(f"setpay gateway: PaymentGateway on port {bound.port}, "
          f"CertificateAuthority on port {bound.ca_port}, "
          f"{bound.workers} worker{'' if bound.workers == 1 else 's'}{metrics}",
          flush=True)  # fmt: skip


def check_port_file(path: Path) -> str | None:
    """Why the port file could not be written once the workers serve; None if it can.

    Checked before any worker starts: failing to announce the ports would stop them again.
    """
    directory = path.parent
    if not directory.is_dir():
        return f"--port-file {path}: no directory {directory}"
    if path.is_dir():
        return f"--port-file {path} is a directory"
    if not os.access(directory, os.W_OK | os.X_OK):
        return f"--port-file {path}: cannot write in {directory}"
    return None


def flag_overrides(args: argparse.Namespace) -> dict[str, tuple[str, Any]]:
    """The settings the command line gives: ``BankConfig`` field -> (flag, value)."""
    given: dict[str, tuple[str, Any]] = {}
    if args.no_reflection:
        given["reflection"] = ("--no-reflection", False)
    for setting, flag in (
        ("listen", "--listen"),
        ("ca_listen", "--ca-listen"),
        ("workers", "--workers"),
        ("metrics_port", "--metrics-port"),
    ):
        value = getattr(args, setting)
        if value is not None:
            given[setting] = (flag, value)
    return given


def serve(args: argparse.Namespace, config: BankConfig) -> int:
    """Serve until SIGTERM or SIGINT; then drain within the grace period; the exit status
    (``gateway.workers``), said in one line once every process of the bank has gone."""
    warn_pin_file_in_bank(config)  # once for the bank, as the TLS certificate is judged
    announced: list[workers.Bound] = []

    def ready(bound: workers.Bound) -> None:
        _announce(args, config, bound)
        announced.append(bound)

    code = workers.serve(config, on_ready=ready, lifeline=args.lifeline_fd)
    if announced:
        _say_stopped(code)
    return code


def _say_stopped(code: int) -> None:
    """Say on standard output that the bank which said it serves has stopped, and how.

    Printed as the serving line is, not logged: the stop is no warning, and at the
    default level (WARNING) the log says nothing of a stop that went well, so an
    operator's Ctrl-C went unanswered. What failed or was cut was logged above. Only
    after the serving line: a bank that never served said nothing on standard output
    before, and a reader taking its first line for the ports reads no other. A reader
    gone by then changes nothing of the status: a service manager restarting a bank
    whose stop went well, for a 141, would be worse than the line lost."""
    try:
        print(f"setpay gateway: stopped{_STOPPED.get(code, f' (exit {code})')}", flush=True)
    except BrokenPipeError as broken:
        stdout_reader.gone(broken)


# How the bank stopped, by exit status (``gateway.workers``), after "stopped".
_STOPPED = {
    0: "",
    1: " (exit 1: a process failed, said above)",
    CALLS_CUT: " (exit 3: calls still in flight at the end of the grace period were cut)",
}


def run(args: argparse.Namespace) -> int:
    """Dispatch the gateway subcommand."""
    if args.port_file is not None and (problem := check_port_file(args.port_file)):
        print(f"setpay gateway: {problem}", file=sys.stderr)
        return 1
    if args.lifeline_fd is not None:
        try:
            open_lifeline(args.lifeline_fd)
        except ValueError as exc:
            print(f"setpay gateway: --lifeline-fd: {exc}", file=sys.stderr)
            return 2  # a usage error, as argparse's own refusals are
    flags = flag_overrides(args)
    try:
        config = load(args.config, overrides=flags)
    except ConfigError as exc:
        print(f"setpay gateway: {exc}", file=sys.stderr)
        # A value on the command line is a usage error, as argparse's own refusals are
        # (exit 2); a bad configuration is refused as every command refuses one (exit 1).
        return 2 if exc.setting in flags else 1
    try:
        return serve(args, config)
    except workers.WorkerError as exc:  # an ended TLS certificate, a port it cannot have
        print(f"setpay gateway: {exc}", file=sys.stderr)
        return 1
