"""The error tree of the merchant and wallet clients.

    ClientError
    ├── ConfigError          configuration missing, malformed or unsafe (names the setting)
    │   └── SignerGone       the signature key or certificate an order's PI names is no
    │                        longer usable: no AuthReq the gateway would take can be built
    ├── TransportError       a call to a peer (gateway, merchant, CA) failed at the gRPC
    │   │                    level, after the bounded retries; carries the status name
    │   └── NotRead          every attempt shed unread, by the peer's unsigned word
    ├── OutcomeUnknown       the gateway's answer to a stored request never came, could
    │   │                    not be verified, or could not be opened or saved here:
    │   │                    whether it applied the request is unknown, the request
    │   │                    stays pending and goes again, byte for byte
    │   └── RegistrationOutcomeUnknown
    │                        the CA's verified answer to a certificate request carries a
    │                        CertStatusCode this release does not know: pended or
    │                        refused, nothing is installed, the request stays pending
    ├── UnknownResultCode    the gateway's answer to a stored request verified, but its
    │                        result code is one this release does not define: the
    │                        request stays pending (the cause of an ``OutcomeUnknown``)
    ├── PurchaseOutcomeUnknown
    │   │                    the wallet's PReq left and no answer it could verify and
    │   │                    read came back: the card may be authorized; the purchase
    │   │                    keeps its record (SENT, or its state before an inquiry)
    │   │                    and ``setpay wallet inquire`` asks the merchant
    │   └── PurchaseNotRead  the merchant answered the wallet's PReq, unsigned, that it
    │                        was too busy to read it, at every attempt: it may have read
    │                        it all the same; the purchase keeps its record (SHED) for
    │                        ``setpay wallet inquire`` to settle
    ├── ShedUnsettled        a purchase of an order whose earlier purchase at the same
    │                        merchant is SHED: not made, no PReq sent, until an inquiry
    │                        settles the earlier one or the purchase names it ``despite``
    ├── StoreError           the merchant's database failed (sqlite3 translated here)
    ├── UnknownOrder         no order with that XID or LID-M
    ├── OrderStateError      the order cannot do this now (capture before authorization,
    │                        more than was authorized, refund above what was captured)
    ├── VaultError           the wallet's sealed card file cannot be read or opened
    └── RegistrationError    the CA did not issue the certificates (its status carried)

Protocol failures keep setcore's own errors: ``ProtocolError`` when a check of a peer's
message fails here, ``PeerError`` when the peer answered with a SET Error. No message in
this tree ever carries a PAN, a passphrase or key material.
"""

from __future__ import annotations


class ClientError(Exception):
    """Base of every error the merchant and wallet clients raise."""


class ConfigError(ClientError):
    """The configuration is missing, malformed or unsafe."""


class SignerGone(ConfigError):
    """The signature key whose certificate an order's PI names is no longer held, or that
    certificate has expired: the gateway refuses an AuthReq signed under any other (SET
    9.3.1), so none can be built for the order."""


class TransportError(ClientError):
    """A call to a peer failed at the gRPC level, after the bounded retries."""

    def __init__(self, what: str, status: str, *, where: str = "") -> None:
        """``where``: the peer's address and the setting that named it, and what to check,
        said after the status ("" when the call's channel is not known to have one)."""
        super().__init__(f"{what}: {status}" + (f" {where}" if where else ""))
        self.status = status


class NotRead(TransportError):
    """Every attempt was answered as shed before any handler of the peer's read it
    (RESOURCE_EXHAUSTED with RetryInfo, or gRPC's own refusal past its concurrency limit),
    or none could be made within the deadline. That is the peer's word, in a gRPC status
    no one signs: a peer that read the request (and did what it asks) could answer the
    same. Worth telling apart from a failure that says nothing of the peer's reading, but
    no proof that nothing was done: a wallet keeps a PReq shed so (``PurchaseNotRead``)."""


class OutcomeUnknown(ClientError):
    """Whether the gateway applied a stored request is unknown: it stays pending, to be
    sent again byte for byte (the gateway's RRPID idempotency answers that with what it
    decided the first time). ``cause``: the transport failure, the answer's failed check,
    a verified answer's result code this release cannot read (``UnknownResultCode``), or
    the merchant's own failure (its key backend, its store) on the answer. A
    registration's (``RegistrationOutcomeUnknown``, its own message) is kept too, but
    asked about again only by the next command, once setpay is upgraded.
    """

    def __init__(self, what: str, reason: str, cause: Exception) -> None:
        super().__init__(f"{what}: outcome unknown, will retry ({reason})")
        self.cause = cause


class RegistrationOutcomeUnknown(OutcomeUnknown):
    """The CA's answer to a certificate request verified as every answer is, but its
    CertStatusCode is one this release does not define (a CA of a later release): the CA
    may have pended the request or refused it. Neither is assumed: no certificate is
    installed, and the request stays pending (nothing asks again by itself), so that
    the same request is read again by a release that knows the status. ``status``: the
    code; ``cause``: setcore's ``CertStatusUnknown``."""

    def __init__(self, message: str, status: int, cause: Exception) -> None:
        ClientError.__init__(self, message)
        self.status = status
        self.cause = cause


class UnknownResultCode(ClientError):
    """The gateway's answer to a stored request verified in full, but the result code it
    carries (an AuthCode, CapCode, AuthRevCode, CapRevOrCredCode or BatchAdminStatus) is
    one this release does not define: a gateway of a later release. It could as well be
    an approval or a capture taken as a refusal, so the answer is neither: nothing is
    recorded, the request stays pending (``clients.merchant.outcome``) and its bytes are
    kept, for a release that reads the code to read the same stored answer. A batch query,
    never stored, is raised this alone. The message names the code by its bounded name
    (``AuthCode 42``, ``setcore.enum_names``)."""

    def __init__(self, code_name: str) -> None:
        super().__init__(
            f"the gateway answered {code_name}, a result code of a later gateway release "
            "this merchant cannot read: upgrade the merchant to a release that reads it"
        )


class PurchaseOutcomeUnknown(ClientError):
    """The PReq (or an InqReq) left, and no answer the wallet could verify and read came
    back: none, one whose checks failed, or a verified one carrying a CompletionCode or
    AuthCode this release does not define (a merchant or gateway of a later release, which
    may mean an approval). The merchant may hold the order and the card an authorization.
    The purchase keeps its record as it was (``SENT`` after a PReq; after an inquiry, the
    state an earlier answer left); ``inquire`` asks the merchant what became of it.
    ``cause``: the transport failure, the answer's failed check or unreadable code, or
    the wallet's own failure to record the answer."""

    def __init__(self, short_id: str, reason: str, cause: Exception) -> None:
        super().__init__(
            f"purchase {short_id} sent, outcome unknown ({reason}): the card may be "
            f"authorized; ask with `setpay wallet inquire {short_id}`"
        )
        self.short_id = short_id
        self.cause = cause


class PurchaseNotRead(PurchaseOutcomeUnknown):
    """The merchant answered the PReq that it shed it unread (too busy) at every attempt.
    That status is not signed: only a signed SET Error is the merchant's word, so it is
    never taken for a refusal, nor for proof that nothing was bought. A merchant may have
    read the PReq, kept the PI and had the card authorized, and answered so all the same:
    an outcome unknown, whose record says ``SHED`` rather than ``SENT``, and ``setpay
    wallet inquire`` asks the merchant, whose signed answer settles it.
    ``short_id``: the purchase's id; ``cause``: the ``NotRead`` transport failure."""

    def __init__(self, short_id: str, cause: NotRead) -> None:
        ClientError.__init__(
            self,
            f"purchase {short_id} not confirmed: the merchant said it was too busy to read "
            f"the purchase request ({cause}), which it may have read all the same: the card "
            f"may be authorized; ask with `setpay wallet inquire {short_id}` before buying "
            "again",
        )
        self.short_id = short_id
        self.cause = cause


class ShedUnsettled(ClientError):
    """A purchase of an order (LID-M) at a merchant with which the wallet holds a ``SHED``
    purchase of it: the merchant said it never read that one's PReq, unsigned, and no
    signed answer has said what became of it. Another purchase could pay the order twice:
    none is made (the PInit answered, no PReq built or sent) until ``setpay wallet
    inquire`` settles the earlier one, or the cardholder buys it ``--despite`` it, naming
    it: knowingly, when no inquiry can (the merchant gone, its inquiries shed)."""

    def __init__(self, short_id: str) -> None:
        super().__init__(
            f"not bought: earlier purchase {short_id} of this order at this merchant is "
            "unsettled (the merchant said it was too busy to read its request, which it may "
            f"have read all the same): ask with `setpay wallet inquire {short_id}` first, or "
            f"buy it again all the same, which may pay it twice, with `--despite {short_id}`;"
            " no purchase request sent"
        )
        self.short_id = short_id


class StoreError(ClientError):
    """The merchant's database failed."""


class UnknownOrder(ClientError):
    """No order with that XID or LID-M."""


class OrderStateError(ClientError):
    """The order cannot do this in its current state."""


class VaultError(ClientError):
    """The wallet's sealed card file cannot be read or opened."""


class RegistrationError(ClientError):
    """The CA did not issue the certificates."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status
