"""The bank's admission sheds a call with the words the clients' transport (the merchant's
calls to the gateway and the CA among them) reads as "refused unread, send it again":
two copies of one string (clients may not import gateway), held equal here."""

from __future__ import annotations

from clients.transport import GRPC_CONCURRENCY_REFUSAL
from setcore.admission import SHED_DETAILS


def test_the_bank_sheds_with_the_words_its_clients_retry() -> None:
    assert SHED_DETAILS == GRPC_CONCURRENCY_REFUSAL
