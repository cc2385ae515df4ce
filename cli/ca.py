"""``setpay ca``: certificate authority operations on a bank directory.

    setpay ca revoke    --config FILE (--serial N | --thumb HEX)
    setpay ca issue-tls --config FILE --role client|server --name NAME --out DIR

``revoke`` records the revocation in ``ca.db`` with a new CRL of the issuing CA and a new
BrandCRLIdentifier; running bank processes pick it up within a second of their next
request. ``--serial`` takes decimal, ``0x``-prefixed hex, or colon-separated hex as
``openssl x509 -serial`` and ``-text`` print it; ``--thumb`` the SHA-256 fingerprint.
``issue-tls`` writes NAME.pem (chain), NAME.key (0600) and root.pem (the transport CA)
into DIR.
Exit status: 0 on success, 1 when the operation is refused, 2 for usage errors.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TextIO

from cli.fingerprint import colon_hex
from gateway.bank_pki import ProvisioningError, load_bank_pki, open_ca_store
from gateway.ca.errors import CaError
from gateway.ca.publishing import revoke
from gateway.config import ConfigError, load
from gateway.provisioning import TLS_ROLES, issue_tls_files
from hsm.errors import KeyBackendError
from setcore.errors import SetcoreError

# SHA-256 fingerprints are 32 bytes.
THUMB_BYTES = 32


def parse_serial(text: str) -> int:
    """A certificate serial number as decimal, 0x-hex or colon-separated hex."""
    cleaned = text.strip()
    try:
        if ":" in cleaned:
            return int(cleaned.replace(":", ""), 16)
        return int(cleaned, 16) if cleaned.lower().startswith("0x") else int(cleaned, 10)
    except ValueError:
        raise argparse.ArgumentTypeError("not a serial number") from None


def parse_thumb(text: str) -> bytes:
    """A SHA-256 fingerprint in hex, with or without colons."""
    try:
        thumb = bytes.fromhex(text.replace(":", ""))
    except ValueError:
        raise argparse.ArgumentTypeError("not a hex fingerprint") from None
    if len(thumb) != THUMB_BYTES:
        raise argparse.ArgumentTypeError("a SHA-256 fingerprint is 32 bytes")
    return thumb


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``ca`` and its subcommands to the ``setpay`` parser."""
    ca = subparsers.add_parser("ca", help="certificate authority operations")
    ca.set_defaults(handler=run)
    commands = ca.add_subparsers(dest="ca_command", required=True, metavar="COMMAND")

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


def run(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Run one ``setpay ca`` subcommand; the exit status."""
    out = out or sys.stdout
    err = err or sys.stderr
    try:
        config = load(args.config)
        pki = load_bank_pki(config)
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
        return 0
    except (CaError, ProvisioningError, KeyBackendError, SetcoreError, OSError) as exc:
        print(f"setpay ca {args.ca_command}: {exc}", file=err)
        return 1
    finally:
        pki.close()
