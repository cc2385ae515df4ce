"""The gateway the merchant takes answers from, kept in its database across starts.

SET-PROTOCOL.md 7.4: the merchant's gateway is the one its first verified PCertRes named
(``setcore.signers.GatewayIdentity``: the subject name and brand of its signature
certificate). Kept in memory only, each start would take whichever gateway answered its
first PCertReq, and judge the requests stored before against that one. So the first
identity is written here, once: every later start, and every command beside a serving
merchant, is held to it (``gateway_client``), until an operator clears it deliberately
(``setpay merchant forget-gateway``).

Errors: ``sqlite3`` failures become ``StoreError``; a stored certificate that does not
parse is a damaged file, ``StoreError`` too.
"""

from __future__ import annotations

from dataclasses import dataclass

from clients.errors import StoreError
from clients.merchant.database import Database, now_ms
from setcore.errors import SetcoreError
from setcore.pki.certificate import load_certificate
from setcore.signers import GatewayIdentity

_SELECT_PIN = "SELECT certificate, brand_id, pinned_ms FROM gateway_pin"


@dataclass(frozen=True)
class GatewayPin:
    """The merchant's gateway, and when it was first taken as such."""

    identity: GatewayIdentity
    pinned_ms: int


def _pin_from_row(certificate: bytes, brand_id: str, pinned_ms: int) -> GatewayPin:
    try:
        subject = load_certificate(certificate).subject
    except SetcoreError:
        raise StoreError("merchant database damaged: the gateway pin's certificate") from None
    return GatewayPin(GatewayIdentity(subject, brand_id), pinned_ms)


class GatewayPinStore(Database):
    """The gateway pin (``MerchantStore`` is this and more)."""

    def gateway_pin(self) -> GatewayPin | None:
        """The merchant's gateway, or None before its first PCertRes (or once forgotten)."""
        row = self._read(lambda c: c.execute(_SELECT_PIN).fetchone())
        return None if row is None else _pin_from_row(*row)

    def pin_gateway(self, certificate: bytes, brand_id: str) -> GatewayPin:
        """Take the gateway whose verified signature certificate (DER) is ``certificate``
        as the merchant's, unless one is already: the pin as it stands afterwards (the
        first one written wins, in another process too)."""
        with self._write() as conn:
            conn.execute(
                "INSERT OR IGNORE INTO gateway_pin (one, certificate, brand_id, pinned_ms) "
                "VALUES (1, ?, ?, ?)",
                (certificate, brand_id, now_ms()),
            )
            row = conn.execute(_SELECT_PIN).fetchone()
        return _pin_from_row(*row)

    def forget_gateway(self) -> GatewayPin | None:
        """Clear the pin: the next start takes the gateway its first PCertRes names. The
        pin cleared, if there was one."""
        with self._write() as conn:
            row = conn.execute(_SELECT_PIN).fetchone()
            conn.execute("DELETE FROM gateway_pin")
        return None if row is None else _pin_from_row(*row)
