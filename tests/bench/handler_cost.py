"""Benchmark: CPU per authorization of the handlers alone, in one process, without gRPC.

    .venv/bin/python tests/bench/handler_cost.py [--profile ec] [--requests 600] [--runs 3]
                                                 [--threads 8]

Starts a bank in this process (``setpay init`` in a temporary directory, then the bank's
own ``start_bank``), registers a merchant and 20 cardholders over gRPC, and prepares
signed AuthReqs the way ``setpay bench`` does. Then it calls five handlers directly,
each on its own fresh requests:

gateway  ``gateway.authorize.authorize`` with the bank's SQLite ledger (group commit on)
stub     the same function with a ledger that approves without storing anything
sleep    the stub, sleeping ``SLEEP_SECONDS`` before it answers (a wait, as for a commit)
handoff  the stub, answering on another thread while the caller waits (as the writer does)
ceiling  ``CeilingServicer.Authorize``: the authorization's cryptography and nothing else

each on one thread, and on ``--threads`` threads with and without the process's CPU turn
(the gRPC server takes the turn around every handler). It prints the median over
``--runs`` of the process CPU time per authorization (all threads, including the
ledger's writer), the system's part of it (``os.times`` counts 10 ms ticks, so a run of
600 requests resolves about 17 us), and the part of the thread that worked for the
callers (the ledger's writer, the hand-off stub's thread). The gap between one thread
and many is the cost of threads sharing one interpreter; the gap between gateway and stub
is the ledger's, and sleep and handoff show how much of it any wait or hand-off costs.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import queue
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, cast

import grpc

from clients.loadtest import spawn
from clients.loadtest.prepare import Parties, Population, build_authorizations
from clients.transport import ChannelConfig, open_channel
from gateway.authorize import authorize
from gateway.ceiling import CeilingServicer
from gateway.config import BankConfig, load
from gateway.cpu_turn import PROCESS_TURN
from gateway.ledger import Authorized, Ledger, PrebuiltApproval, Responder
from gateway.process import RunningBank, start_bank
from setcore.pan import PAN
from setcore.profiles import profile_named
from setpay.v1 import authorization_pb2

CARDHOLDERS = 20
WARMUP = 50
# The threads that do a caller's work for it (gateway.ledger.group_commit names its own).
HELPER_THREADS = frozenset({"ledger-writer", "handoff"})
# About one durable commit on the development machine's disk, plus its wake-up.
SLEEP_SECONDS = 0.0003


class ApprovingLedger:
    """A ledger that approves every authorization and keeps nothing (the stub).

    It answers as the ledger does: with the approval the gateway built beforehand when
    that answers the outcome, else with ``respond`` (which builds and signs another)."""

    def authorize(self, *, respond: Responder, hold_id: str, amount: int, currency: int,
                  prebuilt: PrebuiltApproval | None, **_: object) -> bytes:  # fmt: skip
        outcome = Authorized(hold_id, "", amount, currency, 0, None)
        if prebuilt is not None and prebuilt.answers(outcome):
            return prebuilt.response
        return respond(outcome)


class SleepingLedger(ApprovingLedger):
    """The stub, after a sleep: what any wait for the ledger costs the waiting thread."""

    def authorize(self, **kwargs: Any) -> bytes:
        time.sleep(SLEEP_SECONDS)
        return super().authorize(**kwargs)


class HandingOffLedger(ApprovingLedger):
    """The stub, run on another thread while the caller waits, as the writer runs it."""

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        threading.Thread(target=self._serve, name="handoff", daemon=True).start()

    def _serve(self) -> None:
        while True:
            self._jobs.get()()

    def authorize(self, **kwargs: Any) -> bytes:
        done = threading.Event()
        answer: list[bytes] = []

        def job() -> None:
            answer.append(ApprovingLedger.authorize(self, **kwargs))
            done.set()

        self._jobs.put(job)
        done.wait()
        return answer[0]


class _Context:
    def abort(self, code: object, details: str) -> None:
        raise RuntimeError(f"ceiling refused a request: {code} {details}")


def _helper_cpu() -> float:
    """CPU seconds used so far by the threads that work for the callers (the ledger's
    writer, the hand-off stub's thread)."""
    return sum(
        time.clock_gettime(time.pthread_getcpuclockid(thread.ident))
        for thread in threading.enumerate()
        if thread.name in HELPER_THREADS and thread.ident is not None
    )


def _cpu_per_call(
    handler: Callable[[Any], object], requests: list[Any], threads: int, turn: bool
) -> tuple[float, float, float]:
    """Process CPU time per call, its system part, and the helper threads' part (us)."""

    def call(request: Any) -> object:
        if turn:
            with PROCESS_TURN.held():
                return handler(request)
        return handler(request)

    before, helpers = os.times(), _helper_cpu()
    if threads == 1:
        for request in requests:
            call(request)
    else:
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(call, requests))
    after, helpers = os.times(), _helper_cpu() - helpers
    user, system = after.user - before.user, after.system - before.system
    per_call = 1e6 / len(requests)
    return (user + system) * per_call, system * per_call, helpers * per_call


def _register(bank: RunningBank, config: BankConfig, profile: str) -> tuple[Parties, Population]:
    tls = config.base_dir / "tls"

    def channel(port: int, mutual: bool) -> grpc.Channel:
        return open_channel(ChannelConfig(
            f"127.0.0.1:{port}", ca_pem=(tls / "root.pem").read_bytes(),
            client_cert_pem=(tls / "merchant-client.pem").read_bytes() if mutual else None,
            client_key_pem=(tls / "merchant-client.key").read_bytes() if mutual else None,
        ), "bench")  # fmt: skip

    def open_account(pan: PAN, expiry: str, limit: int, currency: int) -> None:
        bank.ledger.open_card_account(pan.reveal(), expiry, limit, currency)

    population = Population(
        profile=profile_named(profile), brand_id=config.brand_id, bin="411111",
        cardholders=CARDHOLDERS, expiry="203012", credit_limit=10**12, currency=978, amount=1000,
    )  # fmt: skip
    root = (config.path(config.certs_dir) / "brand-root.der").read_bytes()
    parties = Parties(population, root, channel(bank.ca_port, False), channel(bank.port, True),
                      open_account)  # fmt: skip
    parties.register()
    return parties, population


def _handlers(bank: RunningBank) -> dict[str, Callable[[Any], object]]:
    stub_bank = dataclasses.replace(bank.bank, ledger=cast(Ledger, ApprovingLedger()))
    ceiling = CeilingServicer(bank.bank.credentials, bank.bank.trust, bank.bank.token_key)
    context = cast(grpc.ServicerContext, _Context())
    sleep_bank = dataclasses.replace(bank.bank, ledger=cast(Ledger, SleepingLedger()))
    handoff_bank = dataclasses.replace(bank.bank, ledger=cast(Ledger, HandingOffLedger()))
    return {
        "gateway": lambda request: authorize(bank.bank, request),
        "stub": lambda request: authorize(stub_bank, request),
        "sleep": lambda request: authorize(sleep_bank, request),
        "handoff": lambda request: authorize(handoff_bank, request),
        "ceiling": lambda request: ceiling.Authorize(request, context),
    }


def _measure(bank: RunningBank, config: BankConfig, args: argparse.Namespace) -> None:
    parties, population = _register(bank, config, args.profile)
    assert parties.merchant is not None
    handlers = _handlers(bank)
    settings = [(1, True), (args.threads, True), (args.threads, False)]
    count = WARMUP + len(handlers) * len(settings) * args.runs * args.requests
    print(f"preparing {count} AuthReqs ...", file=sys.stderr)
    prepared = iter(
        authorization_pb2.AuthorizeRequest.FromString(p.request)
        for p in build_authorizations(parties.merchant, parties.cardholders, population, count)
    )
    for handler in handlers.values():
        for _ in range(WARMUP // len(handlers)):
            handler(next(prepared))
    print(f"{args.profile}: process CPU per authorization in us, median of {args.runs} runs "
          f"of {args.requests} (the runs; the median run's system and helper-thread parts)"
    )  # fmt: skip
    for threads, turn in settings:
        print(f"  {threads} thread{'s' if threads > 1 else ''}" + ("" if turn else ", no turn"))
        samples: dict[str, list[tuple[float, float, float]]] = {name: [] for name in handlers}
        for _ in range(args.runs):
            for name, handler in handlers.items():  # interleaved, so drift hits them all
                requests = [next(prepared) for _ in range(args.requests)]
                samples[name].append(_cpu_per_call(handler, requests, threads, turn))
        for name, runs in samples.items():
            total, system, helper = sorted(runs)[len(runs) // 2]
            shown = ", ".join(f"{cpu:.0f}" for cpu, _, _ in runs)
            helped = f", helper thread {helper:.0f}" if helper else ""
            print(f"    {name:<8} {total:6.0f}  ({shown}; system {system:.0f}{helped})")
    parties.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="ec", choices=("ec", "rsa"))
    parser.add_argument("--requests", type=int, default=600, help="per handler, setting, run")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=8)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="handler-cost-") as work:
        config = load(spawn.init_bank(Path(work) / "bank", args.profile, None))
        bank = start_bank(config, listen="127.0.0.1:0", ca_listen="127.0.0.1:0")
        try:
            _measure(bank, config, args)
        finally:
            bank.stop(1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
