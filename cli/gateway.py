"""``setpay gateway serve``: run the bank (PaymentGateway and CertificateAuthority)."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from dataclasses import replace
from pathlib import Path

from gateway.config import CONFIG_FILE, ConfigError, load
from gateway.process import start_bank

log = logging.getLogger("setpay.gateway")


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
        "--port-file", type=Path, help="write the bound ports (gateway, CA) here once serving"
    )


def serve(args: argparse.Namespace) -> int:
    """Serve until SIGTERM or SIGINT; then drain within the grace period and exit 0."""
    config = load(args.config)
    if args.no_reflection:
        config = replace(config, reflection=False)
    running = start_bank(config, listen=args.listen, ca_listen=args.ca_listen)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    if args.port_file is not None:
        args.port_file.write_text(f"{running.port} {running.ca_port}\n")
    print(f"setpay gateway: PaymentGateway on port {running.port}, "
          f"CertificateAuthority on port {running.ca_port}", flush=True)  # fmt: skip
    stop.wait()
    log.info("stopping: draining in-flight calls for up to %.1f s", config.grace_seconds)
    running.stop(config.grace_seconds)
    return 0


def run(args: argparse.Namespace) -> int:
    """Dispatch the gateway subcommand."""
    try:
        return serve(args)
    except ConfigError as exc:
        print(f"setpay gateway: {exc}", file=sys.stderr)
        return 2
