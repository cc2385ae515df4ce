"""Concurrency: no overdraft, no lost update, no double spend, no deadlock (both stores)."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from gateway.ledger import (
    Authorized,
    CaptureItem,
    CommitStats,
    Decline,
    Declined,
    Ledger,
    Outcome,
    PiPreviouslyUsed,
    Posted,
    PostingOutcome,
)
from tests.gateway.ledger.ledger_support import EUR, EXPIRY, MERCHANT, PAN_A, PAN_B, PAN_C, Bank

# Threads racing in each test; 200 is what the contract asks of one card's limit.
RACERS = 200


def race(n: int, job: Callable[[int], object]) -> list[object]:
    """Run ``job(i)`` for i in range(n) on n threads released together; results or errors."""
    start = threading.Barrier(n)

    def run(i: int) -> object:
        start.wait()
        try:
            return job(i)
        except Exception as exc:
            return exc

    with ThreadPoolExecutor(max_workers=n) as pool:
        return list(pool.map(run, range(n)))


def test_concurrent_authorizations_approve_exactly_what_the_limit_affords(bank: Bank) -> None:
    amount = 137
    limit = bank.ledger.find_card_account(PAN_A).credit_limit  # 10_000
    affordable = limit // amount  # 72
    outcomes: list[Outcome] = []
    lock = threading.Lock()

    def respond(outcome: Outcome) -> bytes:
        with lock:
            outcomes.append(outcome)
        return repr(outcome).encode()

    def authorize(i: int) -> bytes:
        return bank.ledger.authorize(
            pan=PAN_A,
            pan_expiry=EXPIRY,
            amount=amount,
            currency=EUR,
            merchant_id=MERCHANT,
            xid=f"xid-{i}".encode(),
            pi_digest=b"pi",
            rrpid=f"rrpid-{i}".encode(),
            request_digest=b"digest",
            respond=respond,
        )

    results = race(RACERS, authorize)
    assert all(isinstance(r, bytes) for r in results), [
        r for r in results if not isinstance(r, bytes)
    ]
    kinds = Counter(type(o).__name__ for o in outcomes)
    assert kinds == {"Authorized": affordable, "Declined": RACERS - affordable}
    assert all(
        o == Declined(Decline.INSUFFICIENT_FUNDS) for o in outcomes if isinstance(o, Declined)
    )
    card = bank.ledger.find_card_account(PAN_A)
    assert (card.pending, card.available) == (affordable * amount, limit - affordable * amount)
    bank.ledger.check_balanced()


def test_concurrent_retries_of_one_request_hold_once(bank: Bank) -> None:
    # Several rounds: the race between a retry's first look and the original's commit is
    # narrow, and each round gives it another chance to show.
    for round_ in range(5):

        def retry(i: int, round_: int = round_) -> bytes:
            return bank.ledger.authorize(
                pan=PAN_A,
                pan_expiry=EXPIRY,
                amount=500,
                currency=EUR,
                merchant_id=MERCHANT,
                xid=f"xid-{round_}".encode(),
                pi_digest=b"pi",
                rrpid=f"rrpid-{round_}".encode(),
                request_digest=b"one-digest",
                respond=bank.respond,
            )

        results = race(40, retry)
        errors = [r for r in results if not isinstance(r, bytes)]
        assert errors == [], errors[:3]
        assert len(set(results)) == 1
    assert bank.ledger.find_card_account(PAN_A).pending == 5 * 500


def test_concurrent_replays_of_one_pi_decide_once(bank: Bank) -> None:
    def replay(i: int) -> bytes:
        return bank.ledger.authorize(
            pan=PAN_A,
            pan_expiry=EXPIRY,
            amount=500,
            currency=EUR,
            merchant_id=MERCHANT,
            xid=b"one-xid",
            pi_digest=b"pi",
            rrpid=f"rrpid-{i}".encode(),
            request_digest=f"digest-{i}".encode(),
            respond=bank.respond,
        )

    results = race(40, replay)
    assert sum(isinstance(r, bytes) for r in results) == 1
    assert sum(isinstance(r, PiPreviouslyUsed) for r in results) == 39
    assert bank.ledger.find_card_account(PAN_A).pending == 500


def test_concurrent_captures_never_exceed_the_hold(bank: Bank) -> None:
    auth = bank.authorize(PAN_A, 1000)
    assert isinstance(auth, Authorized)

    def capture(i: int) -> bytes:
        return bank.ledger.capture(
            merchant_id=MERCHANT,
            items=[CaptureItem(auth.hold_id, 300, EUR)],
            rrpid=f"cap-{i}".encode(),
            request_digest=b"d",
            respond=bank.respond,
        )

    race(30, capture)
    posted = [
        o for o in bank.outcomes if isinstance(o, PostingOutcome) and isinstance(o.items[0], Posted)
    ]
    assert len(posted) == 3
    hold = bank.ledger.hold(auth.hold_id)
    assert (hold.captured, hold.pending) == (900, 100)
    assert bank.ledger.batch_summary(MERCHANT).totals  # one batch, opened once
    seqs = sorted(o.items[0].batch_seq for o in posted if isinstance(o.items[0], Posted))
    assert seqs == [1, 2, 3]


def test_multi_card_requests_in_opposite_orders_do_not_deadlock(
    bank: Bank, commits: list[CommitStats]
) -> None:
    ledger: Ledger = bank.ledger
    ledger.open_card_account(PAN_C, EXPIRY, 100_000, EUR)
    holds: dict[str, list[str]] = {PAN_A: [], PAN_C: []}
    for pan in (PAN_A, PAN_C):
        for _ in range(20):
            auth = bank.authorize(pan, 100)
            assert isinstance(auth, Authorized)
            holds[pan].append(auth.hold_id)

    def capture(i: int) -> bytes:
        pair = [holds[PAN_A][i], holds[PAN_C][i]]
        if i % 2:
            pair.reverse()
        return ledger.capture(
            merchant_id=MERCHANT,
            items=[CaptureItem(h, 100, EUR) for h in pair],
            rrpid=f"cap-{i}".encode(),
            request_digest=b"d",
            respond=bank.respond,
        )

    results = race(20, capture)
    assert all(isinstance(r, bytes) for r in results), results
    # Locks are taken in one order, so PostgreSQL never had to break a deadlock.
    assert sum(c.retries for c in commits) == 0
    assert ledger.find_card_account(PAN_A).posted_debt == 2000
    assert ledger.find_card_account(PAN_C).posted_debt == 2000


def test_mixed_traffic_keeps_every_card_within_its_limit(
    bank: Bank, commits: list[CommitStats]
) -> None:
    ledger = bank.ledger
    pans = (PAN_A, PAN_B)
    approved: list[Authorized] = []
    lock = threading.Lock()

    def respond(outcome: Outcome) -> bytes:
        if isinstance(outcome, Authorized):
            with lock:
                approved.append(outcome)
        return b"ok"

    def authorize(i: int) -> bytes:
        return ledger.authorize(
            pan=pans[i % 2],
            pan_expiry=EXPIRY,
            amount=250 + i,
            currency=EUR,
            merchant_id=MERCHANT,
            xid=f"xid-{i}".encode(),
            pi_digest=b"pi",
            rrpid=f"auth-{i}".encode(),
            request_digest=b"d",
            respond=respond,
            capture_now=i % 3 == 0,
        )

    race(60, authorize)

    def settle(i: int) -> bytes:
        auth = approved[i]
        if auth.capture is None:
            return ledger.capture(
                merchant_id=MERCHANT,
                items=[CaptureItem(auth.hold_id, auth.amount // 2, EUR)],
                rrpid=f"cap-{i}".encode(),
                request_digest=b"d",
                respond=respond,
            )
        return ledger.authorize(  # a fresh authorization racing the settlements
            pan=PAN_A,
            pan_expiry=EXPIRY,
            amount=300,
            currency=EUR,
            merchant_id=MERCHANT,
            xid=f"late-xid-{i}".encode(),
            pi_digest=b"pi",
            rrpid=f"late-{i}".encode(),
            request_digest=b"d",
            respond=respond,
        )

    results = race(len(approved), settle)
    assert all(isinstance(r, bytes) for r in results), results
    # No deadlock was broken (and in READ COMMITTED no serialization failure can occur).
    assert sum(c.retries for c in commits) == 0
    for pan in pans:
        card = ledger.find_card_account(pan)
        assert card.posted_debt + card.pending <= card.credit_limit, card
        assert card.available >= 0
    ledger.check_balanced()
