"""A key-exchange key's KEM edited in a software keystore and authenticated all the same.

The way the review found: the keystore is one an earlier setpay wrote (no MAC), its
``N.json`` is edited to name another key transport, and the certificate beside it is kept
(an upgrade by a release that did not compare the KEM), replaced by one of the same key
that the editor made (which ``hsm``'s check reads but cannot verify), or removed. The
upgrade then MACs the edited metadata: the key opens with a KEM no CA certified, unless
the run-time check (``setcore.credentials.check_key_exchange_pair``) refuses it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from hsm.base import KemAlgorithm
from hsm.keystore import Keystore
from setcore.pki.extensions import kem_extension
from setcore.pki.issuance import key_usage
from tests.hsm.keycheck import certificate_for
from tests.hsm.legacy_keystore import legacy_meta, make_legacy

#: What becomes of the version's certificate (N.cert.der) beside the edited metadata.
Certificate = Literal["kept", "forged", "deleted"]


def authenticated_kem_edit(
    keystore: Path,
    passphrase: str,
    label: str,
    version: int,
    kem: KemAlgorithm | None,
    certificate: Certificate = "kept",
) -> None:
    """Make version ``version`` of ``label`` in ``keystore`` accept ``kem``, with a valid
    MAC: edited as an old keystore, then upgraded with ``hsm``'s checks alone."""
    make_legacy(keystore, passphrase)
    label_dir = keystore / "keys" / label
    meta_path = label_dir / f"{version}.json"
    meta = json.loads(meta_path.read_text())
    meta["kem"] = kem.value if kem is not None else None
    meta_path.write_text(legacy_meta(meta))
    cert_path = label_dir / f"{version}.cert.der"
    if certificate == "deleted":
        cert_path.unlink()
    elif certificate == "forged":
        public_key = serialization.load_pem_public_key(
            (label_dir / f"{version}.pub.pem").read_bytes()
        )
        assert isinstance(public_key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey)
        rsa_key = isinstance(public_key, rsa.RSAPublicKey)
        usage = key_usage(encipher=True) if rsa_key else key_usage(agree=True)
        said = [] if kem is None else [(kem_extension(kem), False)]
        made = certificate_for(public_key, "the editor", extensions=[(usage, True), *said])
        cert_path.write_bytes(made)
    upgrade = Keystore.upgrade(keystore, passphrase, lambda plan: None)
    assert upgrade.written
