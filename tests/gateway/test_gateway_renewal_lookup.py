"""Which envelopes make a gateway process read ca.db for its renewed certificates.

Only an envelope sealed to a thumbprint the process holds no key for, and at most once
every ``ISSUED_RECHECK_SECONDS`` (``gateway.opening_keys``), whether ca.db could be read
or not; the newest and the older certificates held are answered without it. The served
cases are ``test_gateway_renewal_hosts``; that the bank parses each envelope once is
``test_parse_once``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import cast

import pytest

from gateway.ca.errors import CaUnavailable, StoreError
from gateway.opening_keys import (
    ISSUED_RECHECK_SECONDS,
    IssuedKeyExchange,
    OpeningKeys,
    RecipientNotLoaded,
)
from setcore.credentials import Credentials
from setcore.pki.truststore import TrustStore


@dataclass
class Reads:
    """ca.db's gateway certificates as a double, counting its reads; ``failing`` makes
    each read fail as an unreadable ca.db does."""

    ends: Mapping[bytes, int]
    count: int = 0
    failing: bool = False

    def __call__(self) -> Mapping[bytes, int]:
        self.count += 1
        if self.failing:
            raise StoreError("ca.db is locked")
        return self.ends


@dataclass(frozen=True)
class Held:
    """What ``OpeningKeys`` reads of the bank's credentials, newest or older."""

    key_exchange_thumb: bytes
    key_exchange_cert: bytes = b"certificate"
    chain: tuple[bytes, ...] = ()

    def require_key_exchange(self) -> tuple[str, bytes]:
        return f"key of {self.key_exchange_thumb.hex()[:4]}", self.key_exchange_thumb


NEWEST, OLDER, RENEWED, STRANGER = (bytes([n]) * 32 for n in (1, 2, 3, 4))
FOREVER = int(datetime(2999, 1, 1, tzinfo=UTC).timestamp() * 1000)


class Trusting(TrustStore):
    """Every older certificate still valid (the trust store is not what is tested)."""

    def __init__(self) -> None:
        pass

    def verify_chain(self, *args: object, **kwargs: object) -> None:  # type: ignore[override]
        return None


def held(thumb: bytes) -> Credentials:
    """``Held`` where ``OpeningKeys`` takes credentials."""
    return cast(Credentials, Held(thumb))


def mine(thumb: bytes) -> tuple[object, bytes]:
    """The key the credentials of ``thumb`` open with, and their thumbprint."""
    return Held(thumb).require_key_exchange()


def _chooser(keys: OpeningKeys) -> Callable[[bytes], tuple[object, bytes]]:
    """The chooser the bank gives setcore's openers: thumbprint -> (key, its thumbprint)."""

    def choose(thumb: bytes) -> tuple[object, bytes]:
        return keys.key_exchange_for(held(NEWEST), Trusting(), None, thumb)

    return choose


def test_ca_db_is_read_only_for_a_thumbprint_not_held_and_at_most_once_a_second() -> None:
    reads = Reads({NEWEST: FOREVER, OLDER: FOREVER, RENEWED: FOREVER})
    now = [100.0]
    issued = IssuedKeyExchange(reads, clock=lambda: now[0])
    choose = _chooser(OpeningKeys((held(OLDER),), issued))

    # The usual cases read nothing; an empty thumbprint is never a certificate's.
    assert choose(NEWEST) == mine(NEWEST)
    assert choose(OLDER) == mine(OLDER)
    assert choose(b"") == mine(NEWEST)
    assert reads.count == 0
    with pytest.raises(RecipientNotLoaded):
        choose(RENEWED)
    for _ in range(10):
        # The newest key: setcore's opener refuses it as WRONG_RECIPIENT.
        assert choose(STRANGER) == mine(NEWEST)
    assert reads.count == 1
    now[0] += ISSUED_RECHECK_SECONDS
    choose(STRANGER)
    assert reads.count == 2


def test_an_unreadable_ca_db_is_tried_at_most_once_a_second_too() -> None:
    """Before, a failed read left the time of the last read as it was: during an outage
    every envelope sealed to an unknown thumbprint tried ca.db again, each under the lock
    the others wait on."""
    reads = Reads({RENEWED: FOREVER}, failing=True)
    now = [100.0]
    issued = IssuedKeyExchange(reads, clock=lambda: now[0])
    for _ in range(10):
        # Unavailable, never refused: whether it is the bank's cannot be told.
        with pytest.raises(CaUnavailable) as raised:
            issued.live(RENEWED)
        assert isinstance(raised.value, StoreError) and "locked" in str(raised.value)
    assert reads.count == 1
    reads.failing = False
    now[0] += ISSUED_RECHECK_SECONDS
    assert issued.live(RENEWED)
    assert not issued.live(STRANGER)
    assert reads.count == 2
