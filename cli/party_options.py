"""What the merchant's and the wallet's commands share: usage errors, the CA's form
fields, and the brand root each pins on its first registration.

The root is pinned on first use, and only once an answer of the CA verified under it:
the brand's revocation data (BCI and CRLs), which the brand root signs, fetched from the
configured CA. A wrong ``--root`` is refused, naming both, and pins nothing, so the
right one can be given next (pinned before any check, it used to leave the directory
trusting the wrong root for good). Wrong means the revocation data names another signer
than that root; data that names it but fails another check (outside its validity
window, as on a machine whose clock is off or from a CA that stopped re-signing it) is
refused too, pinning nothing, but as not usable now: another root would not help. The
pin is written whole or not at all (a crash never leaves a truncated ``root.pem``);
afterwards a ``--root`` naming another root is refused, both named by SHA-256
fingerprint, rather than silently ignored while the party goes on trusting the one it
pinned, and a CA answering under another root later fails every check against the
pinned one.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from cli.fingerprint import colon_hex
from clients.authority import AuthorityClient
from clients.errors import ClientError
from clients.identity import read_root, write_certificates
from clients.peers import PeerConfig
from clients.transport import Caller, open_channel
from setcore.encoding import parse_strict
from setcore.enrolment_code import given_name
from setcore.errors import ErrorCode, ProtocolError, SetcoreError, quoted
from setcore.pki.truststore import TrustStore
from setcore.signed import parse_signed
from setpay.v1 import registration_pb2


class UsageError(ClientError):
    """The command line is incomplete or malformed (exit 2, as argparse's own errors)."""


def parse_form(values: list[str]) -> dict[str, str]:
    """``--form NAME=VALUE`` pairs, as the CA's registration form takes them.

    An item without ``=`` may be the name alone or the value alone: a card number or the
    card's enrolment code, which the refusal must not carry to the terminal and the logs.
    A code may hold no digit at all (about one in 400 does), so the item is repeated
    only when it is plainly a field name, letters and hyphens and not shaped like a
    code; otherwise only its length is said (``setcore.enrolment_code.given_name``, the
    rule the wallet's and the merchant's forms refuse an unknown field name by)."""
    form = {}
    for item in values:
        name, sep, value = item.partition("=")
        if not sep:
            raise UsageError(f"--form takes NAME=VALUE, not {given_name(item)}")
        form[name] = value
    return form


def _fingerprint(der: bytes) -> str:
    return f"SHA-256 {colon_hex(hashlib.sha256(der).digest())}"


def pin_root(pinned_at: Path, root: Path | None, party: str, ca: PeerConfig, brand_id: str) -> None:
    """Pin ``root`` at ``pinned_at`` on first use, once the revocation data of ``ca``
    (brand ``brand_id``) verified under it; later, refuse a ``root`` that is not the pinned
    one (``party``: who trusts it, for the message)."""
    if pinned_at.exists():
        if root is not None:
            pinned, given = read_root(pinned_at), read_root(root)
            if pinned != given:
                raise ClientError(
                    f"--root {root} ({_fingerprint(given)}) is not the brand root pinned at "
                    f"{pinned_at} ({_fingerprint(pinned)}): the {party} trusts only the "
                    "pinned root"
                )
        return
    if root is None:
        raise UsageError(f"no pinned brand root at {pinned_at}: give --root")
    try:
        trust = TrustStore(read_root(root))
    except SetcoreError as exc:
        raise ClientError(f"--root {root}: {exc}") from exc
    with open_channel(ca.channel(), "CA") as channel:
        bci, crls = AuthorityClient(Caller(channel, "CA")).revocation(brand_id)
    try:
        trust.update_revocation(bci, crls)
    except SetcoreError as exc:
        if _signer_of(bci) not in (None, trust.root_thumb):
            raise ClientError(
                f"the revocation data of the CA at {ca.target} does not verify under --root "
                f"{root} ({_fingerprint(trust.root_der)}): {exc}; nothing pinned: give the "
                f"brand root of that CA"
            ) from exc
        why = _why_unusable(exc, bci, party, brand_id, ca.origin or "ca.target")
        raise ClientError(f"the revocation data of the CA at {ca.target} {why}") from exc
    write_certificates(pinned_at, [trust.root_der])


def _why_unusable(exc: SetcoreError, bci: bytes, party: str, brand_id: str, address: str) -> str:
    """Why revocation data naming the given root as its signer was refused, and what to
    check: the clock only for data outside its validity window; for a signature that
    does not verify, the CA's address (what answers there is not that brand's CA); for
    the BCI of another brand, the brand setting (``merchant.brand``, ``wallet.brand``).
    ``address``: the setting that named the CA's address."""
    code = exc.code if isinstance(exc, ProtocolError) else None
    if code == ErrorCode.ERROR_CODE_EXPIRED_CERTIFICATE:
        return f"is not usable now: {exc}; check this machine's clock and the CA; nothing pinned"
    if code == ErrorCode.ERROR_CODE_SIGNATURE_FAILURE:
        return (
            f"does not verify: {exc}; nothing pinned: check the CA's address ({address}):"
            " what answers there does not hold that root's key"
        )
    brand = _brand_of(bci)
    if brand is not None and brand != brand_id:
        return (
            f"is of brand {quoted(brand)}, not {brand_id!r}: {exc}; nothing pinned: check"
            f" {party}.brand in the configuration, or the CA's address ({address})"
        )
    return f"is not usable: {exc}; nothing pinned: check the CA"


def _signer_of(bci: bytes) -> bytes | None:
    """The thumbprint of the certificate the BCI names as its signer, unverified; None
    when it does not parse or names none. Only that tells a wrong ``--root`` apart:
    ``update_revocation``'s error codes do not (INVALID_CERTIFICATE says "not signed by
    the pinned root" as well as "BCI of another brand"), and its messages are no
    interface."""
    try:
        signatures = parse_signed(bci).signatures
    except SetcoreError:
        return None
    return signatures[0].signer_cert_thumb if len(signatures) == 1 else None


def _brand_of(bci: bytes) -> str | None:
    """The brand the BCI names, unverified (as ``_signer_of``); None when it does not
    parse."""
    try:
        return parse_strict(registration_pb2.BrandCRLIdentifierTBS, parse_signed(bci).tbs).brand_id
    except SetcoreError:
        return None
