"""``outcome``'s wait before a request whose answers did not verify is asked again: it
doubles at each such answer up to its cap, and nothing else makes a request wait."""

from __future__ import annotations

import pytest

from clients.errors import StoreError, TransportError
from clients.merchant import outcome
from hsm.errors import TransientBackendError
from setcore.errors import ErrorCode, PeerError, ProtocolError
from setcore.pki.bci import RevocationUnavailable

NOW_MS = 1_700_000_000_000
SECOND_MS = 1000


def test_each_answer_that_does_not_verify_doubles_the_wait_up_to_the_cap(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(outcome, "now_ms", lambda: NOW_MS)
    did_not_verify = ProtocolError(ErrorCode.ERROR_CODE_SIGNATURE_FAILURE, "not the gateway's")
    unverified, waits = 0, []
    for _ in range(10):
        change = outcome.next_try(unverified, did_not_verify)
        assert change is not None
        unverified, at_ms = change
        waits.append((at_ms - NOW_MS) // SECOND_MS)
    assert unverified == 10
    assert waits == [30, 60, 120, 240, 480, 960, 1920, 3600, 3600, 3600]
    assert outcome.UNVERIFIED_MAX_WAIT_MS == 3600 * SECOND_MS
    # However many there were: no wait past the cap, no number too large to store.
    assert outcome.next_try(10**6, did_not_verify) == (10**6 + 1, NOW_MS + 3600 * SECOND_MS)


@pytest.mark.parametrize(
    "error",
    [
        TransportError("gateway", "UNAVAILABLE"),
        PeerError(ErrorCode.ERROR_CODE_UNSPECIFIED_FAILURE),
        RevocationUnavailable("the BCI is stale"),
        StoreError("merchant database write failed: disk I/O error"),
        TransientBackendError("the token is gone"),
    ],
    ids=["no answer", "unspecified failure", "revocation data", "store", "key backend"],
)
def test_anything_else_keeps_the_fast_retries(error: Exception) -> None:
    """No answer, a failure of the gateway's or of the merchant's own: nothing to wait
    for; and a request that had answers that did not verify is back to the fast pace."""
    assert outcome.next_try(0, error) is None
    assert outcome.next_try(3, error) == (0, 0)
