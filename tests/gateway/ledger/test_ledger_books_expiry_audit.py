"""``books.differences`` holds each hold to its expiry: no capture dated at or after it,
one release at most and nothing capturing or lowering the hold after that release, and the
hold ``expired`` exactly when its release is posted (every store, and the ledger service's
wire).

Each tampering case changes rows by SQL so that every figure and balance still sums right
(the older checks see nothing), and puts them back before the test ends (the ``ledger``
fixture checks the books then).
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial

import pytest

from gateway.ledger import (
    Authorized,
    CaptureItem,
    LedgerImbalance,
    LedgerStore,
    Posted,
    PostingOutcome,
    ReversalDeclined,
)
from gateway.ledger.books import differences
from tests.gateway.ledger.ledger_support import (
    EUR,
    MERCHANT,
    PAN_A,
    PAN_B,
    Backend,
    Bank,
    FakeClock,
)

LIFE_MS = 60_000
AMOUNT = 1000
CAPTURED = 400


@pytest.fixture
def store(backend: Backend) -> Iterator[LedgerStore]:
    """A second store on the ``bank`` fixture's database, as ``check-books`` opens one."""
    opened = backend.open_store()
    yield opened
    opened.close()


def _audit(store: LedgerStore) -> tuple[str, ...]:
    return store.read(partial(differences))


def _hold(bank: Bank, clock: FakeClock, pan: str = PAN_A) -> str:
    authorized = bank.authorize(pan, AMOUNT, expires_at_ms=clock.now_ms + LIFE_MS)
    assert isinstance(authorized, Authorized), authorized
    return authorized.hold_id


def _capture(bank: Bank, hold_id: str, amount: int) -> Posted:
    outcome = bank.call(
        bank.ledger.capture, merchant_id=MERCHANT, items=[CaptureItem(hold_id, amount, EUR)]
    )
    assert isinstance(outcome, PostingOutcome), outcome
    (item,) = outcome.items
    assert isinstance(item, Posted), item
    return item


def _captured_then_released(bank: Bank, clock: FakeClock, backend: Backend) -> tuple[str, int, int]:
    """A hold captured in part, then released at its expiry by the sweep: the hold, its
    capture's transfer id and its release's."""
    hold_id = _hold(bank, clock)
    _capture(bank, hold_id, CAPTURED)
    clock.advance(LIFE_MS)
    assert bank.ledger.expire_holds() == 1
    capture, release = _ids(backend, hold_id, "capture", "expiry")
    return hold_id, capture, release


def _ids(backend: Backend, hold_id: str, *kinds: str) -> tuple[int, ...]:
    """The id of each of ``kinds``' one transfer on the hold."""
    rows = backend.raw_query(f"SELECT kind, id FROM transfers WHERE hold_id = '{hold_id}'")
    by_kind = {str(kind): int(str(transfer)) for kind, transfer in rows}
    return tuple(by_kind[kind] for kind in kinds)


def _listed(found: tuple[str, ...], bank: Bank, expected: str) -> None:
    """``expected`` is among the differences, and ``check_balanced`` raises one."""
    assert expected in found, found
    with pytest.raises(LedgerImbalance):
        bank.ledger.check_balanced()


def test_holds_expired_every_way_have_no_differences(
    bank: Bank, clock: FakeClock, store: LedgerStore, backend: Backend
) -> None:
    """Released by the sweep, by a capture and by a reversal that found them expired, and
    by an authorization counting its card; captured a millisecond before expiry; sold."""
    led = bank.ledger
    swept, by_capture, by_reversal, by_card = (_hold(bank, clock) for _ in range(4))
    _capture(bank, swept, CAPTURED)
    last_moment = _hold(bank, clock, PAN_B)
    sale = bank.authorize(PAN_B, 300, capture_now=True)
    assert isinstance(sale, Authorized) and sale.capture is not None, sale
    clock.advance(LIFE_MS - 1)
    _capture(bank, last_moment, AMOUNT)
    clock.advance(1)
    assert led.expire_holds(1) == 1
    declined = bank.call(led.capture, merchant_id=MERCHANT, items=[CaptureItem(by_capture, 1, EUR)])
    assert isinstance(declined, PostingOutcome) and not isinstance(declined.items[0], Posted)
    refused = bank.call(
        led.reverse_authorization, merchant_id=MERCHANT, hold_id=by_reversal, new_amount=0
    )
    assert isinstance(refused, ReversalDeclined), refused
    assert isinstance(bank.authorize(PAN_A, 100), Authorized)
    # Released, each of them: a read would show a hold past its expiry expired anyway.
    released = backend.raw_query("SELECT id FROM holds WHERE status = 'expired'")
    assert {str(row[0]) for row in released} == {swept, by_capture, by_reversal, by_card}
    assert _audit(store) == ()


def test_a_capture_dated_at_its_holds_expiry_is_listed(
    bank: Bank, clock: FakeClock, store: LedgerStore, backend: Backend
) -> None:
    hold_id = _hold(bank, clock)
    _capture(bank, hold_id, CAPTURED)
    (capture,) = _ids(backend, hold_id, "capture")
    backend.raw_execute(f"UPDATE transfers SET created_at_ms = {clock.now_ms + LIFE_MS}"
                        f" WHERE id = {capture}")  # fmt: skip
    try:
        found = _audit(store)
        _listed(found, bank, f"hold {hold_id}: captured at or after its expiry")
    finally:
        backend.raw_execute(
            f"UPDATE transfers SET created_at_ms = {clock.now_ms} WHERE id = {capture}"
        )
    assert _audit(store) == ()


def _swap(backend: Backend, first: int, second: int) -> None:
    """Exchange what two transfers of one hold record, their ids staying: the journal
    then has them the other way round, every sum unchanged."""
    columns = "kind, phase, amount, rrpid, batch_id, batch_seq, created_at_ms"
    rows = {
        int(str(r[0])): r[1:]
        for r in backend.raw_query(
            f"SELECT id, {columns} FROM transfers WHERE id IN ({first}, {second})"
        )
    }
    # The batch columns first cleared, so that no two rows hold one batch sequence at once.
    backend.raw_execute(
        f"UPDATE transfers SET batch_id = NULL, batch_seq = NULL, rrpid = NULL"
        f" WHERE id IN ({first}, {second})"
    )
    for target, source in ((first, second), (second, first)):
        kind, phase, amount, rrpid, batch_id, batch_seq, created = rows[source]
        backend.raw_execute(
            f"UPDATE transfers SET kind = '{kind}', phase = '{phase}', amount = {amount},"
            f" created_at_ms = {created} WHERE id = {target}"
        )
        if batch_id is not None:
            assert isinstance(rrpid, bytes), rrpid
            rrpid_literal = (
                f"'\\x{rrpid.hex()}'::bytea" if backend.name == "postgres" else f"X'{rrpid.hex()}'"
            )
            backend.raw_execute(
                f"UPDATE transfers SET batch_id = '{batch_id}', batch_seq = {batch_seq},"
                f" rrpid = {rrpid_literal} WHERE id = {target}"
            )


def test_a_capture_after_its_holds_release_is_listed(
    bank: Bank, clock: FakeClock, store: LedgerStore, backend: Backend
) -> None:
    hold_id, capture, release = _captured_then_released(bank, clock, backend)
    _swap(backend, capture, release)
    try:
        found = _audit(store)
        _listed(found, bank, f"hold {hold_id}: captured or lowered after its release at expiry")
    finally:
        _swap(backend, capture, release)
    assert _audit(store) == ()


def test_a_hold_released_twice_is_listed(
    bank: Bank, clock: FakeClock, store: LedgerStore, backend: Backend
) -> None:
    """The release split in two postings of half each: every sum as before."""
    hold_id, _, release = _captured_then_released(bank, clock, backend)
    half = (AMOUNT - CAPTURED) // 2
    backend.raw_execute(f"UPDATE transfers SET amount = {half} WHERE id = {release}")
    backend.raw_execute(
        "INSERT INTO transfers (kind, phase, debit_account_id, credit_account_id, amount,"
        " currency, hold_id, created_at_ms) SELECT kind, phase, debit_account_id,"
        f" credit_account_id, amount, currency, hold_id, created_at_ms FROM transfers"
        f" WHERE id = {release}"
    )
    try:
        found = _audit(store)
        _listed(found, bank, f"hold {hold_id}: released at its expiry more than once")
    finally:
        backend.raw_execute(f"DELETE FROM transfers WHERE hold_id = '{hold_id}'"
                            f" AND kind = 'expiry' AND id <> {release}")  # fmt: skip
        backend.raw_execute(
            f"UPDATE transfers SET amount = {AMOUNT - CAPTURED} WHERE id = {release}"
        )
    assert _audit(store) == ()


@pytest.mark.parametrize(
    ("released", "status"), [(False, "expired"), (True, "closed")], ids=["unreleased", "released"]
)
def test_a_status_that_does_not_fit_its_release_is_listed(
    bank: Bank,
    clock: FakeClock,
    store: LedgerStore,
    backend: Backend,
    released: bool,
    status: str,
) -> None:
    """A hold captured in full marked expired, or one released marked closed: pending 0
    either way, so the older status check sees nothing."""
    if released:
        hold_id, _, _ = _captured_then_released(bank, clock, backend)
    else:
        hold_id = _hold(bank, clock)
        _capture(bank, hold_id, AMOUNT)
    before = bank.ledger.hold(hold_id).status
    backend.raw_execute(f"UPDATE holds SET status = '{status}' WHERE id = '{hold_id}'")
    try:
        found = _audit(store)
        _listed(found, bank, f"hold {hold_id}: status {status} does not fit its releases at expiry")
    finally:
        backend.raw_execute(f"UPDATE holds SET status = '{before}' WHERE id = '{hold_id}'")
    assert _audit(store) == ()
