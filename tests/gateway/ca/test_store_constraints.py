"""Every constraint of ca.db, refused: ``ConstraintViolation``, never an outage.

Each check a change relies on (a stored answer for the RRPID, a decided request, a
claimed key, the next CRL or BCI number, a revocation before) is made in the write
transaction that makes the change, and writers are serialized (BEGIN IMMEDIATE): no race
between requests or worker processes reaches a constraint, and the values the CA draws
itself (LID-CA, serial numbers) are random. A violation is therefore a bug. It used to be
a ``StoreError``, which the servicer answers UNAVAILABLE ("send it again"): the requester
would resend the same bytes into the same bug. Here each constraint is broken in the
real SQLite store; the failed transaction leaves nothing behind and the store goes on.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from gateway.ca import errors as ca_errors
from gateway.ca.errors import CaError, CaUnavailable
from gateway.ca.records import BciRecord, CrlRecord, IssuedCertificate, RequestRecord, Session
from gateway.ca.store import CaStore, StoreTransaction

Step = Callable[[StoreTransaction], None]

ISSUER = b"\x0c" * 32
OTHER = b"\x0d" * 32
RRPID = b"\x01" * 32
MARKER = b"\x0f" * 32  # an innocent write made before the violation, in its transaction


def _session(tx: StoreTransaction) -> None:
    tx.put_session(Session(b"L" * 16, b"lid-ee", 1, 0, None, False, "", "", 0, 1))


def _response(tx: StoreTransaction) -> None:
    tx.put_response(RRPID, "cert", b"digest", b"answer", 0)


def _request(tx: StoreTransaction) -> None:
    tx.put_request(RequestRecord(RRPID, b"lid-ee", b"lid-ca", 1, 0, 1, b"spki"), 0)


def _claim(tx: StoreTransaction) -> None:
    tx.claim_key(b"\x07" * 32, RRPID, None, 0)


def _certificate(thumb: bytes, serial: int) -> IssuedCertificate:
    return IssuedCertificate(thumb, serial, ISSUER, 1, "signature", "s", b"der", 1, 0)


def _add(thumb: bytes, serial: int) -> Step:
    return lambda tx: tx.add_certificate(_certificate(thumb, serial))


def _revoke(thumb: bytes) -> Step:
    return lambda tx: tx.revoke(_certificate(thumb, 1), 0)


def _crl(number: int, thumb: bytes) -> Step:
    return lambda tx: tx.add_crl(CrlRecord(ISSUER, number, thumb, b"der", 1, 0))


def _bci(tx: StoreTransaction) -> None:
    tx.add_bci(BciRecord(1, b"der", (OTHER,), 1, 0))


def _nothing(tx: StoreTransaction) -> None:
    pass


def _then(*steps: Step) -> Step:
    def run(tx: StoreTransaction) -> None:
        for step in steps:
            step(tx)

    return run


# (what is broken, what was committed before, the change that breaks it, SQLite's words)
CASES: list[tuple[str, Step, Step, str]] = [
    ("sessions: LID-CA", _session, _session, "sessions.lid_ca"),
    ("responses: RRPID", _response, _response, "responses.rrpid"),
    ("requests: RRPID", _request, _request, "requests.rrpid"),
    ("certified_keys: key", _claim, _claim, "certified_keys.key_thumb"),
    ("certificates: thumbprint", _add(OTHER, 1), _add(OTHER, 2), "certificates.thumb"),
    ("certificates: issuer and serial", _add(OTHER, 1), _add(RRPID, 1), "certificates.serial"),
    (
        "revocations: certificate",
        _then(_add(OTHER, 1), _revoke(OTHER)),
        _revoke(OTHER),
        "revocations.cert_thumb",
    ),
    ("revocations: unknown certificate", _nothing, _revoke(RRPID), "FOREIGN KEY"),
    ("crls: issuer and number", _crl(1, OTHER), _crl(1, RRPID), "crls.crl_number"),
    ("crls: thumbprint", _crl(1, OTHER), _crl(2, OTHER), "crls.thumb"),
    ("bcis: sequence number", _bci, _bci, "bcis.sequence_num"),
]


@pytest.mark.parametrize(
    ("before", "change", "words"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_a_broken_constraint_is_a_constraint_violation_not_an_outage(
    tmp_path: Path, before: Step, change: Step, words: str
) -> None:
    store = CaStore.open(tmp_path / "ca.db", create=True)
    try:
        with store.write() as tx:
            before(tx)
        with pytest.raises(CaError) as refused, store.write() as tx:
            tx.put_response(MARKER, "cert", b"digest", b"answer", 0)
            change(tx)
        assert not isinstance(refused.value, CaUnavailable), f"an outage: {refused.value!r}"
        assert isinstance(refused.value, ca_errors.ConstraintViolation)
        assert words in str(refused.value)
        # Rolled back whole, and the store serves the next transaction.
        with store.read() as tx:
            assert tx.response(MARKER) is None
        with store.write() as tx:
            tx.put_response(MARKER, "cert", b"digest", b"answer", 0)
        with store.read() as tx:
            assert tx.response(MARKER) is not None
    finally:
        store.close()
