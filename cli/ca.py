"""``setpay ca``: certificate authority operations on a bank directory.

    setpay ca list      --config FILE [--subject NAME] [--all]
    setpay ca revoke    --config FILE (--serial N | --thumb HEX)
    setpay ca issue-tls --config FILE --role client|server --name NAME --out DIR
    setpay ca renew-gateway --config FILE
    setpay ca prune-gateway --config FILE [--yes]

``list`` prints the SET certificates the brand's CAs issued, from ``ca.db`` opened
read-only and without opening the key backend, one line each: SHA-256 thumbprint, serial
number, certificate type, usage, notAfter (UTC date), state (live, expired, revoked) and
subject (last: a CA's name has spaces). Only live ones unless ``--all``; ``--subject``
keeps those naming exactly NAME. Thumbprint and serial are printed as ``revoke`` takes
them. A cardholder's subject is a random id (never card data, ``issue_cardholder``) and is
printed in colon-hex like the thumbprint, for the reason ``cli.fingerprint`` gives;
``--subject`` takes it in either form.

``revoke`` records the revocation in ``ca.db`` with a new CRL of the issuing CA and a new
BrandCRLIdentifier; running bank processes pick it up within a second of their next
request. ``--serial`` takes decimal, ``0x``-prefixed hex, or colon-separated hex, in
ASCII only (a sign, an underscore or another script's digits is a usage error): each form
``openssl x509 -text`` prints (a long serial in colon-hex on the line after ``Serial
Number:``, a short one as ``4660 (0x1234)``). ``openssl x509 -serial`` prints bare hex
(``serial=1234``), which would be read as decimal: give it with ``0x`` before it.
``--thumb`` takes the SHA-256 fingerprint.
``issue-tls`` writes NAME.pem (chain), NAME.key (0600) and root.pem (the transport CA)
into DIR (made if not there; a file in its place is refused, nothing written), and
prints the certificate's notAfter (UTC, ISO 8601): transport certificates last 90 days
(``setcore.pki.tls.TLS_LIFETIME``), and a peer's handshakes fail after it.
``renew-gateway`` makes and certifies the next version of the gateway's signature and
key-exchange keys on a stopped bank; a failure is taken back (``gateway.gateway_renewal``).
The bank uses them from its next start, and keeps opening envelopes sealed to the
key-exchange certificate they replace until it ends. A second renewal while one runs is
refused at once, and so is a bank starting meanwhile (``gateway.renewal_lock``).
``prune-gateway`` lists the kept key-exchange certificate files and the older versions of
the gateway's keys that no valid certificate needs any more (``gateway.gateway_pruning``)
on a stopped bank, and deletes them with ``--yes``; it prints names and key versions,
never key material. While the ledger (opened read-only) holds a decision whose answer
was never stored, it deletes no key-exchange key or kept certificate: such a request may
be sealed to one, and is answered only while the bank holds its key; ``--yes`` is then
refused (exit 1), and the dry run says so, with how many and what to do. It names the
ledger it read on standard error (no password), and refuses (exit 1, dry run too) a
ledger lacking an account of a merchant the bank certified: not the bank's (a shell
without the ``SETPAY_LEDGER`` the bank's service has).
Exit status: 0 on success, 1 when the operation is refused, 2 for usage errors.
"""

from __future__ import annotations

import argparse
import itertools
import os
import re
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

from cli.fingerprint import colon_hex
from cli.number_options import shown
from gateway.bank_pki import ProvisioningError, load_bank_pki, open_ca_store
from gateway.ca.errors import CaError
from gateway.ca.publishing import revoke
from gateway.ca.records import IssuedCertificate
from gateway.ca.store import CaStore
from gateway.config import BankConfig, ConfigError, load
from gateway.gateway_pruning import prune_gateway_keys
from gateway.gateway_renewal import renew_gateway_keys
from gateway.provisioning import TLS_ROLES, TLS_ROOT_FILE, issue_tls_files
from gateway.pruning_ledger import unanswered_advice
from hsm.errors import KeyBackendError
from setcore.errors import SetcoreError
from setcore.pki import roles
from setcore.pki.tls import NOT_AFTER_FORMAT, chain_not_after

# SHA-256 fingerprints are 32 bytes.
THUMB_BYTES = 32
# A serial is at most 20 octets (RFC 5280 4.1.2.2): 59 characters in colon-hex, the
# longest form; a longer text is no serial (and int() refuses 4300 digits and more).
MAX_SERIAL_CHARS = 64
# ``revoke --serial``'s forms, each in ASCII only: int() alone took a sign, underscores
# and other scripts' digits ("+5", "1_0", fullwidth digits), each a number nobody typed on
# purpose, and a revocation is not taken back. Spaces around it are allowed: serials are
# copied from ``openssl x509 -text``, indented. Form, what to strip, base.
_SERIAL_FORMS: tuple[tuple[re.Pattern[str], Callable[[str], str], int], ...] = (
    (re.compile(r"[0-9]+"), str, 10),
    (re.compile(r"0[xX][0-9a-fA-F]+"), lambda text: text[2:], 16),
    (re.compile(r"[0-9a-fA-F]+(?::[0-9a-fA-F]+)+"), lambda text: text.replace(":", ""), 16),
)


def parse_serial(text: str) -> int:
    """A certificate serial number as decimal, 0x-hex or colon-separated hex, in ASCII
    (``_SERIAL_FORMS``), spaces around it allowed; argparse's usage error otherwise."""
    cleaned = text.strip(" \t")
    for pattern, strip, base in _SERIAL_FORMS:
        if len(cleaned) <= MAX_SERIAL_CHARS and pattern.fullmatch(cleaned):
            return int(strip(cleaned), base)
    raise argparse.ArgumentTypeError(
        "a serial number is decimal (digits 0-9), 0x and hex digits, or hex digits in "
        f"pairs with colons, as list prints it; not {shown(text)}"
    )


def parse_thumb(text: str) -> bytes:
    """A SHA-256 fingerprint in hex, with or without colons."""
    try:
        thumb = bytes.fromhex(text.replace(":", ""))
    except ValueError:
        raise argparse.ArgumentTypeError("not a hex fingerprint") from None
    if len(thumb) != THUMB_BYTES:
        raise argparse.ArgumentTypeError("a SHA-256 fingerprint is 32 bytes")
    return thumb


def serial_hex(serial: int) -> str:
    """A serial number as ``list`` prints it and ``revoke --serial`` takes it."""
    return colon_hex(serial.to_bytes((serial.bit_length() + 7) // 8 or 1))


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``ca`` and its subcommands to the ``setpay`` parser."""
    ca = subparsers.add_parser("ca", help="certificate authority operations")
    ca.set_defaults(handler=run)
    commands = ca.add_subparsers(dest="ca_command", required=True, metavar="COMMAND")

    listing = commands.add_parser("list", help="list the SET certificates the CAs issued")
    listing.add_argument("--config", type=Path, required=True, help="the bank's setpay.toml")
    listing.add_argument("--subject", help="only certificates naming exactly this subject")
    listing.add_argument("--all", action="store_true", help="expired and revoked ones too")

    revoked = commands.add_parser("revoke", help="revoke a certificate, publish CRL and BCI")
    revoked.add_argument("--config", type=Path, required=True, help="the bank's setpay.toml")
    which = revoked.add_mutually_exclusive_group(required=True)
    which.add_argument("--serial", type=parse_serial, help="serial number")
    which.add_argument("--thumb", type=parse_thumb, help="SHA-256 fingerprint (hex)")

    tls = commands.add_parser("issue-tls", help="issue a TLS client or server certificate")
    tls.add_argument("--config", type=Path, required=True, help="the bank's setpay.toml")
    tls.add_argument("--role", choices=TLS_ROLES, required=True)
    tls.add_argument("--name", required=True, help="client name, or server DNS name")
    tls.add_argument("--out", type=Path, required=True, help="directory to write into")

    renew = commands.add_parser(
        "renew-gateway", help="renew the gateway's signature and key-exchange keys (bank stopped)"
    )
    renew.add_argument("--config", type=Path, required=True, help="the bank's setpay.toml")

    prune = commands.add_parser(
        "prune-gateway",
        help="delete older gateway key versions and kept certificates no longer valid"
        " (bank stopped; a dry run without --yes)",
    )
    prune.add_argument("--config", type=Path, required=True, help="the bank's setpay.toml")
    prune.add_argument("--yes", action="store_true", help="delete them (default: only list)")


def run(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Run one ``setpay ca`` subcommand; the exit status."""
    out = out or sys.stdout
    err = err or sys.stderr
    if args.ca_command == "list":
        return _list(args, out, err)
    if args.ca_command == "renew-gateway":
        return _renew_gateway(args, out, err)
    if args.ca_command == "prune-gateway":
        return _prune_gateway(args, out, err)
    if args.ca_command == "issue-tls":
        refused = _out_refusal(args.out, args.name)
        if refused is not None:
            print(f"setpay ca issue-tls: {refused}", file=err)
            return 1
    try:
        config = load(args.config)
        # Not judged as a serving bank is: revoke and issue-tls must run on a bank whose
        # own certificates no peer accepts (gateway.bank_presented).
        pki = load_bank_pki(config, judge_presented=False)
    except (ConfigError, ProvisioningError, KeyBackendError, SetcoreError, CaError) as exc:
        print(f"setpay ca: cannot open the bank: {exc}", file=err)
        return 1
    try:
        if args.ca_command == "revoke":
            store = open_ca_store(config)
            try:
                cert, bci = revoke(
                    store, pki.authority_keys(), serial=args.serial, thumb=args.thumb
                )
            finally:
                store.close()
            print(
                f"revoked {cert.subject!r} serial {cert.serial:x} "
                f"(SHA-256 {colon_hex(cert.thumb)}); brand CRL identifier {bci.sequence_num}",
                file=out,
            )
            return 0
        paths = issue_tls_files(config, pki, args.role, args.name, args.out)
        print(f"wrote {paths.certificate} and {paths.key}", file=out)
        ends = chain_not_after(paths.certificate.read_bytes())
        print(f"notAfter {ends.strftime(NOT_AFTER_FORMAT)}", file=out)
        return 0
    except (CaError, ProvisioningError, KeyBackendError, SetcoreError, OSError) as exc:
        print(f"setpay ca {args.ca_command}: {_said(exc)}", file=err)
        return 1
    finally:
        pki.close()


def _out_refusal(out: Path, name: str) -> str | None:
    """Why ``issue-tls --out`` cannot be the directory the files go into (None: it can).

    Said before the bank is opened: ``mkdir`` met a file there with the OSError's own
    text ("[Errno 17] File exists"), which read as if a file of the certificate's were
    in the way, not the directory named.

    A place that cannot be looked at (a name too long, a parent that cannot be searched)
    is said so, with nothing written: ``is_dir`` and ``exists`` raise for it, which ended
    the command in a traceback."""
    try:
        for place in (out, *out.parents):
            if place.is_dir():
                return None
            if place.exists() or place.is_symlink():  # a dangling link is in the way too
                where = "" if place == out else f" ({place}, on its path)"
                return (
                    f"--out {out}: a file is there{where}, not a directory: issue-tls writes "
                    f"{name}.pem, {name}.key and {TLS_ROOT_FILE} into a directory, and "
                    "overwrites no file; nothing written"
                )
    except OSError as exc:
        looked = exc.filename if exc.filename is not None else out
        where = "" if str(looked) == str(out) else f" ({looked}, on its path)"
        return f"--out {out}: {exc.strerror or type(exc).__name__}{where}; nothing written"
    return None


def _said(exc: Exception) -> str:
    """An error for the operator: an OSError as its file and reason, not its repr-like
    text ("[Errno 13] Permission denied: '...'")."""
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.filename}: {exc.strerror}" if exc.filename else exc.strerror
    return str(exc)


def _renew_gateway(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    try:
        config = load(args.config)
        renewal = renew_gateway_keys(config)
    except (ConfigError, ProvisioningError, KeyBackendError, SetcoreError, CaError, OSError) as exc:
        print(f"setpay ca renew-gateway: {exc}", file=err)
        return 1
    for key in (renewal.signature, renewal.key_exchange):
        print(
            f"renewed {key.label} v{key.version}: serial {serial_hex(key.serial)} "
            f"(SHA-256 {colon_hex(key.thumb)})",
            file=out,
        )
    print(
        f"kept {renewal.kept.name}: envelopes sealed to it open until it ends; "
        "start the bank to use the new keys",
        file=out,
    )
    return 0


def _prune_gateway(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    try:
        config = load(args.config)
        pruning = prune_gateway_keys(config, apply=args.yes)
    except (ConfigError, ProvisioningError, KeyBackendError, SetcoreError, CaError, OSError) as exc:
        print(f"setpay ca prune-gateway: {exc}", file=err)
        return 1
    if not pruning.items:
        print(
            "nothing to prune: no kept key-exchange certificate has ended or been revoked,"
            " and a valid certificate still certifies every older version of the gateway's"
            " keys",
            file=out,
        )
        return 0
    if pruning.ledger is not None:
        # On standard error: the lines on standard output are what goes, and why.
        source = "SETPAY_LEDGER" if "SETPAY_LEDGER" in os.environ else "ledger.store"
        print(f"ledger read ({source}): {pruning.ledger}", file=err)
    done = "deleted" if pruning.applied else "would delete"
    for item in pruning.items:
        print(f"{done} {item.what}: {item.reason}", file=out)
    if pruning.unanswered is not None:
        advice = unanswered_advice(config, pruning.unanswered, pruning.ledger)
        print(f"nothing deleted, and --yes is refused: {advice}", file=out)
    elif not pruning.applied:
        print("nothing deleted: run again with --yes to delete them", file=out)
    return 0


def type_label(certificate_type: int) -> str:
    """A CertificateType as ``list`` prints it: ``merchant``, ``payment-gateway-ca``..."""
    name = roles.type_name(certificate_type).removeprefix("CERTIFICATE_TYPE_")
    return name.lower().replace("_", "-")


def _printable(text: str) -> str:
    """``text`` with each character that is not printable, and each backslash, escaped
    (``\\n``, ``\\u202e``): a name stored before names were checked for control
    characters could forge lines of the listing or turn it around on screen."""
    return "".join(
        ch if ch.isprintable() and ch != "\\" else ch.encode("unicode_escape").decode("ascii")
        for ch in text
    )


def _shown_subject(cert: IssuedCertificate) -> str:
    if cert.certificate_type != roles.CARDHOLDER:
        return _printable(cert.subject)
    try:
        return colon_hex(bytes.fromhex(cert.subject))
    except ValueError:
        return _printable(cert.subject)


def _stored_subjects(name: str) -> Sequence[str | None]:
    # A cardholder's id as ``list`` prints it (colon-hex) and as ca.db holds it (hex).
    if ":" not in name:
        return (name,)
    try:
        return (name, bytes.fromhex(name.replace(":", "")).hex())
    except ValueError:
        return (name,)


def _state(cert: IssuedCertificate, revoked_ms: int | None, now_ms: int) -> str:
    if revoked_ms is not None:
        return "revoked"
    return "expired" if cert.not_after_ms < now_ms else "live"


def _list(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    try:
        config: BankConfig = load(args.config)
        store = CaStore.open_readonly(config.path(config.ca_db))
    except (ConfigError, CaError) as exc:
        print(f"setpay ca: cannot open the bank: {exc}", file=err)
        return 1
    now_ms = int(time.time() * 1000)
    subjects = _stored_subjects(args.subject) if args.subject is not None else (None,)
    rows: list[tuple[str, ...]] = []
    try:
        with store.read() as tx:
            listed = itertools.chain.from_iterable(
                tx.listed_certificates(subject=subject, live_at_ms=None if args.all else now_ms)
                for subject in subjects
            )
            for cert, revoked_ms in listed:
                not_after = datetime.fromtimestamp(cert.not_after_ms / 1000, tz=UTC)
                rows.append((
                    colon_hex(cert.thumb),
                    serial_hex(cert.serial),
                    type_label(cert.certificate_type),
                    cert.usage,
                    not_after.date().isoformat(),
                    _state(cert, revoked_ms, now_ms),
                    _shown_subject(cert),
                ))  # fmt: skip
    except CaError as exc:
        print(f"setpay ca list: {exc}", file=err)
        return 1
    finally:
        store.close()
    if rows:
        widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]) - 1)]
        for row in rows:
            cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
            print("  ".join([*cells, row[-1]]), file=out)
    return 0
