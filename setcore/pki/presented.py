"""A party's own certificates, judged at start as its peers judge them.

A party whose certificate no peer accepts (one that does not chain to the brand root,
has ended, is revoked, or is of another certificate type or usage than its role) would
start and serve, and every peer would refuse it, message by message, while its operator
learns nothing. So a bank and a merchant validate each certificate they present once, as
they start serving, as ``TrustStore.verify_chain`` would, with the type and usage their peers
require (``verify_presented``), and refuse to start on one that fails, naming the
certificate, the peer's reason and what to do. Never per request.

Revocation is judged with the data the party's own trust store holds. A party that holds
none current yet (``RevocationUnavailable``: none at all, a BCI past its window, a CRL
past its nextUpdate) is judged with what it holds however stale, as a peer that does not
require current data judges: a serial it lists is refused, as a peer holding the same
data refuses it, and the rest is judged without it. A start is never refused for want
of current revocation data alone, which the party fetches later as it always has.

The judgement leaves the trust store as it was (``TrustStore.judge_chain``): it is no
peer's traffic, so it neither counts on the trust counters (a worker's metrics start at
nought) nor fills the cache.

Errors: ``ProtocolError``, the refusal a peer would send (its code and text); the caller
names the certificate and what to do.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from setcore.pki.roles import CertificateUsage
from setcore.pki.truststore import TrustStore


@dataclass(frozen=True)
class Presented:
    """A certificate a party presents, with what its peers require of it."""

    #: How its operator finds it: a file, or a key's label and version.
    name: str
    der: bytes
    #: The CA certificates between it and the brand root, as the party sends them.
    chain: tuple[bytes, ...]
    certificate_type: int
    usage: CertificateUsage


def verify_presented(trust: TrustStore, presented: Presented, at: datetime | None = None) -> None:
    """Nothing when a peer pinning ``trust``'s root, and holding its revocation data,
    accepts ``presented`` at ``at`` (default: now); else the ``ProtocolError`` it refuses
    it with. ``trust`` is left as it was: nothing counted or cached."""
    # Never refused for want of current data: judged with what is held, however stale.
    trust.judge_chain(presented.der, presented.chain, presented.certificate_type,
                      presented.usage, at)  # fmt: skip
