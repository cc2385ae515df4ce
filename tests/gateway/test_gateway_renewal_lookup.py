"""Which envelopes make a gateway process read ca.db for its renewed certificates.

Only an envelope sealed to a thumbprint the process holds no key for, and at most once
every ``ISSUED_RECHECK_SECONDS`` (``gateway.opening_keys``); the newest and the older
certificates held are answered without it. The served cases are
``test_gateway_renewal_hosts``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest

from gateway.opening_keys import (
    ISSUED_RECHECK_SECONDS,
    IssuedKeyExchange,
    OpeningKeys,
    RecipientNotLoaded,
    baggage_recipient,
)
from setcore.pki.truststore import TrustStore


@dataclass
class Reads:
    """ca.db's gateway certificates as a double, counting its reads."""

    ends: Mapping[bytes, int]
    count: int = 0

    def __call__(self) -> Mapping[bytes, int]:
        self.count += 1
        return self.ends


@dataclass(frozen=True)
class Held:
    """What ``OpeningKeys`` reads of older credentials."""

    key_exchange_thumb: bytes
    key_exchange_cert: bytes = b"certificate"
    chain: tuple[bytes, ...] = ()


NEWEST, OLDER, RENEWED, STRANGER = (bytes([n]) * 32 for n in (1, 2, 3, 4))
FOREVER = int(datetime(2999, 1, 1, tzinfo=UTC).timestamp() * 1000)


class Trusting(TrustStore):
    """Every older certificate still valid (the trust store is not what is tested)."""

    def __init__(self) -> None:
        pass

    def verify_chain(self, *args: object, **kwargs: object) -> None:  # type: ignore[override]
        return None


def test_ca_db_is_read_only_for_a_thumbprint_not_held_and_at_most_once_a_second() -> None:
    reads = Reads({NEWEST: FOREVER, OLDER: FOREVER, RENEWED: FOREVER})
    now = [100.0]
    issued = IssuedKeyExchange(reads, clock=lambda: now[0])
    keys = OpeningKeys((Held(OLDER),), issued)  # type: ignore[arg-type]
    trust = Trusting()

    def opener(thumb: bytes) -> object:
        return keys.opener(b"envelope", lambda _: thumb, trust, newest=NEWEST)

    # The usual cases read nothing.
    assert opener(NEWEST) is None
    assert opener(OLDER) == Held(OLDER)
    assert reads.count == 0
    with pytest.raises(RecipientNotLoaded):
        opener(RENEWED)
    for _ in range(10):
        assert opener(STRANGER) is None  # left to setcore's opener: WRONG_RECIPIENT
    assert reads.count == 1
    now[0] += ISSUED_RECHECK_SECONDS
    assert opener(STRANGER) is None
    assert reads.count == 2


def test_nothing_is_parsed_without_older_keys_or_ca_db() -> None:
    def peek(envelope: bytes) -> bytes:
        raise AssertionError("parsed")

    assert OpeningKeys().opener(b"envelope", peek, Trusting(), newest=NEWEST) is None
    assert baggage_recipient(b"not an envelope") == b""
