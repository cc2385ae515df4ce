"""One worker process of ``setpay gateway serve --workers N`` (DESIGN.md 5.4): what the
supervisor (``gateway.workers``) tells it, and its life after the fork.

A worker restores its signal mask once its own handlers are in place, turns on its share
of the multiprocess metrics, applies the scheduling settings before any thread starts,
opens the bank with SO_REUSEPORT on the reserved ports, and writes "GATEWAY_PORT CA_PORT"
to its ready pipe once it serves. It serves until SIGTERM or SIGINT, or until its
supervisor is gone, then stops within the grace period and returns exit status 0, or
CALLS_CUT if calls were still in flight when the grace period ended (gRPC cancelled them):
it logs how many at WARNING, so a stop that cut calls never reads as a clean one. A stop
signal while it drains is answered "already stopping" in the log (``RepeatNotice``). A
failure once it has served (draining, closing its key sessions or the ledger) is raised
as ``StopFailed``, so that its supervisor does not report a worker that served as one
that could not.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from dataclasses import dataclass

from gateway import metrics, scheduling
from gateway.config import BankConfig
from gateway.cpu_turn import PROCESS_TURN
from gateway.demand import DemandBoard, demand_path
from gateway.process import start_bank
from gateway.stop_signals import RepeatNotice, StopSignals

log = logging.getLogger("setpay.workers")

# How often a worker checks that its supervisor is still there.
PARENT_CHECK_SECONDS = 1.0
# The exit status of a worker that stopped but cut calls at the end of the grace period
# (the supervisor exits with it too): 1 is a failure and 2 a usage error, so 3.
CALLS_CUT = 3


class StopFailed(Exception):
    """A worker that served failed while stopping; ``fault`` is what failed."""

    def __init__(self, fault: Exception) -> None:
        super().__init__(f"failed while stopping: {type(fault).__name__}: {fault}")
        self.fault = fault


@dataclass(frozen=True)
class WorkerPlan:
    """What every worker is told: the configuration and the reserved addresses."""

    config: BankConfig
    listen: str
    ca_listen: str
    metrics: bool
    supervisor_pid: int
    ledger_socket: str | None = None
    """The ledger process's socket, when one commits for every worker."""
    judge_presented: bool = True
    """Judge the certificates the bank presents (``gateway.bank_presented``): False for a
    worker forked once the bank has served, which only replaces one that died."""


def run_worker(plan: WorkerPlan, index: int, ready_fd: int, mask: set[int]) -> int:
    """A worker's life after fork: serve until told to stop (or orphaned); the exit status.

    ``mask`` is the signal mask to restore once the worker's own handlers are in place.
    """
    stopping = StopSignals((signal.SIGTERM, signal.SIGINT))
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, mask)
    if plan.metrics:
        metrics.enable(index)
    if plan.ledger_socket is not None:
        board = DemandBoard(demand_path(plan.ledger_socket))
        PROCESS_TURN.publish(board.publisher(index))
    scheduling.apply(plan.config.scheduling)  # before start_bank starts any thread
    running = start_bank(
        plan.config,
        listen=plan.listen,
        ca_listen=plan.ca_listen,
        reuse_port=True,
        announce_stop=True,
        supervised=True,  # the supervisor judged the TLS certificate before forking
        judge_presented=plan.judge_presented,
        ledger_service=plan.ledger_socket,
        # One sweeper per bank is enough and worker 0 exists in every mode (a replaced
        # worker 0 starts its own); more would be harmless, each hold released once.
        sweep_holds=index == 0,
    )
    os.write(ready_fd, f"{running.port} {running.ca_port}\n".encode())
    os.close(ready_fd)
    while not stopping.wait(PARENT_CHECK_SECONDS):
        if os.getppid() != plan.supervisor_pid:
            log.error("worker %d: the supervisor is gone; stopping", index)
            break
    else:
        log.info(
            "worker %d: stop signal received; NOT_SERVING for %s s, then draining (up to %s s)",
            index,
            plan.config.not_serving_seconds,
            plan.config.grace_seconds,
        )
    # A stop signal while draining changes nothing, but is answered: silence would read as
    # a worker that hangs.
    grace_ends = time.monotonic() + plan.config.not_serving_seconds + plan.config.grace_seconds
    drained = threading.Event()
    said = f"worker {index}: already stopping, its grace period ends"
    stopping.answer_repeats(RepeatNotice(log, said, lambda: grace_ends).repeated, drained)
    try:
        cut = running.drain(plan.config.grace_seconds)
        if cut:
            # Said now, not once closed: the ledger first commits what the cut calls
            # queued, and a worker the supervisor kills for taking too long would never
            # say it.
            log.warning(
                "worker %d: %d call%s still in flight when the grace period (%s s) ended: cut",
                index, cut, "" if cut == 1 else "s", plan.config.grace_seconds,
            )  # fmt: skip
        running.close()
    except Exception as exc:
        raise StopFailed(exc) from exc
    finally:
        drained.set()
    return CALLS_CUT if cut else 0
