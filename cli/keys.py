"""``setpay keys``: generate, import, list, delete (and adopt) keys in a key backend, and
upgrade a software keystore an earlier setpay wrote.

    setpay keys generate --keys URI --label L --usage U --algorithm A
    setpay keys import   --keys URI --label L --usage U --pem FILE [--pem-passphrase-file F]
    setpay keys list     --keys URI
    setpay keys delete   --keys URI --label L (--version N | --all-versions) [--no-bank]
    setpay keys delete   --config FILE --label L (--version N | --all-versions)
    setpay keys adopt    --keys URI --id HEX --label L --usage U     (PKCS#11 tokens only)
    setpay keys upgrade-keystore --keys URI [--yes]                  (soft:DIR only)

``--keys`` is a key URI (see ``hsm.uri``); it is echoed only through ``describe_uri``.
Nothing secret is printed: handles show public facts (label, version, usage, algorithm,
KEM and the SHA-256 fingerprint of the public key). Exit status: 0 on success, 1 when
the backend refuses, 2 for usage errors (argparse).

``delete`` destroys every version of a label only when told so (``--all-versions``):
the version in use goes with the others. The bank's own keys (every label it holds,
``BANK_LABELS``) are deleted only with ``--config`` naming the bank: then from the key
backend that configuration names (a ``--keys`` naming another is refused), under the
bank's key lock, as renewals and prunings are (``gateway.renewal_lock``), and only while
the bank is stopped, as they check it. ``--no-bank`` deletes them from a backend no bank
uses (one a demo's bank, gone since, left keys on): nothing is locked or checked.
Everything a command is given is checked before the backend opens, and only
``generate`` and ``import`` make the keystore a ``soft:DIR`` names when it is not there.

``upgrade-keystore`` is the only way a keystore from before authenticated key metadata
opens again (``hsm.keystore_upgrade`` says why no open upgrades it): it prints every key
version as ``list`` does, warns when some had a MAC already, names those with no
certificate to check their metadata against, and refuses if a certificate disagrees
(public key and key usage, checked by ``hsm``; the KEM, checked here against SET's
kemAlgorithm extension, which ``hsm`` does not read), naming every disagreement of every
version in one refusal; with ``--yes`` it then gives each
its MAC, and without, writes nothing (every other command refuses such a keystore, so
this dry run is where the operator checks it).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from cli.fingerprint import colon_hex
from cli.number_options import shown, whole
from cli.pem_keys import read_private_key
from hsm.base import KeyAlgorithm, KeyBackend, KeyHandle, KeyUsage
from hsm.errors import KeyBackendError, PermanentBackendError, UnsupportedAlgorithm
from hsm.keystore import Keystore
from hsm.keystore_upgrade import Upgrade
from hsm.policy import (
    algorithm_of_private,
    check_combination,
    check_label,
    public_key_der,
)
from hsm.uri import SoftwareKeyURI, describe_uri, open_backend, parse_key_uri

if TYPE_CHECKING:  # the gateway package is loaded only for a bank's deletion
    from gateway.config import BankConfig

#: Every label the bank holds (``gateway.bank_pki.ALL_LABELS``, spelled here so that the
#: keys command does not load the gateway package; a test holds the two alike): each is
#: in use while it runs, and ``gateway-token`` seals the ledger's keys, its card numbers'.
BANK_LABELS = frozenset(
    ("brand-root", "cca", "cca-kex", "mca", "mca-kex", "pca", "pca-kex", "gateway-sig",
     "gateway-kex", "gateway-token", "tls-ca")
)  # fmt: skip
#: The bank's token-sealing key: ``gateway.token_key`` says why it has one version only.
TOKEN_SEALING_LABEL = "gateway-token"  # noqa: S105 - a key label, not a secret
#: The commands that may make the keystore a ``soft:DIR`` URI names (a key goes into it);
#: the others refuse a directory without one: a mistyped path, not a keystore to make.
_CREATING = frozenset({"generate", "import"})
#: The highest ``delete --version``: a key rotated every day for a thousand years has fewer
#: versions; the bound keeps a pasted number (a card's, an id) from being looked up.
MAX_KEY_VERSION = 999_999
#: The task named in the bank's key lock while a deletion holds it.
DELETE_TASK = "keys delete"

_USAGES = [usage.value for usage in KeyUsage]
_ALGORITHMS = [algorithm.value for algorithm in KeyAlgorithm]


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``keys`` and its subcommands to the ``setpay`` parser."""
    keys = subparsers.add_parser("keys", help="manage keys in a key backend")
    keys.set_defaults(handler=run)
    commands = keys.add_subparsers(dest="keys_command", required=True, metavar="COMMAND")

    generate = commands.add_parser("generate", help="generate a key (next version of a label)")
    _backend_argument(generate)
    generate.add_argument("--label", required=True)
    generate.add_argument("--usage", required=True, choices=_USAGES)
    generate.add_argument("--algorithm", required=True, choices=_ALGORITHMS)

    imported = commands.add_parser("import", help="import a PEM private key")
    _backend_argument(imported)
    imported.add_argument("--label", required=True)
    imported.add_argument("--usage", required=True, choices=_USAGES)
    imported.add_argument("--pem", required=True, metavar="FILE", help="PEM private key")
    imported.add_argument(
        "--pem-passphrase-file", metavar="FILE", help="passphrase of an encrypted PEM (0600)"
    )

    listed = commands.add_parser("list", help="list every key version")
    _backend_argument(listed)

    delete = commands.add_parser("delete", help="destroy a key version, or all versions")
    _backend_argument(delete, required=False)
    delete.add_argument("--label", required=True)
    which = delete.add_mutually_exclusive_group(required=True)
    which.add_argument("--version", type=whole(1, MAX_KEY_VERSION), help="only this version")
    which.add_argument(
        "--all-versions", action="store_true", help="every version, the one in use too"
    )
    bank = delete.add_mutually_exclusive_group()
    bank.add_argument(
        "--config",
        metavar="FILE",
        help="the bank's setpay.toml: delete from its key backend, under its key lock, only "
        "while it is stopped (required for the gateway's own labels)",
    )
    bank.add_argument(
        "--no-bank",
        action="store_true",
        help="the key backend is no bank's (a demo's bank, gone since, left keys on it): "
        "delete the gateway's own labels without a bank to lock or check",
    )

    adopt = commands.add_parser("adopt", help="take a token key made by another tool")
    _backend_argument(adopt)
    adopt.add_argument("--id", required=True, type=_object_id, help="CKA_ID in hex")
    adopt.add_argument("--label", required=True)
    adopt.add_argument("--usage", required=True, choices=_USAGES)

    upgrade = commands.add_parser(
        "upgrade-keystore",
        help="authenticate the key metadata of a software keystore an earlier setpay wrote",
    )
    _backend_argument(upgrade)
    upgrade.add_argument(
        "--yes", action="store_true", help="authenticate them (default: only show them)"
    )


def run(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Run one ``setpay keys`` subcommand; the exit status."""
    out = out or sys.stdout
    err = err or sys.stderr
    if args.keys_command == "delete":
        return _delete_guarded(args, out, err)
    if args.keys_command == "upgrade-keystore":
        return _upgrade_keystore(args, out, err)
    return _run(args, out, err)


def _run(args: argparse.Namespace, out: TextIO, err: TextIO, uri: str | None = None) -> int:
    uri = uri or args.keys
    command = args.keys_command
    try:
        # What the command line gives is checked before the backend opens: opening a
        # keystore that is not there makes one, and a refused command changes nothing.
        action = _COMMANDS[command](args, uri)
    except KeyBackendError as exc:
        print(f"setpay keys {command}: {exc}", file=err)
        return 1
    try:
        backend = open_backend(uri, create=command in _CREATING)
    except KeyBackendError as exc:
        print(f"setpay keys: cannot open {describe_uri(uri)}: {exc}", file=err)
        return 1
    try:
        action(backend, out)
    except KeyBackendError as exc:
        print(f"setpay keys {command}: {exc}", file=err)
        return 1
    finally:
        backend.close()
    return 0


def _delete_guarded(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """``delete``: from the bank's key backend, under its key lock and only on a stopped
    bank if ``--config``."""
    if args.config is None:
        if args.keys is None:
            print("setpay keys delete: pass --keys, or --config with the bank's setpay.toml",
                  file=err)  # fmt: skip
            return 2
        if args.label in BANK_LABELS and not args.no_bank:
            print(
                f"setpay keys delete: {args.label!r} is the bank's own key: pass --config "
                "with the bank's setpay.toml, so that the deletion waits for no renewal "
                "and the bank is checked to be stopped (or --no-bank if no bank uses this "
                "key backend)",
                file=err,
            )
            return 1
        return _run(args, out, err)
    # Imported here: only a bank's deletion needs the gateway package.
    from gateway.bank_errors import ProvisioningError  # noqa: PLC0415
    from gateway.bank_pki import bank_keys_uri  # noqa: PLC0415
    from gateway.config import ConfigError, load  # noqa: PLC0415
    from gateway.gateway_renewal import check_stopped  # noqa: PLC0415
    from gateway.renewal_lock import holding_keys_lock  # noqa: PLC0415

    before = f"deleting {args.label!r}"
    try:
        config = load(Path(args.config), env=os.environ)
        # The lock and the check are the bank's: so must the keys be. As the bank reads
        # it (relative paths against its directory); the URI as written is accepted too.
        uri = bank_keys_uri(config)
        if args.keys is not None and args.keys not in (config.keys, uri):
            print(
                f"setpay keys delete: --keys {describe_uri(args.keys)} is not the key backend "
                f"{args.config} names ({describe_uri(config.keys)}): leave --keys out, "
                "--config says which",
                file=err,
            )
            return 2
        refused = _sealing_key_kept(args, config)
        if refused is not None:
            print(f"setpay keys delete: {refused}", file=err)
            return 1
        # As a renewal does: before the lock, so that a running bank is named without
        # taking it; after, so that a bank started meanwhile is seen.
        check_stopped(config, before=before)
        with holding_keys_lock(config, DELETE_TASK):
            check_stopped(config, before=before)
            return _run(args, out, err, uri)
    except (ConfigError, ProvisioningError) as exc:
        print(f"setpay keys delete: {exc}", file=err)
        return 1


def _check_new_version(label: str) -> None:
    """Refuse a label no new version may be made of, or one ``check_label`` refuses."""
    check_label(label)
    if label == TOKEN_SEALING_LABEL:
        raise PermanentBackendError(
            f"{label!r} is the bank's token-sealing key: setpay init makes it once and nothing "
            "renews it (its token seed and ledger.keys open with that version only), so no "
            "other version is made"
        )


def _sealing_key_kept(args: argparse.Namespace, config: BankConfig) -> str | None:
    """Why ``delete`` must not take the token-sealing key version ``args`` names from the
    bank ``config`` (every version at once, or the one ``ledger.keys`` is sealed to: every
    stored card number and the token seed open with it alone), None if it may."""
    if args.label != TOKEN_SEALING_LABEL:
        return None
    from gateway.token_key import kept_version  # noqa: PLC0415 - as _delete_guarded's

    kept = kept_version(config)
    if args.all_versions or args.version == kept:
        which = "every version" if args.all_versions else f"v{kept}"
        return (
            f"{which} of {TOKEN_SEALING_LABEL!r} is not deleted: ledger.keys is sealed to "
            f"{'v' + str(kept) if kept is not None else 'it'}, and the bank's token seed and "
            "every stored card number open with that key alone"
        )
    return None


def _generate(args: argparse.Namespace, uri: str) -> Action:
    label, usage, algorithm = args.label, KeyUsage(args.usage), KeyAlgorithm(args.algorithm)
    _check_new_version(label)
    check_combination(usage, algorithm)

    def generate(backend: KeyBackend, out: TextIO) -> None:
        key = backend.generate(label, usage, algorithm)
        print(f"generated {_describe(key)}", file=out)

    return generate


def _import(args: argparse.Namespace, uri: str) -> Action:
    label, usage = args.label, KeyUsage(args.usage)
    _check_new_version(label)
    private_key = read_private_key(args.pem, args.pem_passphrase_file)
    # Its type, size, curve and exponent, as every backend checks them on import.
    check_combination(usage, algorithm_of_private(private_key))

    def import_key(backend: KeyBackend, out: TextIO) -> None:
        key = backend.import_key(label, usage, private_key)
        print(f"imported {_describe(key)}", file=out)

    return import_key


def _list(args: argparse.Namespace, uri: str) -> Action:
    return lambda backend, out: _print_table(backend.list_keys(), out)


def _print_table(keys: Iterable[KeyHandle], out: TextIO) -> None:
    rows = [("LABEL", "VERSION", "USAGE", "ALGORITHM", "KEM", "SHA-256 OF PUBLIC KEY")]
    for key in keys:
        rows.append(
            (
                key.label,
                str(key.version),
                key.usage.value,
                key.algorithm.value,
                key.kem.value if key.kem is not None else "-",
                _fingerprint(key),
            )
        )
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]) - 1)]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        print("  ".join([*cells, row[-1]]), file=out)


def _upgrade_keystore(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """``upgrade-keystore``: show every key version, then authenticate its metadata if
    ``--yes`` (a dry run without)."""
    command = "setpay keys upgrade-keystore"
    try:
        parsed = parse_key_uri(args.keys)
        if not isinstance(parsed, SoftwareKeyURI) or parsed.directory is None:
            print(
                f"{command}: {describe_uri(args.keys)} is not a software keystore "
                "(soft:DIR): only those are upgraded",
                file=err,
            )
            return 2
        directory = parsed.directory

        def show(plan: Upgrade) -> None:
            if plan.authenticated:
                names = _versions(plan.authenticated)
                print(
                    f"{command}: WARNING: keystore.json is older than its entries (an upgrade "
                    f"cut short, or restored from a pre-upgrade copy?). These already carry a "
                    f"valid MAC: {names}. "
                    "Check every key below before using the keystore.",
                    file=err,
                )
            print(f"keystore {directory}: the key metadata to authenticate:", file=out)
            _print_table(plan.keys, out)
            checked = [key for key in plan.keys if key not in plan.uncertified]
            if checked:
                print(
                    "agrees with its certificate (public key, key usage, KEM): "
                    + _versions(checked),
                    file=out,
                )
            if plan.uncertified:
                print(f"no certificate to check against: {_versions(plan.uncertified)}", file=out)

        passphrase = parsed.pin_source.read()
        # The KEM is checked with hsm's checks, before ``show``: a refusal names every
        # disagreement found, shows nothing and writes nothing.
        result = Keystore.upgrade(
            directory, passphrase, show, dry_run=not args.yes, check=_kem_disagreement
        )
    except KeyBackendError as exc:
        print(f"{command}: {exc}", file=err)
        return 1
    if not result.needed:
        print(f"keystore {directory} is already upgraded (format 3): nothing to do", file=out)
        return 0
    if not result.written:
        print("nothing written: run again with --yes to authenticate these", file=out)
        return 0
    removed = result.stale_temp_files
    print(
        f"upgraded keystore {directory}: the metadata of {len(result.keys)} key version(s) "
        "is authenticated (MAC under the passphrase) and keystore.json is format 3; "
        + (f"removed {removed} temp file(s) left by killed writes; " if removed else "")
        + "an earlier setpay no longer opens it",
        file=out,
    )
    return 0


def _kem_disagreement(key: KeyHandle, der: bytes) -> str | None:
    """What certificate ``der`` says against the KEM ``key``'s metadata records; None if
    they agree (``hsm.keystore_upgrade.CertificateCheck``).

    setpay's CAs name the KEM on every key-exchange certificate, and on no other (peers
    refuse one without it): so a certificate without the extension agrees only with
    metadata naming no KEM, its absence being a missing fact, refused as ``hsm`` refuses
    a certificate without keyUsage.
    """
    # Imported here: only an upgrade reads SET's extensions, and setcore.pki loads much of
    # setcore and protobuf, which no other keys command needs.
    from setcore.errors import SetcoreError  # noqa: PLC0415
    from setcore.pki.certificate import load_certificate  # noqa: PLC0415
    from setcore.pki.extensions import read_kem  # noqa: PLC0415

    try:
        certified = read_kem(load_certificate(der))
    except SetcoreError:  # hsm refuses an unreadable certificate first: its extension
        return "its certificate's kemAlgorithm extension is not one setpay can read"
    if certified is key.kem:
        return None
    says = f"says KEM {key.kem.value}" if key.kem is not None else "names no KEM"
    if certified is None:
        return f"the metadata {says}, its certificate has no kemAlgorithm"
    return f"the metadata {says}, its certificate's kemAlgorithm is {certified.value}"


def _versions(keys: Iterable[KeyHandle]) -> str:
    return ", ".join(f"{key.label} v{key.version}" for key in keys)


def _delete(args: argparse.Namespace, uri: str) -> Action:
    label = args.label
    check_label(label)
    # Every version only when asked by name (argparse requires one of the two).
    version = None if args.all_versions else args.version

    def delete(backend: KeyBackend, out: TextIO) -> None:
        backend.delete(label, version)
        which = "every version" if version is None else f"v{version}"
        print(f"deleted {label!r} ({which})", file=out)

    return delete


def _adopt(args: argparse.Namespace, uri: str) -> Action:
    ck_id, label, usage = args.id, args.label, KeyUsage(args.usage)
    _check_new_version(label)
    try:
        software = isinstance(parse_key_uri(uri), SoftwareKeyURI)
    except KeyBackendError:
        software = False  # opening it says what is wrong with it
    if software:
        raise UnsupportedAlgorithm("adopt works only on pkcs11: key URIs")

    def adopt(backend: KeyBackend, out: TextIO) -> None:
        # Imported here: only a token can hold keys made by other tools, and importing
        # hsm.pkcs11 loads python-pkcs11.
        from hsm.pkcs11 import Pkcs11Backend  # noqa: PLC0415

        if not isinstance(backend, Pkcs11Backend):
            raise UnsupportedAlgorithm("adopt works only on pkcs11: key URIs")
        key = backend.adopt(ck_id, label, usage)
        print(f"adopted {_describe(key)}", file=out)

    return adopt


def _object_id(text: str) -> bytes:
    """An argparse ``type``: a CKA_ID in hex, at least one byte (setpay finds a key by its
    id: a key without one cannot be told from another)."""
    try:
        ck_id = bytes.fromhex(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be a CKA_ID in hex digits, not {shown(text)}"
        ) from None
    if not ck_id:
        raise argparse.ArgumentTypeError("must be a CKA_ID of at least one byte, in hex digits")
    return ck_id


def _describe(key: KeyHandle) -> str:
    kem = f", kem {key.kem.value}" if key.kem is not None else ""
    return (
        f"{key.label} v{key.version} ({key.usage.value}, {key.algorithm.value}{kem}) "
        f"public key sha256:{_fingerprint(key)}"
    )


def _fingerprint(key: KeyHandle) -> str:
    return colon_hex(hashlib.sha256(public_key_der(key.public_key)).digest())


def _backend_argument(parser: argparse.ArgumentParser, *, required: bool = True) -> None:
    parser.add_argument(
        "--keys",
        required=required,
        metavar="URI",
        help="key URI: soft:ephemeral, soft:DIR[;pin-source=...], pkcs11:module=...;token=..."
        + ("" if required else " (with --config: the bank's, the default)"),
    )


#: What a command does with the open backend, made (and its input checked) before it opens.
Action = Callable[[KeyBackend, TextIO], None]

_COMMANDS: dict[str, Callable[[argparse.Namespace, str], Action]] = {
    "generate": _generate,
    "import": _import,
    "list": _list,
    "delete": _delete,
    "adopt": _adopt,
}
