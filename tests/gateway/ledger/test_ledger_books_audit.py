"""``books.differences``, the audit ``setpay bank check-books`` runs: what
``check_balanced`` checks, each difference listed rather than the first raised (every
store, and the ledger service's wire).

Each case changes rows by SQL, as a fault or a hand outside the ledger would, and puts
them back before the test ends (the ``ledger`` fixture checks the books then).
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial

import pytest

from gateway.ledger import LedgerImbalance, LedgerStore
from gateway.ledger.books import MAX_DIFFERENCES, differences
from tests.gateway.ledger.ledger_support import PAN_A, PAN_B, Backend, Bank
from tests.gateway.ledger.operator_support import settle


@pytest.fixture
def store(backend: Backend) -> Iterator[LedgerStore]:
    """A second store on the ``bank`` fixture's database, as the command opens one."""
    opened = backend.open_store()
    yield opened
    opened.close()


def _audit(store: LedgerStore, limit: int = MAX_DIFFERENCES) -> tuple[str, ...]:
    return store.read(partial(differences, limit=limit))


def test_balanced_books_have_no_differences(bank: Bank, store: LedgerStore) -> None:
    settle(bank)
    bank.authorize(PAN_B, 700)
    assert _audit(store) == ()
    bank.ledger.check_balanced()


def test_a_posting_changed_by_sql_is_each_of_its_differences(
    bank: Bank, store: LedgerStore, backend: Backend
) -> None:
    """A capture's amount raised by one: the two accounts it moved, the hold it settled,
    and the reversal that no longer undoes the whole of it are each listed; the check
    the gateway runs raises the first of them."""
    settled = settle(bank)
    ((capture, card, merchant),) = backend.raw_query(
        "SELECT id, debit_account_id, credit_account_id FROM transfers"
        f" WHERE hold_id = '{settled.hold_id}' AND kind = 'capture' AND amount = 1250"
    )
    backend.raw_execute(f"UPDATE transfers SET amount = amount + 1 WHERE id = {capture}")
    try:
        found = _audit(store)
        with pytest.raises(LedgerImbalance) as raised:
            bank.ledger.check_balanced()
    finally:
        backend.raw_execute(f"UPDATE transfers SET amount = amount - 1 WHERE id = {capture}")
    assert str(raised.value) == found[0]
    for expected in (
        f"account {card}: balances differ from its transfers",
        f"account {merchant}: balances differ from its transfers",
        "(capture-reversal) does not undo the whole of an original of its hold and of the "
        "kind it reverses",
        f"hold {settled.hold_id}: pending differs from its transfers",
        f"hold {settled.hold_id}: captured differs from its transfers",
    ):
        assert [line for line in found if line.endswith(expected)], (expected, found)
    assert len(found) == len(set(found))
    assert _audit(store) == ()


def test_each_transfer_breaking_a_rule_is_listed_up_to_the_limit(
    bank: Bank, store: LedgerStore, backend: Backend
) -> None:
    """Authorizations filed under a batch sequence number: no balance moves, one rule
    broken by each of them, and each is named, where ``check_balanced`` names one."""
    for amount in (100, 200, 300):
        bank.authorize(PAN_A, amount)
    ids = [int(str(row[0])) for row in backend.raw_query(
        "SELECT id FROM transfers WHERE kind = 'authorization' ORDER BY id"
    )]  # fmt: skip
    backend.raw_execute("UPDATE transfers SET batch_seq = 7 WHERE kind = 'authorization'")
    try:
        found = _audit(store)
        first_two = _audit(store, limit=2)
    finally:
        backend.raw_execute("UPDATE transfers SET batch_seq = NULL WHERE kind = 'authorization'")
    assert found == tuple(
        f"transfer {transfer} (authorization) is filed in a batch, which settles captures, "
        "credits and their reversals only"
        for transfer in ids
    )
    assert first_two == found[:2]
    assert _audit(store) == ()


def test_a_limit_below_one_is_refused(store: LedgerStore) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        _audit(store, limit=0)
