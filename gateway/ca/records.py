"""What ``ca.db`` holds, as plain values: sessions, answers, requests, certificates, CRLs, BCIs."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Session:
    """A registration in progress (SET's LID-CA), with the challenge the CA issued."""

    lid_ca: bytes
    lid_ee: bytes
    ca_type: int
    request_type: int
    chall_ca: bytes | None
    chall_used: bool
    subject_id: str
    subject_name: str
    created_ms: int
    expires_ms: int


@dataclass(frozen=True)
class StoredResponse:
    """An answer already given under an RRPID."""

    kind: str
    request_digest: bytes
    response: bytes


@dataclass(frozen=True, repr=False)
class RequestRecord:
    """A certificate request the CA decided; enough to answer CertInq or finish a pend."""

    rrpid: bytes
    lid_ee: bytes
    lid_ca: bytes
    ca_type: int
    request_type: int
    status: int
    sig_spki: bytes
    enc_spki: bytes | None = None
    kem: str | None = None
    blinded_account: bytes | None = field(default=None, repr=False)
    card_expiry: str | None = None
    nonce_cca: bytes | None = field(default=None, repr=False)
    back_key: bytes | None = field(default=None, repr=False)
    subject_id: str = ""
    subject_name: str = ""
    cert_thumbs: tuple[bytes, ...] = ()

    def __repr__(self) -> str:
        return f"RequestRecord(rrpid={self.rrpid.hex()[:16]}..., status={self.status})"


@dataclass(frozen=True)
class CardFailures:
    """A card's refused registrations: how many since ``window_start_ms``, and until when
    (``locked_until_ms``, 0 if never) the card is refused without asking the issuer."""

    failures: int
    window_start_ms: int
    locked_until_ms: int


@dataclass(frozen=True)
class PendedRenewal:
    """The certificate a pended renewal renews, as its CRL names it (issuer and serial),
    and the CAs above it (``chain_thumbs``: its issuer first)."""

    serial: int
    chain_thumbs: tuple[bytes, ...]


@dataclass(frozen=True)
class IssuedCertificate:
    """A certificate of the brand as ca.db records it."""

    thumb: bytes
    serial: int
    issuer_thumb: bytes
    certificate_type: int
    usage: str
    subject: str
    der: bytes = field(repr=False)
    not_after_ms: int
    issued_ms: int


@dataclass(frozen=True)
class CrlRecord:
    """One CRL issued by one CA."""

    issuer_thumb: bytes
    crl_number: int
    thumb: bytes
    der: bytes = field(repr=False)
    next_update_ms: int
    issued_ms: int


@dataclass(frozen=True)
class BciRecord:
    """One BrandCRLIdentifier and the thumbprints of the CRLs it lists."""

    sequence_num: int
    der: bytes = field(repr=False)
    crl_thumbs: tuple[bytes, ...]
    not_after_ms: int
    issued_ms: int
