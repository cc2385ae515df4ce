"""The gateway's key-exchange keys, and which one opens an envelope.

After a renewal (``gateway.gateway_renewal``) the bank hands out its newest key-exchange
certificate, but wallets and merchants still hold the one before: a PI the wallet sealed
before the restart, a merchant's cached PCertRes. Each older certificate keeps opening
what is sealed to it until it ends or is revoked; the envelope's recipient thumbprint
(``setcore.envelope``, clear in every Sealed) picks the key.

An envelope sealed to a thumbprint the bank does not hold, or to an older certificate
that has ended or been revoked since, is opened with the bank's own (newest) credentials
as before any renewal, so it gets the refusal it always got (WRONG_RECIPIENT). The newest
certificate itself is not checked here, as it was not before renewals existed. Only the
older keys are held here: the newest are the bank's ``credentials``, never a copy that
could drift from them.

Errors: none of its own; an envelope that does not parse is left for setcore's opener
to refuse.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime

from hsm.base import KeyHandle
from setcore.credentials import Credentials
from setcore.encoding import parse_strict
from setcore.errors import ProtocolError
from setcore.pki.roles import PAYMENT_GATEWAY, CertificateUsage
from setcore.pki.truststore import TrustStore
from setpay.v1 import crypto_pb2, purchase_pb2

log = logging.getLogger("setpay.gateway")

#: Reads the recipient thumbprint an envelope names, or b"" if it does not parse.
Peek = Callable[[bytes], bytes]


def _peek(read: Callable[[bytes], bytes]) -> Peek:
    def peek(envelope: bytes) -> bytes:
        try:
            return read(envelope)
        except ProtocolError:
            return b""

    return peek


#: EncB requests (AuthReq, AuthRevReq, CapReq, CapRevReq, CredReq, CredRevReq).
baggage_recipient = _peek(
    lambda raw: parse_strict(crypto_pb2.SealedWithBaggage, raw).sealed.recipient_cert_thumb
)
#: Enc requests (BatchAdminReq).
sealed_recipient = _peek(
    lambda raw: parse_strict(crypto_pb2.Sealed, raw, own_content_type=False).recipient_cert_thumb
)
#: The cardholder's PI, forwarded inside AuthReq.
pi_recipient = _peek(
    lambda raw: parse_strict(purchase_pb2.PIDualSigned, raw).ex_pi.recipient_cert_thumb
)


@dataclass(frozen=True)
class OpeningKeys:
    """The bank's signing credentials with each older key-exchange key and certificate,
    by that certificate's thumbprint (the newest is not among them)."""

    older: Sequence[Credentials] = ()
    _by_thumb: dict[bytes, Credentials] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        by_thumb = {c.key_exchange_thumb: c for c in self.older if c.key_exchange_thumb}
        object.__setattr__(self, "_by_thumb", by_thumb)

    @classmethod
    def with_older(
        cls, newest: Credentials, older: Sequence[tuple[KeyHandle, bytes]]
    ) -> OpeningKeys:
        """For each (key handle, certificate) of ``older`` but ``newest``'s own, the
        signing credentials of ``newest`` opening with that key."""
        return cls(
            tuple(
                replace(newest, key_exchange_key=key, key_exchange_cert=der)
                for key, der in older
                if der != newest.key_exchange_cert
            )
        )

    def for_recipient(
        self, thumb: bytes, trust: TrustStore, at: datetime | None = None
    ) -> Credentials | None:
        """The credentials whose key-exchange certificate is ``thumb``, if it is an older
        one still valid at ``at`` (unexpired, unrevoked); else None: the newest."""
        older = self._by_thumb.get(thumb)
        if older is None:
            return None
        assert older.key_exchange_cert is not None  # only such are indexed
        try:
            # Cached by the trust store, and dropped from its cache when revocation data
            # changes: a revocation reaches this check as it reaches any other.
            trust.verify_chain(
                older.key_exchange_cert, older.chain, PAYMENT_GATEWAY,
                CertificateUsage.KEY_EXCHANGE, at,
            )  # fmt: skip
        except ProtocolError as exc:
            log.info(
                "envelope sealed to the gateway's older key-exchange certificate %s, which"
                " is no longer valid (%s): refused as sealed to another",
                thumb.hex()[:8], exc.reason,
            )  # fmt: skip
            return None
        return older

    def opener(
        self, envelope: bytes, peek: Peek, trust: TrustStore, at: datetime | None = None
    ) -> Credentials | None:
        """The credentials to open ``envelope`` with (``peek`` reads whom it is sealed
        to); None, the newest, without parsing when no older key is held."""
        if not self._by_thumb:
            return None
        return self.for_recipient(peek(envelope), trust, at)
