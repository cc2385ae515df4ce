"""The wallet's configuration: ``wallet.toml`` in the wallet directory plus
``SETPAY_WALLET_*`` environment variables.

The wallet directory holds::

    wallet.toml          this configuration
    card.sealed          PAN, expiry, CardSecret, PANSecret: AES-256-GCM under the
                         passphrase (mode 0600; see ``clients.wallet.vault``)
    certs/root.pem       the brand root, pinned (placed here out of band)
    certs/chain.pem      the Cardholder CA certificate (written by registration and renewal)
    purchases.json       the wallet's purchases (ids and amounts, no card data)
    keys/                the software keystore, when the key URI is soft:keys

Example::

    [wallet]
    brand = "setpay"
    keys = "soft:keys"               # passphrase from $SETPAY_KEYSTORE_PASSPHRASE; or
                                     # soft:keys;pin-source=file:keys.pass, or
                                     # pkcs11:module=...;token=...;pin-source=file:...
    key_label = "cardholder-sig"     # every certified version is kept (see renew)
    passphrase_file = "passphrase"   # else $SETPAY_WALLET_PASSPHRASE

    [ca]                             # the bank's CertificateAuthority port
    target = "127.0.0.1:7444"
    tls_ca = "certs/tls-ca.pem"

    [merchant]                       # the default merchant (server-authenticated TLS)
    target = "127.0.0.1:8443"
    tls_ca = "certs/tls-ca.pem"

Environment overrides: ``SETPAY_WALLET_KEYS``, ``SETPAY_WALLET_CA`` and
``SETPAY_WALLET_MERCHANT`` (targets: without their table, refused by the commands that
call that peer, not by the others); the passphrase itself comes only from
``SETPAY_WALLET_PASSPHRASE`` or the passphrase file, never from this file. A table or
key the file may not hold is refused, naming the file and the key
(``clients.config_file``), as is a file that is not UTF-8.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from clients import config_file
from clients.config_file import PEER_KEYS, check_keys
from clients.errors import ConfigError
from clients.identity import resolve_key_uri
from clients.peers import PeerConfig, check_target, get, peer_table, subtable, toml_table
from setcore.language import MAX_LANGUAGE_CHARS, is_language_tag

CONFIG_FILE = "wallet.toml"
CARD_FILE = "card.sealed"
PURCHASES_FILE = "purchases.json"
# Every table and key wallet.toml may hold; anything else is refused (a misspelt key
# would otherwise leave its default in force without a word).
_TABLES: dict[str, frozenset[str]] = {
    "wallet": frozenset(
        {"brand", "keys", "key_label", "language", "root", "chain", "passphrase_file"}
    ),
    "ca": PEER_KEYS,
    "merchant": PEER_KEYS,
}


@dataclass(frozen=True)
class WalletConfig:
    """Everything the wallet needs, validated."""

    base_dir: Path
    brand_id: str
    keys: str
    key_label: str
    language: str
    root: Path
    chain: Path
    passphrase_file: Path | None
    ca: PeerConfig | None
    merchant: PeerConfig | None

    @property
    def card_file(self) -> Path:
        """The sealed card file."""
        return self.base_dir / CARD_FILE

    @property
    def purchases_file(self) -> Path:
        """The record of purchases (no card data)."""
        return self.base_dir / PURCHASES_FILE

    def keys_uri(self) -> str:
        """The key URI, its relative paths (``soft:DIR``, ``pin-source=file:PATH``)
        resolved against the wallet directory."""
        return resolve_key_uri(self.keys, self.base_dir)

    def require_ca(self) -> PeerConfig:
        """The CA peer; ``ConfigError`` when the configuration names none."""
        if self.ca is None:
            raise ConfigError(
                f"{self.base_dir / CONFIG_FILE} has no [ca] table: add one with the CA's "
                "target and tls_ca (SETPAY_WALLET_CA only replaces its target)"
            )
        return self.ca

    def require_merchant(self) -> PeerConfig:
        """The default merchant peer; ``ConfigError`` when the configuration names none."""
        if self.merchant is None:
            # An address alone is not enough: the merchant's TLS CA (tls_ca) is what the
            # channel trusts, and only the table names it.
            raise ConfigError(
                f"{self.base_dir / CONFIG_FILE} has no [merchant] table: add one with the "
                "merchant's target and tls_ca (--merchant and SETPAY_WALLET_MERCHANT only "
                "replace its target)"
            )
        return self.merchant


def _path(base: Path, text: str) -> Path:
    p = Path(text)
    return p if p.is_absolute() else base / p


def _required(table: Mapping[str, Any], key: str, default: str) -> str:
    value: str = get(table, key, str, default, "wallet")
    if not value:
        raise ConfigError(f"wallet.{key} must not be empty")
    return value


def _peer(peer: PeerConfig | None, env: Mapping[str, str], variable: str) -> PeerConfig | None:
    """``peer`` with its target replaced by ``variable`` when set. Without the table the
    variable cannot apply (it replaces only the target); the commands that use the peer
    say so (``require_ca``, ``require_merchant``), not the ones that never call it."""
    if variable not in env:
        return peer
    if peer is None:
        check_target(env[variable], variable)
        return None
    return peer.with_target(env[variable], variable)


def load(directory: Path, env: Mapping[str, str] | None = None) -> WalletConfig:
    """Load ``directory/wallet.toml``, apply the environment, validate."""
    env = os.environ if env is None else env
    path = directory / CONFIG_FILE
    raw = config_file.read(path, "wallet")
    config_file.refuse_unknown(raw, _TABLES, path)
    base = directory.resolve()
    w = subtable(raw, "wallet", path) or {}
    ca, merchant = subtable(raw, "ca", path), subtable(raw, "merchant", path)
    passphrase_file = get(w, "passphrase_file", str, None, "wallet")
    config = WalletConfig(
        base_dir=base,
        brand_id=_required(w, "brand", "setpay"),
        keys=check_keys(get(w, "keys", str, "soft:keys", "wallet"), "wallet.keys"),
        key_label=_required(w, "key_label", "cardholder-sig"),
        language=get(w, "language", str, "en", "wallet"),
        root=_path(base, get(w, "root", str, "certs/root.pem", "wallet")),
        chain=_path(base, get(w, "chain", str, "certs/chain.pem", "wallet")),
        passphrase_file=_path(base, passphrase_file) if passphrase_file else None,
        ca=None if ca is None else PeerConfig.from_table(ca, "ca", base, path),
        merchant=(
            None if merchant is None else PeerConfig.from_table(merchant, "merchant", base, path)
        ),
    )
    changes: dict[str, Any] = {
        "ca": _peer(config.ca, env, "SETPAY_WALLET_CA"),
        "merchant": _peer(config.merchant, env, "SETPAY_WALLET_MERCHANT"),
    }
    if "SETPAY_WALLET_KEYS" in env:
        changes["keys"] = check_keys(env["SETPAY_WALLET_KEYS"], "SETPAY_WALLET_KEYS")
    config = replace(config, **changes)
    if not is_language_tag(config.language):
        # Merchants refuse a PInitReq whose language is not such a tag: said here, at start.
        raise ConfigError(
            f"{path}: wallet.language must be a language tag such as en-GB"
            f" (1..{MAX_LANGUAGE_CHARS} ASCII letters, digits or '-')"
        )
    return config


def write_config(
    directory: Path,
    *,
    ca: PeerConfig,
    merchant: PeerConfig | None = None,
    brand_id: str = "setpay",
    keys: str = "soft:keys",
    key_label: str = "cardholder-sig",
    passphrase_file: str | None = None,
) -> Path:
    """Write ``directory/wallet.toml`` (for the demo and tests)."""
    directory.mkdir(parents=True, exist_ok=True)
    base = directory.resolve()
    parts = [
        toml_table(
            "wallet",
            {
                "brand": brand_id,
                "keys": keys,
                "key_label": key_label,
                "passphrase_file": passphrase_file,
            },
        ),
        peer_table("ca", ca, base),
    ]
    if merchant is not None:
        parts.append(peer_table("merchant", merchant, base))
    path = directory / CONFIG_FILE
    path.write_text("\n".join(parts))
    return path
