"""``setpay init``: create a bank directory (brand PKI, CA database, TLS, ledger keys, config).

    setpay init DIR [--profile ec|rsa] [--keys URI] [--brand ID] [--insecure] [--merchant-tls]

Keys default to a software keystore in ``DIR/keys`` whose passphrase comes from
SETPAY_KEYSTORE_PASSPHRASE or, when that is unset, a generated ``DIR/keys.pass`` (0600).
That default is for trying setpay out: the file opens every key, and so every PAN of the
ledger, for whoever holds a copy of the directory; init says where it is and what a bank
uses instead (``--keys``).
``--merchant-tls`` also writes a merchant's TLS credentials into ``DIR/tls`` (the demo and
``bench --spawn`` ask for them); a bank issues its merchants theirs with ``setpay ca
issue-tls``.
It prints what it made, the TLS server certificate's notAfter among it (UTC, ISO 8601, as
``setpay ca issue-tls`` prints one): it lasts 90 days (``setcore.pki.tls.TLS_LIFETIME``),
and the bank refuses to start on it once ended.
An existing bank is never overwritten. Exit status: 0 on success, 1 when the bank cannot
be created, 2 for usage errors (argparse).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TextIO

from cli.fingerprint import colon_hex
from gateway.bank_pki import ProvisioningError
from gateway.ca.errors import CaError
from gateway.config import load
from gateway.provisioning import MAX_BRAND_ID_CHARS, init_bank
from hsm.errors import KeyBackendError
from hsm.uri import describe_uri
from setcore.errors import SetcoreError
from setcore.pki.tls import NOT_AFTER_FORMAT, chain_not_after
from setcore.profiles import PROFILES

# Said by a bank made with the default keys, whose passphrase file sits in the directory
# beside ledger.keys: whoever copies the directory (a backup) opens every key and PAN.
_DEMO_KEYS_NOTICE = """\
  keystore passphrase in {path}: it opens the bank's keys, and so every card number
    in the ledger. For trying setpay out only: a bank uses a token, or a passphrase file
    kept outside the bank directory and its backups (--keys URI; docs/OPERATIONS.md)"""


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``init`` to the ``setpay`` parser."""
    parser = subparsers.add_parser("init", help="create a new bank directory")
    parser.set_defaults(handler=run)
    parser.add_argument("directory", type=Path, metavar="DIR", help="new, or empty, directory")
    parser.add_argument("--profile", choices=sorted(PROFILES), default="ec")
    parser.add_argument(
        "--keys", metavar="URI", help="key backend URI (default: soft:keys inside DIR)"
    )
    parser.add_argument(
        "--brand", default="setpay", metavar="ID",
        help=f"brand id, 1 to {MAX_BRAND_ID_CHARS} characters (they name its certificates)",
    )  # fmt: skip
    parser.add_argument(
        "--insecure", action="store_true", help="plaintext gRPC (local experiments only)"
    )
    parser.add_argument(
        "--merchant-tls",
        action="store_true",
        help="also write a merchant's TLS client and server credentials into DIR/tls "
        "(demos and benchmarks on one machine only)",
    )


def run(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Create the bank; the exit status."""
    out = out or sys.stdout
    err = err or sys.stderr
    try:
        result = init_bank(
            args.directory,
            profile=args.profile,
            keys=args.keys,
            brand_id=args.brand,
            insecure=args.insecure,
            merchant_tls=args.merchant_tls,
        )
    except (ProvisioningError, KeyBackendError, SetcoreError, CaError, OSError) as exc:
        print(f"setpay init: {exc}", file=err)
        return 1
    keys = describe_uri(args.keys) if args.keys else "soft:keys (in the bank directory)"
    print(f"bank created in {result.directory}", file=out)
    print(f"  brand {result.brand_id}, profile {result.profile}, keys {keys}", file=out)
    print(f"  brand root SHA-256 {colon_hex(result.root_thumbprint)}", file=out)
    print(f"  configuration {result.config_path}", file=out)
    # The file's own settings (no SETPAY_* variable): the certificate this bank serves.
    tls = load(result.config_path, env={}).tls
    if tls is not None:
        ends = chain_not_after(tls.cert.read_bytes())
        print(f"  TLS server certificate {tls.cert} notAfter {ends.strftime(NOT_AFTER_FORMAT)}",
              file=out)  # fmt: skip
    if result.passphrase_file is not None:  # last, where it is seen
        print(_DEMO_KEYS_NOTICE.format(path=result.passphrase_file), file=out)
    return 0
