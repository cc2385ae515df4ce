"""The gateway lends its process's turn to the key backends' waits.

A handler holding ``PROCESS_TURN`` that waits for a token session another thread holds
(``hsm.session_pool``; the module lock and lock files wait the same way) gives the turn
up while it waits: importing ``gateway.cpu_turn`` installs the hook
(``hsm.observer.wait_aside_with``). Without it, every other call of the worker waited
with it, up to the pool's 5 s.
"""

from __future__ import annotations

import threading
import time

from gateway.cpu_turn import PROCESS_TURN, TurnNotFree
from hsm.errors import TransientBackendError
from hsm.session_pool import SessionPool


def test_a_handler_waiting_for_a_token_session_leaves_the_process_turn() -> None:
    pool: SessionPool[str] = SessionPool(size=1, wait_seconds=1.5)
    waiting = threading.Event()
    raised: list[BaseException] = []

    def handler() -> None:
        with PROCESS_TURN.held():
            waiting.set()
            try:
                with pool.lease():
                    pass
            except TransientBackendError as exc:  # the session never came back
                raised.append(exc)

    with pool.lease():  # the only session, held by a thread with no turn
        thread = threading.Thread(target=handler)
        thread.start()
        waiting.wait()
        time.sleep(0.1)  # the handler is waiting for the session by now
        try:
            with PROCESS_TURN.held(within=0.5):
                another_call_ran = True
        except TurnNotFree:
            another_call_ran = False
        thread.join()
    assert another_call_ran, "another call of the worker got no turn while the handler waited"
    assert len(raised) == 1
