"""``Ledger``'s settlement batch admin: open, close and purge a batch, and read one.

Opening, closing and purging are idempotent on the RRPID as ``money`` says; the reads
are not (they change nothing). The rules they run are ``batches``'.
"""

from __future__ import annotations

from functools import partial

from gateway.ledger import batches
from gateway.ledger.batches import BatchPage, BatchReport
from gateway.ledger.limits import check_optional_text, check_page, check_text
from gateway.ledger.money import MoneyOperations
from gateway.ledger.outcomes import BatchSummary, Responder


class BatchOperations(MoneyOperations):
    """``Ledger``'s batch admin and batch reads."""

    def open_batch(
        self,
        merchant_id: str,
        *,
        rrpid: bytes,
        request_digest: bytes,
        respond: Responder,
        checked_at_ms: int | None = None,
    ) -> bytes:
        """Open a batch for the merchant (BatchOutcome, or Declined BATCH_ALREADY_OPEN)."""
        check_text("merchant_id", merchant_id)
        now = self._clock()
        return self._once(
            rrpid=rrpid,
            request_digest=request_digest,
            now_ms=now,
            respond=respond,
            checked_at_ms=checked_at_ms,
            decide=partial(batches.open_for_merchant, merchant_id=merchant_id, now_ms=now),
        )

    def close_batch(
        self,
        merchant_id: str,
        batch_id: str | None = None,
        *,
        rrpid: bytes,
        request_digest: bytes,
        respond: Responder,
        checked_at_ms: int | None = None,
    ) -> bytes:
        """Close the named batch, or the open one (BatchOutcome or Declined)."""
        check_text("merchant_id", merchant_id)
        check_optional_text("batch_id", batch_id)
        now = self._clock()
        return self._once(
            rrpid=rrpid,
            request_digest=request_digest,
            now_ms=now,
            respond=respond,
            checked_at_ms=checked_at_ms,
            decide=partial(
                batches.close_for_merchant, merchant_id=merchant_id, batch_id=batch_id, now_ms=now
            ),
        )

    def purge_batch(
        self,
        merchant_id: str,
        batch_id: str,
        *,
        rrpid: bytes,
        request_digest: bytes,
        respond: Responder,
        checked_at_ms: int | None = None,
    ) -> bytes:
        """Retire a closed batch's detail (BatchOutcome or Declined)."""
        check_text("merchant_id", merchant_id)
        check_text("batch_id", batch_id)
        now = self._clock()
        return self._once(
            rrpid=rrpid,
            request_digest=request_digest,
            now_ms=now,
            respond=respond,
            checked_at_ms=checked_at_ms,
            decide=partial(batches.purge_for_merchant, merchant_id=merchant_id, batch_id=batch_id),
        )

    def batch_summary(self, merchant_id: str, batch_id: str | None = None) -> BatchSummary:
        """A batch's totals per kind (the open batch by default); raise UnknownBatch."""
        check_text("merchant_id", merchant_id)
        check_optional_text("batch_id", batch_id)
        return self._store.read(
            partial(batches.summary_for_merchant, merchant_id=merchant_id, batch_id=batch_id)
        )

    def batch_report(
        self,
        merchant_id: str,
        batch_id: str | None = None,
        *,
        starting_point: int = 0,
        max_items: int = 100,
    ) -> BatchReport:
        """A batch's totals and one page of its transactions, from one snapshot: a posting
        committed meanwhile is in both or in neither. Raise UnknownBatch."""
        check_text("merchant_id", merchant_id)
        check_optional_text("batch_id", batch_id)
        check_page(starting_point, max_items)
        return self._store.read(
            partial(
                batches.report_for_merchant,
                merchant_id=merchant_id,
                batch_id=batch_id,
                starting_point=starting_point,
                max_items=max_items,
            )
        )

    def batch_details(
        self, merchant_id: str, batch_id: str, *, starting_point: int = 0, max_items: int = 100
    ) -> BatchPage:
        """One page of a batch's transactions after ``starting_point`` (0: from the start)."""
        check_text("merchant_id", merchant_id)
        check_text("batch_id", batch_id)
        check_page(starting_point, max_items)
        return self._store.read(
            partial(
                batches.details_for_merchant,
                merchant_id=merchant_id,
                batch_id=batch_id,
                starting_point=starting_point,
                max_items=max_items,
            )
        )
