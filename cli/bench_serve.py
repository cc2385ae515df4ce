"""``setpay bench serve``: the crypto ceiling or the echo service, with a bank's keys and
limits (``gateway.ceiling``), until SIGTERM or SIGINT (heard by ``cli.stop_watcher``).
``setpay bench authorize --ceiling`` starts both itself; this command serves one by hand.

``--lifeline-fd FD``, as ``setpay gateway serve`` takes it: the end of that inherited pipe,
the process that started this one gone however it went (``setpay bench`` killed with
SIGKILL), stops the service as SIGTERM does (``cli.stop_watcher``).

Its errors are ``cli.bench``'s (a configuration that does not load, a worker that does
not start: exit 1). Options that make no service (``gateway.ceiling.ReferenceOptions``: a
listen address that is not HOST:PORT, a delay for the ceiling) and a lifeline that is no
open pipe's read end are usage errors, exit 2 like argparse's, refused before the
configuration is read.
"""

from __future__ import annotations

import argparse
import os
import signal
import threading
from pathlib import Path

from cli.number_options import decimal, whole
from cli.stop_watcher import StopWatcher
from clients.loadtest.errors import PlanError
from gateway.ceiling import MAX_DELAY_MS, MODES, ReferenceOptions, serve
from gateway.config import MAX_THREADS, MAX_WORKERS, load
from gateway.stop_signals import MAX_FD, open_lifeline


def add_parser(ops: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register ``serve`` among the bench's subcommands."""
    s = ops.add_parser("serve", help="serve the crypto ceiling or the echo service")
    s.add_argument("--mode", choices=MODES, required=True)
    s.add_argument("--config", type=Path, required=True, help="the bank's setpay.toml")
    s.add_argument("--listen", default="127.0.0.1:0", help="HOST:PORT (port 0: any)")
    s.add_argument("--port-file", type=Path, help="write the bound port here once serving")
    s.add_argument(
        "--workers", type=whole(1, MAX_WORKERS), default=1, help="processes sharing the port"
    )
    s.add_argument(
        "--threads", type=whole(1, MAX_THREADS), help="server threads per worker (the bank's)"
    )
    s.add_argument(
        "--delay-ms", type=decimal(0, MAX_DELAY_MS, unit="ms"), default=0.0,
        help="echo: hold each call",
    )  # fmt: skip
    s.add_argument(
        "--lifeline-fd", type=whole(0, MAX_FD), metavar="FD",
        help="stop as on SIGTERM once this inherited pipe's write end is closed everywhere",
    )  # fmt: skip
    s.set_defaults(bench_handler=serve_reference)


def serve_reference(args: argparse.Namespace) -> int:
    """Serve the ceiling or echo until SIGTERM or SIGINT."""
    try:
        options = ReferenceOptions(
            mode=args.mode, listen=args.listen, workers=args.workers, threads=args.threads,
            delay_ms=args.delay_ms, port_file=args.port_file,
        )  # fmt: skip
    except ValueError as exc:
        raise PlanError(str(exc)) from exc  # usage: exit 2 (``cli.bench.run``)
    lifeline = args.lifeline_fd
    if lifeline is not None:
        try:
            open_lifeline(lifeline)
        except ValueError as exc:
            raise PlanError(f"--lifeline-fd: {exc}") from exc
    try:
        config = load(args.config)
        stop = threading.Event()
        # Set on a thread of its own (``cli.stop_watcher``), never by a handler: ``serve``
        # waits on it in this thread, which a handler could interrupt inside that wait
        # holding its lock, to wait for itself forever. A stop signal while it drains
        # changes nothing.
        with StopWatcher((signal.SIGTERM, signal.SIGINT), stop.set, lifeline=lifeline):
            serve(config, options, stop)
    finally:
        if lifeline is not None:
            os.close(lifeline)  # only once the watcher is closed: its thread waits on it
    return 0
