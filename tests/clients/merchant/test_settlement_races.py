"""Two settlement commands at once on one order, against the real merchant file and the
real gateway: the check on the money and the storing of the operation are one
transaction, so both never pass, and the second gets the refusal it would have got after
the first, with nothing stored and nothing sent.

The race is made certain, not left to timing: each command is held, once it has checked
and before it stores, until the other has checked too (a barrier in the gateway keys the
request is sealed to, which it fetches between the two); and the command that stores
first is held at the gateway until the other has its answer, so that answer can be set
beside the one a command given then gets.
"""

from __future__ import annotations

import itertools
import queue
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest

from clients.errors import OrderStateError
from clients.merchant.config import load as load_merchant_config
from clients.merchant.records import Operation, OperationKind, OperationState
from clients.merchant.runtime import Merchant
from tests.clients.bank_support import RunningBank
from tests.clients.conftest import MerchantFactory, WalletFactory
from tests.clients.merchant.tampering_support import gateway_hold
from tests.clients.test_purchase_flow import buy, offer

# Bounds every wait on the other command (a barrier, an answer): each comes within
# milliseconds; this only turns a hang into a failure on a loaded machine.
RACE_WAIT_SECONDS = 20.0


@dataclass(frozen=True)
class Race:
    """Two commands on one order: what comes before them, and the command."""

    #: The GatewayClient method the command sends with.
    method: str
    kind: OperationKind
    prepare: Callable[[Merchant, bytes], None]
    command: Callable[[Merchant, bytes], Operation]
    #: Whether each command runs on a merchant of its own (two processes on one file)
    #: or both on one (two threads of one process).
    apart: bool


def _nothing(merchant: Merchant, xid: bytes) -> None:
    """Nothing comes before two captures."""


def _captured(merchant: Merchant, xid: bytes) -> None:
    merchant.settlement.capture(xid)


def _answered(merchant: Merchant, xid: bytes) -> bool:
    """Whether the order has an operation, and all of them are answered."""
    operations = merchant.store.operations(xid)
    return bool(operations) and all(op.state is not OperationState.SENT for op in operations)


RACES = {
    "two captures of all that is authorized, two processes": Race(
        "capture", OperationKind.CAPTURE, _nothing,
        lambda m, xid: m.settlement.capture(xid, 1000), apart=True,
    ),
    "two refunds of all that is captured, two threads": Race(
        "credit", OperationKind.CREDIT, _captured,
        lambda m, xid: m.settlement.refund(xid, 1000), apart=False,
    ),
}  # fmt: skip


class HeldCommands:
    """Holds two commands where the race is decided (the barrier) and the one that
    stored first at the gateway (until ``release``)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, method: str) -> None:
        self._monkeypatch = monkeypatch
        self._method = method
        self._barrier = threading.Barrier(2, timeout=RACE_WAIT_SECONDS)
        self._sealed = 0
        self._released = threading.Event()
        self.sent: list[bytes] = []
        self._guard = threading.Lock()

    def hold(self, merchant: Merchant) -> None:
        """Hold ``merchant``'s commands: the first two to seal a request wait for each
        other; every request sent waits for ``release``."""
        recipient, send = merchant.gateway_keys.recipient, getattr(merchant.gateway, self._method)

        def held_recipient() -> Any:
            with self._guard:
                self._sealed += 1
                racing = self._sealed <= 2
            if racing:
                self._barrier.wait()
            return recipient()

        def held_send(request: bytes, state: Any) -> Any:
            with self._guard:
                self.sent.append(request)
            assert self._released.wait(RACE_WAIT_SECONDS), "never released"
            return send(request, state)

        self._monkeypatch.setattr(merchant.gateway_keys, "recipient", held_recipient)
        self._monkeypatch.setattr(merchant.gateway, self._method, held_send)

    def release(self) -> None:
        """Let every request held at the gateway go."""
        self._released.set()


@contextmanager
def _second(merchant: Merchant, apart: bool) -> Iterator[Merchant]:
    """The merchant the second command runs on: another on the same directory, as a
    second ``setpay merchant`` process opens it, or the same one."""
    if not apart:
        yield merchant
        return
    other = Merchant.open(load_merchant_config(merchant.config.base_dir))
    try:
        yield other
    finally:
        other.close()


@pytest.mark.parametrize("name", list(RACES))
def test_two_commands_at_once_never_both_pass_the_check(
    bank: RunningBank,
    make_merchant: MerchantFactory,
    make_wallet: WalletFactory,
    monkeypatch: pytest.MonkeyPatch,
    name: str,
) -> None:
    race = RACES[name]
    merchant = make_merchant(f"m-race-{race.method}")
    xid = bytes.fromhex(buy(make_wallet(merchant), offer(merchant, 1000)).xid)
    race.prepare(merchant, xid)
    held = HeldCommands(monkeypatch, race.method)
    with _second(merchant, race.apart) as other:
        held.hold(merchant)
        if other is not merchant:
            held.hold(other)
        answers: queue.Queue[Operation | Exception] = queue.Queue()

        def run(on: Merchant) -> None:
            try:
                answers.put(race.command(on, xid))
            except Exception as exc:  # the answer the test looks at
                answers.put(exc)

        threads = [threading.Thread(target=run, args=(m,)) for m in (merchant, other)]
        for thread in threads:
            thread.start()
        try:
            give_up = time.monotonic() + RACE_WAIT_SECONDS
            while answers.empty() and len(held.sent) < 2:
                assert time.monotonic() < give_up, "neither command got as far as the gateway"
                time.sleep(0.01)
            sent = len(held.sent)
            assert sent < 2, "both commands passed the check and were sent"
            loser = answers.get_nowait()
            # The first is still waiting for the gateway: a command given now is refused,
            # naming it, and the loser heard exactly that.
            with pytest.raises(OrderStateError) as sequential:
                race.command(merchant, xid)
            assert isinstance(loser, OrderStateError), loser
            assert str(loser) == str(sequential.value)
            assert "is sent and not answered" in str(loser)
        finally:
            held.release()
            for thread in threads:
                thread.join(RACE_WAIT_SECONDS)
    winner = answers.get_nowait()
    assert isinstance(winner, Operation), winner
    assert (winner.state, winner.result_amount) == (OperationState.SUCCEEDED, 1000)
    assert [op.rrpid for op in merchant.store.operations(xid) if op.kind is race.kind] == [
        winner.rrpid
    ]
    assert held.sent == [winner.request]
    hold = gateway_hold(bank, xid)
    assert hold.transfers[race.kind.value] == 1


def test_a_default_amount_is_what_the_other_command_left(
    bank: RunningBank,
    make_merchant: MerchantFactory,
    make_wallet: WalletFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A capture of 400 and a capture of all that is left, at once; the 400 is stored and
    answered between the other's check and its storing: the other is checked and built
    again, and captures the 600 left, not the 1000 it saw first. (Had the 400 not been
    answered yet, the other would be refused: no capture is sent while one is pending.)"""
    merchant = make_merchant("m-race-default")
    xid = bytes.fromhex(buy(make_wallet(merchant), offer(merchant, 1000)).xid)
    barrier = threading.Barrier(2, timeout=RACE_WAIT_SECONDS)
    sealed = itertools.count()
    recipient = merchant.gateway_keys.recipient

    def held_recipient() -> Any:
        if next(sealed) < 2:  # the two first checks, made before either stores
            barrier.wait()
            if threading.current_thread().name == "rest":
                give_up = time.monotonic() + RACE_WAIT_SECONDS
                while not _answered(merchant, xid):
                    assert time.monotonic() < give_up, "the capture of 400 was never answered"
                    time.sleep(0.01)
        return recipient()

    monkeypatch.setattr(merchant.gateway_keys, "recipient", held_recipient)
    done: dict[str, Operation | Exception] = {}

    def run(name: str, amount: int | None) -> None:
        try:
            done[name] = merchant.settlement.capture(xid, amount)
        except Exception as exc:  # the answer the test looks at
            done[name] = exc

    threads = [
        threading.Thread(target=run, args=(name, amount), name=name)
        for name, amount in (("part", 400), ("rest", None))
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(RACE_WAIT_SECONDS)
    settled = {
        name: (op.state, op.result_amount) if isinstance(op, Operation) else op
        for name, op in done.items()
    }
    assert settled == {
        "part": (OperationState.SUCCEEDED, 400),
        "rest": (OperationState.SUCCEEDED, 600),
    }
    assert len(merchant.store.operations(xid)) == 2
    hold = gateway_hold(bank, xid)
    assert (hold.captured, hold.transfers["capture"]) == (1000, 2)
