"""``check_balanced`` holds every transfer to its hold: whose money it moves, which way, in
which phase and currency, in whose batch, undoing which original (both stores).

Each case rewrites the journal as a wrong posting would have written it, the balances
moved with it as ``post_transfer`` would have moved them: every account's sums still
equal its journal and every hold's figures its transfers, so only the rule about the
transfer's hold sees it. Each case is put back before the test ends (the ``ledger``
fixture checks the books then).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest

from gateway.ledger import (
    Authorized,
    CaptureItem,
    CreditItem,
    LedgerImbalance,
    ReversalItem,
)
from gateway.ledger.books import TransferKind
from gateway.ledger.ledger import HOLD_LIFETIME_MS
from tests.gateway.ledger.ledger_support import (
    EUR,
    MERCHANT,
    PAN_A,
    PAN_B,
    Backend,
    Bank,
    FakeClock,
)

OTHER_MERCHANT = "merchant-2"


@dataclass(frozen=True)
class Books:
    """The ids a case rewrites: accounts, holds, and transfers by what they are."""

    card_a: str
    card_b: str
    merchant: str
    other_merchant: str
    hold: str
    other_hold: str
    reversed_hold: str
    their_hold: str
    raw: Callable[[str], list[tuple[object, ...]]]

    def transfer(self, kind: str, hold_id: str, amount: int) -> int:
        """The id of the one transfer of ``kind`` and ``amount`` on the hold."""
        ((found,),) = self.raw(
            f"SELECT id FROM transfers WHERE kind = '{kind}' AND hold_id = '{hold_id}'"
            f" AND amount = {amount}"
        )
        return int(str(found))

    def batch_of(self, transfer_id: int) -> tuple[str, int]:
        """The batch a transfer is filed in, and its sequence number there."""
        ((batch, seq),) = self.raw(
            f"SELECT batch_id, batch_seq FROM transfers WHERE id = {transfer_id}"
        )
        return str(batch), int(str(seq))

    def reverses(self, transfer_id: int) -> int:
        """The original a reversal names."""
        ((original,),) = self.raw(f"SELECT reverses_id FROM transfers WHERE id = {transfer_id}")
        return int(str(original))


def _hold(bank: Bank, pan: str, amount: int, merchant: str = MERCHANT) -> str:
    outcome = bank.authorize(pan, amount, merchant=merchant)
    assert isinstance(outcome, Authorized), outcome
    return outcome.hold_id


def _books(bank: Bank, backend: Backend) -> Books:
    """Every kind of transfer, on two merchants: captures, a refund and its reversal, a
    capture reversal, an authorization reversal."""
    led = bank.ledger
    led.open_merchant_account(OTHER_MERCHANT, EUR)
    hold = _hold(bank, PAN_A, 4000)
    bank.call(led.capture, merchant_id=MERCHANT, items=[CaptureItem(hold, 3000, EUR)],
              rrpid=b"cap-1")  # fmt: skip
    bank.call(led.capture, merchant_id=MERCHANT, items=[CaptureItem(hold, 1000, EUR)],
              rrpid=b"cap-2")  # fmt: skip
    bank.call(led.credit, merchant_id=MERCHANT, items=[CreditItem(hold, 1000, EUR)],
              rrpid=b"cred-1")  # fmt: skip
    bank.call(led.reverse_credit, merchant_id=MERCHANT, items=[ReversalItem(hold, b"cred-1")])
    bank.call(led.reverse_capture, merchant_id=MERCHANT, items=[ReversalItem(hold, b"cap-1")])
    other_hold = _hold(bank, PAN_A, 3000)
    bank.call(led.capture, merchant_id=MERCHANT, items=[CaptureItem(other_hold, 3000, EUR)],
              rrpid=b"cap-3")  # fmt: skip
    reversed_hold = _hold(bank, PAN_B, 2000)
    bank.call(led.reverse_authorization, merchant_id=MERCHANT, hold_id=reversed_hold,
              new_amount=1500)  # fmt: skip
    theirs = _hold(bank, PAN_B, 1000, OTHER_MERCHANT)
    bank.call(led.capture, merchant_id=OTHER_MERCHANT, items=[CaptureItem(theirs, 1000, EUR)],
              rrpid=b"cap-4")  # fmt: skip
    led.check_balanced()
    return Books(
        card_a=led.find_card_account(PAN_A).account_id,
        card_b=led.find_card_account(PAN_B).account_id,
        merchant=led.merchant_account(MERCHANT).account_id,
        other_merchant=led.merchant_account(OTHER_MERCHANT).account_id,
        hold=hold,
        other_hold=other_hold,
        reversed_hold=reversed_hold,
        their_hold=theirs,
        raw=backend.raw_query,
    )


def _move(account: str, column: str, amount: int) -> str:
    return f"UPDATE accounts SET {column} = {column} + {amount} WHERE id = '{account}'"


def _refund_paid_to_another_card(b: Books) -> tuple[list[str], list[str]]:
    credit = b.transfer("credit", b.hold, 1000)
    return (
        [f"UPDATE transfers SET credit_account_id = '{b.card_b}' WHERE id = {credit}",
         _move(b.card_a, "credits_posted", -1000), _move(b.card_b, "credits_posted", 1000)],
        [f"UPDATE transfers SET credit_account_id = '{b.card_a}' WHERE id = {credit}",
         _move(b.card_a, "credits_posted", 1000), _move(b.card_b, "credits_posted", -1000)],
    )  # fmt: skip


def _refund_booked_backwards(b: Books) -> tuple[list[str], list[str]]:
    credit = b.transfer("credit", b.hold, 1000)

    def swap(debit: str, credit_to: str, sign: int) -> list[str]:
        return [
            f"UPDATE transfers SET debit_account_id = '{debit}',"
            f" credit_account_id = '{credit_to}' WHERE id = {credit}",
            _move(b.card_a, "credits_posted", -1000 * sign),
            _move(b.card_a, "debits_posted", 1000 * sign),
            _move(b.merchant, "debits_posted", -1000 * sign),
            _move(b.merchant, "credits_posted", 1000 * sign),
        ]

    return swap(b.card_a, b.merchant, 1), swap(b.merchant, b.card_a, -1)


def _refund_reversal_paid_to_another_merchant(b: Books) -> tuple[list[str], list[str]]:
    reversal = b.transfer("credit-reversal", b.hold, 1000)
    return (
        [f"UPDATE transfers SET credit_account_id = '{b.other_merchant}' WHERE id = {reversal}",
         _move(b.merchant, "credits_posted", -1000),
         _move(b.other_merchant, "credits_posted", 1000)],
        [f"UPDATE transfers SET credit_account_id = '{b.merchant}' WHERE id = {reversal}",
         _move(b.merchant, "credits_posted", 1000),
         _move(b.other_merchant, "credits_posted", -1000)],
    )  # fmt: skip


def _authorization_reversal_charged_the_card(b: Books) -> tuple[list[str], list[str]]:
    # Posted instead of voided: the 500 released went to the merchant instead.
    release = b.transfer("authorization-reversal", b.reversed_hold, 500)
    return (
        [f"UPDATE transfers SET phase = 'post' WHERE id = {release}",
         _move(b.card_b, "debits_posted", 500), _move(b.merchant, "credits_posted", 500)],
        [f"UPDATE transfers SET phase = 'void' WHERE id = {release}",
         _move(b.card_b, "debits_posted", -500), _move(b.merchant, "credits_posted", -500)],
    )  # fmt: skip


def _hold_in_another_currency(b: Books) -> tuple[list[str], list[str]]:
    return (
        [f"UPDATE holds SET currency = 840 WHERE id = '{b.hold}'"],
        [f"UPDATE holds SET currency = {EUR} WHERE id = '{b.hold}'"],
    )


def _filed_in(transfer_id: int, batch: str | None, seq: int | None) -> str:
    if batch is None:
        return f"UPDATE transfers SET batch_id = NULL, batch_seq = NULL WHERE id = {transfer_id}"
    return f"UPDATE transfers SET batch_id = '{batch}', batch_seq = {seq} WHERE id = {transfer_id}"


def _capture_in_another_merchants_batch(b: Books) -> tuple[list[str], list[str]]:
    capture = b.transfer("capture", b.hold, 1000)
    theirs, _ = b.batch_of(b.transfer("capture", b.their_hold, 1000))
    return [_filed_in(capture, theirs, 99)], [_filed_in(capture, *b.batch_of(capture))]


def _authorization_in_a_batch(b: Books) -> tuple[list[str], list[str]]:
    authorization = b.transfer("authorization", b.hold, 4000)
    batch, _ = b.batch_of(b.transfer("capture", b.hold, 1000))
    return [_filed_in(authorization, batch, 99)], [_filed_in(authorization, None, None)]


def _capture_naming_an_original(b: Books) -> tuple[list[str], list[str]]:
    capture = b.transfer("capture", b.hold, 1000)
    authorization = b.transfer("authorization", b.hold, 4000)
    return (
        [f"UPDATE transfers SET reverses_id = {authorization} WHERE id = {capture}"],
        [f"UPDATE transfers SET reverses_id = NULL WHERE id = {capture}"],
    )


def _repointed(b: Books, kind: str, amount: int, original: int) -> tuple[list[str], list[str]]:
    reversal = b.transfer(kind, b.hold, amount)
    was = b.reverses(reversal)
    return (
        [f"UPDATE transfers SET reverses_id = {original} WHERE id = {reversal}"],
        [f"UPDATE transfers SET reverses_id = {was} WHERE id = {reversal}"],
    )


def _reversal_of_another_amount(b: Books) -> tuple[list[str], list[str]]:
    # The 3000 capture's reversal said to undo the 1000 one.
    return _repointed(b, "capture-reversal", 3000, b.transfer("capture", b.hold, 1000))


def _reversal_of_another_kind(b: Books) -> tuple[list[str], list[str]]:
    # The 1000 refund's reversal said to undo the 1000 capture.
    return _repointed(b, "credit-reversal", 1000, b.transfer("capture", b.hold, 1000))


def _reversal_of_another_holds_capture(b: Books) -> tuple[list[str], list[str]]:
    return _repointed(b, "capture-reversal", 3000, b.transfer("capture", b.other_hold, 3000))


def _refund_reversal_charged_to_another_card(b: Books) -> tuple[list[str], list[str]]:
    # The 1000 refund's reversal takes its 1000 from card B instead of the hold's card A.
    reversal = b.transfer("credit-reversal", b.hold, 1000)
    return (
        [f"UPDATE transfers SET debit_account_id = '{b.card_b}' WHERE id = {reversal}",
         _move(b.card_a, "debits_posted", -1000), _move(b.card_b, "debits_posted", 1000)],
        [f"UPDATE transfers SET debit_account_id = '{b.card_a}' WHERE id = {reversal}",
         _move(b.card_a, "debits_posted", 1000), _move(b.card_b, "debits_posted", -1000)],
    )  # fmt: skip


def _capture_reversal_paid_by_another_merchant(b: Books) -> tuple[list[str], list[str]]:
    # The 3000 capture's reversal is paid out of merchant-2's balance, not the hold's merchant.
    reversal = b.transfer("capture-reversal", b.hold, 3000)
    return (
        [f"UPDATE transfers SET debit_account_id = '{b.other_merchant}' WHERE id = {reversal}",
         _move(b.merchant, "debits_posted", -3000), _move(b.other_merchant, "debits_posted", 3000)],
        [f"UPDATE transfers SET debit_account_id = '{b.merchant}' WHERE id = {reversal}",
         _move(b.merchant, "debits_posted", 3000), _move(b.other_merchant, "debits_posted", -3000)],
    )  # fmt: skip


_CASES: dict[str, tuple[Callable[[Books], tuple[list[str], list[str]]], str, str]] = {
    "refund reversal charged to another card": (
        _refund_reversal_charged_to_another_card, "credit-reversal",
        "does not move money between its hold's card and merchant the way its kind does",
    ),
    "capture reversal paid by another merchant": (
        _capture_reversal_paid_by_another_merchant, "capture-reversal",
        "does not move money between its hold's card and merchant the way its kind does",
    ),
    "refund paid to another card": (
        _refund_paid_to_another_card, "credit",
        "does not move money between its hold's card and merchant the way its kind does",
    ),
    "refund booked backwards": (
        _refund_booked_backwards, "credit",
        "does not move money between its hold's card and merchant the way its kind does",
    ),
    "refund reversal paid to another merchant": (
        _refund_reversal_paid_to_another_merchant, "credit-reversal",
        "does not move money between its hold's card and merchant the way its kind does",
    ),
    "authorization reversal posted": (
        _authorization_reversal_charged_the_card, "authorization-reversal",
        "is not in the phase of its kind",
    ),
    "hold in another currency": (
        _hold_in_another_currency, "authorization", "is not in its hold's currency",
    ),
    "authorization in a batch": (
        _authorization_in_a_batch, "authorization",
        "is filed in a batch, which settles captures, credits and their reversals only",
    ),
    "capture in another merchant's batch": (
        _capture_in_another_merchants_batch, "capture",
        "is filed in a batch of another merchant than its hold's",
    ),
    "capture naming an original": (
        _capture_naming_an_original, "capture", "names an original, which only a reversal undoes",
    ),
    "reversal of another amount": (
        _reversal_of_another_amount, "capture-reversal",
        "does not undo the whole of an original of its hold and of the kind it reverses",
    ),
    "reversal of another kind": (
        _reversal_of_another_kind, "credit-reversal",
        "does not undo the whole of an original of its hold and of the kind it reverses",
    ),
    "reversal of another hold's capture": (
        _reversal_of_another_holds_capture, "capture-reversal",
        "does not undo the whole of an original of its hold and of the kind it reverses",
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(_CASES), ids=str)
def test_a_transfer_that_is_not_its_holds_posting_is_an_imbalance(
    bank: Bank, backend: Backend, case: str
) -> None:
    books = _books(bank, backend)
    rewritten, kind, problem = _CASES[case]
    rewrite, undo = rewritten(books)
    for statement in rewrite:
        backend.raw_execute(statement)
    with pytest.raises(LedgerImbalance, match=rf"^transfer \d+ \({kind}\) {problem}$"):
        bank.ledger.check_balanced()
    for statement in undo:
        backend.raw_execute(statement)
    bank.ledger.check_balanced()


def test_every_kind_of_posting_of_every_flow_is_its_holds(
    bank: Bank, backend: Backend, clock: FakeClock
) -> None:
    """The flows themselves pass: partial and whole captures, a sale, refunds and their
    reversals, a reversal filed in a later batch, authorization reversals partial and
    whole, and holds left to expire and released."""
    books = _books(bank, backend)
    led = bank.ledger
    led.close_batch(MERCHANT, rrpid=b"close-1", request_digest=b"d", respond=bank.respond)
    sale = bank.authorize(PAN_B, 400, capture_now=True)
    assert isinstance(sale, Authorized) and sale.capture is not None
    bank.call(led.reverse_capture, merchant_id=MERCHANT,
              items=[ReversalItem(books.other_hold, b"cap-3")])  # fmt: skip
    whole = _hold(bank, PAN_B, 300)
    bank.call(led.reverse_authorization, merchant_id=MERCHANT, hold_id=whole, new_amount=0)
    _hold(bank, PAN_B, 200)
    led.check_balanced()
    clock.advance(HOLD_LIFETIME_MS)
    assert led.expire_holds() == 2  # the 200 one, and the 1500 the reversed one still holds
    led.check_balanced()
    kinds = {str(kind) for (kind,) in backend.raw_query("SELECT DISTINCT kind FROM transfers")}
    assert kinds == {kind.value for kind in TransferKind}
