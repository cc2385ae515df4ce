"""The gateway's key-exchange keys, and which one opens an envelope.

After a renewal (``gateway.gateway_renewal``) the bank hands out its newest key-exchange
certificate, but wallets and merchants still hold the one before: a PI the wallet sealed
before the restart, a merchant's cached PCertRes. Each older certificate keeps opening
what is sealed to it until it ends or is revoked; the envelope's recipient thumbprint
(``setcore.envelope``, clear in every Sealed) picks the key.

An envelope sealed to a key-exchange certificate this bank issued itself and this
process does not hold, still unexpired and unrevoked in ``ca.db``, was sealed to keys
renewed since this process started: by a renewal on this host, or on another host
sharing the bank's state, whose restarted processes hand the new certificate out while
this one still runs on the old keys. Refusing it would be final (a merchant records a
WRONG_RECIPIENT as the gateway's answer, and the purchase fails), so it is
``RecipientNotLoaded``, answered UNAVAILABLE: the merchant sends the same bytes again,
and they reach a process on the new keys, or this one once restarted. ``ca.db`` is read
only for such a thumbprint, never for the newest or an older one held here, and at most
once every ``ISSUED_RECHECK_SECONDS``, whether the read succeeded or failed.

An envelope sealed to a thumbprint the bank never issued, or to a certificate that has
ended or been revoked since, is opened with the bank's own (newest) credentials as
before any renewal, so it gets the refusal it always got (WRONG_RECIPIENT). So is one
sealed to an older certificate of the bank, recorded in ca.db before the newest (in the
order ca.db recorded them, never by the recording hosts' clocks), that this process does
not hold (its key deleted, ``setpay keys delete``, or its kept file removed): no
process of the bank opens it, now or once restarted, and answered
UNAVAILABLE it kept the merchant sending it again until the certificate ended, a year.
The newest certificate itself is not checked here, as it was not before renewals
existed. The keys of older certificates that had ended when the process started are held
too (``OpeningKeys.ended``), for one thing only: the answer to a decision left unanswered
(``OpeningKeys.decided_key_exchange``, ``gateway.servicer``); nothing chosen here opens
with them. Only the older keys are held here: the newest are the bank's ``credentials``,
never a copy that could drift from them.

Nothing here parses an envelope: setcore's opener reads the thumbprint as it
opens it, and asks its credentials for the key
(``setcore.credentials.Credentials.key_exchange_for``, which the bank answers with
``OpeningKeys.key_exchange_for``), so each message is parsed once.

Errors: ``RecipientNotLoaded`` (an ``AnswerUnavailable``); ``ca.db``'s own
(``gateway.ca.errors``, a ``CaUnavailable`` when it cannot be read: whether the
certificate is the bank's cannot be told, so it is not refused either; raised again,
unread, until the next read is due).
"""

from __future__ import annotations

import copy
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

from gateway.answers import AnswerUnavailable
from gateway.ca.store import CaStore
from gateway.cpu_turn import holding
from hsm.base import KeyHandle
from setcore.credentials import Credentials
from setcore.errors import ProtocolError
from setcore.pki.certificate import common_name_of, load_certificate
from setcore.pki.roles import PAYMENT_GATEWAY, CertificateUsage
from setcore.pki.truststore import TrustStore

log = logging.getLogger("setpay.gateway")

# How long one reading of ca.db's gateway certificates answers for thumbprints this
# process holds no key for. Such envelopes are rare (a renewal not yet restarted here, a
# merchant's mistake), and one read a second per process bounds what a stream of them
# costs, also while ca.db cannot be read (each try may wait out its busy timeout, under
# the lock every such envelope waits on); a certificate recorded since is seen a second
# later at most, long before a process restarted on it hands it out.
ISSUED_RECHECK_SECONDS = 1.0


class RecipientNotLoaded(AnswerUnavailable):
    """An envelope sealed to a live key-exchange certificate of this bank that this
    process does not hold (renewed since it started): answered UNAVAILABLE, never a
    refusal, so that the merchant sends it again to a process that holds it."""


#: Reads ca.db: each unrevoked key-exchange certificate of the bank's gateway, by
#: thumbprint, with its end (Unix ms).
IssuedReader = Callable[[], Mapping[bytes, int]]


def ca_db_reader(ca_db: Path, gateway: Credentials, issuer_thumb: bytes) -> IssuedReader:
    """Read ``ca_db`` for the gateway certificates ``issuer_thumb`` (the Payment Gateway
    CA) issued under the name of ``gateway`` (the bank's own credentials), recorded after
    the key-exchange certificate ``gateway`` hands out when ca.db records it (else every
    one, which the first read logs): only those can be a renewal's since this process
    started. One recorded before it and not held here (its key deleted, its kept file
    removed) no process of the bank will ever open: its envelopes get the refusal, not
    UNAVAILABLE for good.

    Recorded after, in ca.db's insertion order (``recorded_after``), never by the time
    each is stamped with: that is the renewing host's clock, and a renewal on a host whose
    clock is behind (or after one on a host whose clock was ahead) is stamped before the
    certificate this process hands out, while an older certificate can be stamped after
    it. By the stamps, the first got the refusal, final for the merchant, where it must
    be answered UNAVAILABLE."""
    subject = common_name_of(load_certificate(gateway.signature_cert))
    newest_thumb = gateway.key_exchange_thumb or b""
    first_read = [True]

    def read() -> Mapping[bytes, int]:
        store = CaStore.open_readonly(ca_db)
        try:
            with store.read() as tx:
                if first_read[0]:
                    _warn_unrecorded(newest_thumb, tx.certificate(newest_thumb) is None)
                    first_read[0] = False
                live: dict[bytes, int] = {}
                for cert, revoked_ms in tx.recorded_after(newest_thumb, subject=subject):
                    if (
                        revoked_ms is None
                        and cert.issuer_thumb == issuer_thumb
                        and cert.certificate_type == PAYMENT_GATEWAY
                        and cert.usage == CertificateUsage.KEY_EXCHANGE.value
                    ):
                        live[cert.thumb] = cert.not_after_ms
                return live
        finally:
            store.close()

    return read


def _warn_unrecorded(newest_thumb: bytes, unrecorded: bool) -> None:
    """Log, at a reader's first read, that ca.db does not record the key-exchange
    certificate this process hands out (``newest_thumb``): ca.db restored from a backup
    made before the last renewal, say. ``recorded_after`` then counts every certificate
    as recorded after it, so an envelope sealed to an older one this process does not
    hold is answered UNAVAILABLE, not refused, for as long as ca.db does not record it."""
    if unrecorded:
        log.warning(
            "ca.db does not record the gateway's key-exchange certificate %s that this"
            " process hands out (ca.db restored from a backup older than the last renewal?):"
            " an envelope sealed to an older key-exchange certificate of the gateway that"
            " this process does not hold is answered UNAVAILABLE, not refused, until ca.db"
            " records it",
            newest_thumb.hex()[:8],
        )


class IssuedKeyExchange:
    """The bank's live key-exchange certificates as ca.db records them, read again at most
    every ``ISSUED_RECHECK_SECONDS``, and only when asked.

    A read that fails is not tried again before then either: until it is, ``live``
    raises a copy of that failure (the certificate's standing cannot be told)."""

    def __init__(self, read: IssuedReader, clock: Callable[[], float] = time.monotonic) -> None:
        self._read = read
        self._clock = clock
        self._lock = threading.Lock()
        self._ends: Mapping[bytes, int] = {}
        self._failed: Exception | None = None
        self._read_at: float | None = None

    def live(self, thumb: bytes, at: datetime | None = None) -> bool:
        """True when ``thumb`` is one of them, unrevoked and unexpired at ``at``."""
        # Waited for aside: the holder may be reading ca.db, whose store waits so too.
        with holding(self._lock):
            now = self._clock()
            if self._read_at is None or now - self._read_at >= ISSUED_RECHECK_SECONDS:
                self._read_at = now
                try:
                    self._ends, self._failed = self._read(), None
                except Exception as exc:
                    self._ends, self._failed = {}, exc
                    raise
            failed = self._failed
            ends = self._ends.get(thumb)
        if failed is not None:
            # A copy, never the same object raised again: each raise would add its frames
            # to the one traceback, and threads would raise it at once.
            raise copy.copy(failed) from failed
        moment = datetime.now(UTC) if at is None else at
        return ends is not None and ends >= int(moment.timestamp() * 1000)


@dataclass(frozen=True)
class OpeningKeys:
    """The bank's signing credentials with each older key-exchange key and certificate,
    by that certificate's thumbprint (the newest is not among them), and the bank's live
    key-exchange certificates in ca.db for the thumbprints none of them is.

    ``ended``: the same for older certificates that had ended when the process started
    (``gateway.older_key_exchange``). No envelope is opened with them as it is chosen
    here (``for_recipient`` and ``key_exchange_for`` never read them: a fresh envelope
    sealed to one gets the refusal it got before they were loaded), only the answer to a
    decision left unanswered (``decided_key_exchange``)."""

    older: Sequence[Credentials] = ()
    #: None: an envelope sealed to a thumbprint not held here is refused unread.
    issued: IssuedKeyExchange | None = None
    ended: Sequence[Credentials] = ()
    _by_thumb: dict[bytes, Credentials] = field(init=False, repr=False)
    #: Each ended one, by thumbprint.
    _ended_by_thumb: dict[bytes, Credentials] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        by_thumb = {c.key_exchange_thumb: c for c in self.older if c.key_exchange_thumb}
        object.__setattr__(self, "_by_thumb", by_thumb)
        ended = {c.key_exchange_thumb: c for c in self.ended if c.key_exchange_thumb}
        object.__setattr__(self, "_ended_by_thumb", ended)

    @classmethod
    def with_older(
        cls,
        newest: Credentials,
        older: Sequence[tuple[KeyHandle, bytes]],
        issued: IssuedKeyExchange | None = None,
        ended: Sequence[tuple[KeyHandle, bytes]] = (),
    ) -> OpeningKeys:
        """For each (key handle, certificate) of ``older`` but ``newest``'s own, the
        signing credentials of ``newest`` opening with that key; so too for ``ended``."""

        def opening(keys: Sequence[tuple[KeyHandle, bytes]]) -> tuple[Credentials, ...]:
            return tuple(
                replace(newest, key_exchange_key=key, key_exchange_cert=der)
                for key, der in keys
                if der != newest.key_exchange_cert
            )

        return cls(opening(older), issued, opening(ended))

    def decided_key_exchange(self, thumb: bytes) -> tuple[KeyHandle, bytes] | None:
        """The key-exchange key and certificate thumbprint that open an envelope sealed to
        ``thumb`` which the ledger decided and whose answer was never stored
        (``gateway.servicer``): an older certificate's that this process holds, revoked or
        ended since or not. Else None: chosen as a fresh envelope is
        (``key_exchange_for``).

        Not bounded by the moment the request was checked: only bytes whose RRPID and
        digest the ledger matched to a decision come here (the path of a fresh request
        never does), and a bank opens with its newest certificate unchecked while it runs
        (its own certificates are judged at start), so a decision may have been made on
        bytes sealed to one after its end: bounded by the end, the retry was answered
        UNAVAILABLE for good once a renewal and a restart had made it an older one."""
        older = self._by_thumb.get(thumb) or self._ended_by_thumb.get(thumb)
        if older is None or older.key_exchange_key is None:
            return None
        return older.require_key_exchange()

    def for_recipient(
        self, thumb: bytes, trust: TrustStore, at: datetime | None = None
    ) -> Credentials | None:
        """The credentials whose key-exchange certificate is ``thumb``, if it is an older
        one still valid at ``at`` (unexpired, unrevoked); else None: the newest.

        ``RecipientNotLoaded`` if no key here opens it but ``thumb`` is a live
        key-exchange certificate of the bank (``issued``)."""
        older = self._by_thumb.get(thumb)
        if older is None:
            if self.issued is not None and self.issued.live(thumb, at):
                raise RecipientNotLoaded(
                    f"envelope sealed to the gateway's key-exchange certificate"
                    f" {thumb.hex()[:8]}, which the bank issued and this process does not"
                    " hold (renewed since it started?): answered UNAVAILABLE until it is"
                    " restarted on the renewed keys"
                )
            return None
        if older.key_exchange_cert is None:
            return None  # only credentials with a key-exchange certificate are indexed
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

    def key_exchange_for(
        self, newest: Credentials, trust: TrustStore, at: datetime | None, thumb: bytes
    ) -> tuple[KeyHandle, bytes]:
        """The key-exchange key and certificate thumbprint that open an envelope sealed to
        ``thumb``: an older one's (``for_recipient``), else ``newest``'s own (refused by
        the opener as sealed to another, if it is not ``thumb`` either). Reads nothing for
        the newest thumbprint, nor for an empty one (never a certificate's)."""
        if thumb and thumb != newest.key_exchange_thumb:
            older = self.for_recipient(thumb, trust, at)
            if older is not None:
                return older.require_key_exchange()
        return newest.require_key_exchange()
