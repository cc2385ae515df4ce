"""``setpay bench serve`` and its workers stopped, in a process of their own, with the
service only played: what is tested is who hears SIGTERM, not the serving.

Run as ``python -m tests.cli.bench_stop_probe bench|worker``:

- ``bench``: ``cli.bench_serve.serve_reference`` with ``gateway.ceiling.serve`` replaced. The
  played ``serve`` holds its stop Event's condition lock, as that Event's ``wait`` does
  between its steps, and runs the installed SIGTERM handler itself, in that thread, as the
  interpreter would on a signal: a handler that set that Event waits for itself forever,
  and faulthandler ends the process after HANDLER_SECONDS with every thread's traceback.
  The handler returned, it sends itself a real SIGTERM, which must set the Event.
- ``worker``: ``gateway.ceiling._worker`` (a worker of ``--workers N``, after the fork)
  with its serving played. Once its handlers are in place (its scheduling step), the probe
  holds the condition lock of every Event the worker made and runs its SIGTERM handler
  likewise; once "served", a real SIGTERM must end it, closing what it served.

Before, the probe sets a SIGTERM and a SIGINT handler and a wakeup fd of its own; after, it
prints one JSON line: the status returned, whether the stop was heard, and (``bench``)
whether the handlers and wakeup fd found are back.
"""

from __future__ import annotations

import argparse
import contextlib
import faulthandler
import json
import os
import signal
import sys
import threading
from pathlib import Path
from types import FrameType, SimpleNamespace
from typing import Any, cast

from cli import bench_serve
from gateway import ceiling
from gateway.ceiling import ReferenceOptions

# How long the handler, run directly, may take: it should return at once; a loaded machine
# gets seconds. Past it, the process ends, so that the test fails rather than hangs.
HANDLER_SECONDS = 10.0
# How long the played service waits for the real SIGTERM to set its stop.
STOP_SECONDS = 30.0
# The port the played service says it serves on (nothing listens).
PORT = 1


def _before(signum: int, frame: FrameType | None) -> None:
    """The probe's own handler, which ``serve_reference`` must put back."""


def _run_held(locks: list[Any]) -> None:
    """Run the installed SIGTERM handler in this thread while it holds ``locks``."""
    handler = signal.getsignal(signal.SIGTERM)
    assert callable(handler), handler
    faulthandler.dump_traceback_later(HANDLER_SECONDS, exit=True)
    with contextlib.ExitStack() as held:  # held by this thread alone, as Event.wait holds
        for lock in locks:
            held.enter_context(lock)
        handler(signal.SIGTERM, None)
    faulthandler.cancel_dump_traceback_later()
    print("handler returned", flush=True)


def _bench() -> dict[str, object]:
    heard: list[bool] = []

    def serve(config: object, options: ReferenceOptions, stop: threading.Event) -> int:
        _run_held([stop._cond])  # type: ignore[attr-defined]
        os.kill(os.getpid(), signal.SIGTERM)
        heard.append(stop.wait(STOP_SECONDS))
        return PORT

    vars(bench_serve)["serve"] = serve  # the probe is its own process
    vars(bench_serve)["load"] = lambda path: SimpleNamespace()
    args = argparse.Namespace(
        mode="echo", listen="127.0.0.1:0", workers=1, threads=None, delay_ms=0.0,
        port_file=None, config=Path("setpay.toml"), lifeline_fd=None,
    )  # fmt: skip
    _, wakeup = os.pipe()
    os.set_blocking(wakeup, False)
    signal.set_wakeup_fd(wakeup)
    status = bench_serve.serve_reference(args)
    return {
        "status": status,
        "heard": heard == [True],
        "handlers_back": all(
            signal.getsignal(signum) is _before for signum in (signal.SIGTERM, signal.SIGINT)
        ),
        "wakeup_back": signal.set_wakeup_fd(-1) == wakeup,
    }


class _MadeEvent(threading.Event):
    """An Event the worker makes, kept so that the probe can hold its lock."""

    made: list[_MadeEvent] = []

    def __init__(self) -> None:
        super().__init__()
        self.made.append(self)


def _worker() -> dict[str, object]:
    closed: list[bool] = []

    def apply(settings: object) -> None:  # the worker's scheduling step: its handlers set
        _run_held([event._cond for event in _MadeEvent.made])  # type: ignore[attr-defined]

    def serve_one(*args: object, **kwargs: object) -> tuple[None, int, Any]:
        return None, PORT, lambda: closed.append(True)

    class Ready:
        def set(self) -> None:
            """Served: now stop it, as its parent does."""
            os.kill(os.getpid(), signal.SIGTERM)

    threading.Event = _MadeEvent  # type: ignore[misc]
    vars(ceiling)["scheduling"] = SimpleNamespace(apply=apply)
    vars(ceiling)["_serve_one"] = serve_one
    options = ReferenceOptions(mode="echo", listen="127.0.0.1:0", workers=2)
    config = SimpleNamespace(scheduling=None)
    ready = cast(Any, Ready())
    ceiling._worker(cast(Any, config), options, "127.0.0.1:0", ready, os.getppid())
    return {"status": 0, "heard": closed == [True]}


def main(scenario: str) -> int:
    """Run ``scenario``; print the report."""
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, _before)
    report = _bench() if scenario == "bench" else _worker()
    print(json.dumps(report), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
