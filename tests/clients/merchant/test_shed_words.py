"""Every server of ours (the bank's and the merchant's) sheds a call with the words the
clients' transport reads as "refused unread, send it again": its own refusal carries
RetryInfo, but gRPC's backstop above it does not, and says it with gRPC's words. Ours are
that one string, defined once (``setcore.admission``), which the transport matches."""

from __future__ import annotations

from clients import transport
from setcore.admission import GRPC_CONCURRENCY_REFUSAL, SHED_DETAILS


def test_our_servers_shed_with_the_words_their_clients_retry() -> None:
    assert SHED_DETAILS == GRPC_CONCURRENCY_REFUSAL
    assert transport.GRPC_CONCURRENCY_REFUSAL is GRPC_CONCURRENCY_REFUSAL
