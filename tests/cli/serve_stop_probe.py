"""``setpay merchant serve`` stopped, in a process of its own, on a merchant that only plays
its part: ``cli.merchant._serve`` runs with ``Merchant`` replaced by ``PlayedMerchant``.

Run as ``python -m tests.cli.serve_stop_probe starting|serving|draining``:

- ``starting``: the merchant's ``serve`` (its start-up round, run in the main thread) holds
  its stop Event's condition lock, as that Event's ``wait`` does between its steps, and
  runs the installed SIGTERM handler itself, in that thread, as the interpreter would on a
  signal: a handler that set that Event waits for itself forever, and faulthandler ends the
  process after HANDLER_SECONDS with every thread's traceback. The handler returned, it
  sends itself a real SIGTERM, which must end the start-up: "stopped before serving".
- ``serving``: ``serve`` returns a port at once, and the test signals the process.
- ``draining``: as ``serving``, but the merchant's ``close`` (the drain) says "draining" and
  lasts until the test writes a line to the probe's stdin: the test signals again meanwhile.
  The probe logs at INFO to stderr, where ``_serve`` answers that signal.

Before ``_serve`` the probe sets a SIGTERM and a SIGINT handler (but in ``draining``, which
keeps the interpreter's, as ``setpay`` has them) and a wakeup fd of its own; after it, it
prints one JSON line: ``_serve``'s status, whether those are back, whether the merchant was
asked to stop and was closed.
"""

from __future__ import annotations

import argparse
import faulthandler
import json
import logging
import os
import signal
import sys
import threading
from types import FrameType, SimpleNamespace
from typing import cast

import cli.merchant as merchant_cli
from clients.merchant.config import MerchantConfig

# How long the handler, run directly, may take: it should return at once; a loaded machine
# gets seconds. Past it, the process ends, so that the test fails rather than hangs.
HANDLER_SECONDS = 10.0
# How long the played start-up waits for the real SIGTERM to reach its stop.
STOP_SECONDS = 30.0
# The port ``serve`` says it serves on (nothing listens: the played merchant serves nothing).
PORT = 1


class PlayedMerchant:
    """What ``_serve`` uses of ``clients.merchant.runtime.Merchant``, and nothing more."""

    scenario = "serving"
    opened: PlayedMerchant | None = None

    def __init__(self) -> None:
        self.stopping = threading.Event()
        self.closed = False
        self.metrics_port = 0

    @classmethod
    def open(cls, config: object) -> PlayedMerchant:
        """One played merchant, kept for the report."""
        cls.opened = cls()
        return cls.opened

    def request_stop(self) -> None:
        """As ``Merchant.request_stop``: an Event set."""
        self.stopping.set()

    def serve(self) -> int:
        """The port, or 0 when stopped while starting."""
        if self.scenario != "starting":
            return PORT
        handler = signal.getsignal(signal.SIGTERM)
        assert callable(handler), handler
        faulthandler.dump_traceback_later(HANDLER_SECONDS, exit=True)
        # Held as Event.wait holds it, by this thread alone: no other thread takes part.
        with self.stopping._cond:  # type: ignore[attr-defined]
            handler(signal.SIGTERM, None)
        faulthandler.cancel_dump_traceback_later()
        print("handler returned", flush=True)
        os.kill(os.getpid(), signal.SIGTERM)
        return 0 if self.stopping.wait(STOP_SECONDS) else PORT

    def close(self) -> None:
        """Closed: after the stop, as the drain; in ``draining``, once the test says so."""
        if self.scenario == "draining":
            print("draining", flush=True)
            sys.stdin.readline()
        self.closed = True


def _before(signum: int, frame: FrameType | None) -> None:
    """The probe's own handler, which ``_serve`` must put back."""


def main(scenario: str) -> int:
    """Run ``_serve`` on a played merchant in ``scenario``; print the report."""
    PlayedMerchant.scenario = scenario
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    vars(merchant_cli)["Merchant"] = PlayedMerchant  # the probe is its own process
    if scenario != "draining":  # there, the interpreter's: SIGTERM ends it, SIGINT raises
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, _before)
    found = {signum: signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGINT)}
    _, wakeup = os.pipe()
    os.set_blocking(wakeup, False)
    signal.set_wakeup_fd(wakeup)
    config = cast(MerchantConfig, SimpleNamespace(merchant_id="m-probe"))
    status = merchant_cli._serve(config, argparse.Namespace(metrics_port=None))
    played = PlayedMerchant.opened
    assert played is not None
    report = {
        "status": status,
        "handlers_back": all(signal.getsignal(signum) == found[signum] for signum in found),
        "wakeup_back": signal.set_wakeup_fd(-1) == wakeup,
        "stop_asked": played.stopping.is_set(),
        "closed": played.closed,
    }
    print(json.dumps(report), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
