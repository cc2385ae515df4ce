"""``setpay ca list`` escapes what is not printable in a stored subject.

The CA used to take a merchant ID with a newline (it refuses one now: ``tests/gateway/ca/
test_merchant_id_characters.py``), and the listing printed it as it was: one certificate
showed as two lines, the second made up by the merchant, in the listing an operator
reads to pick what to revoke. A subject stored before is shown escaped, on its own line.
Real parts: a bank made by ``init_bank``, a certificate its Merchant CA issued, recorded
in its ca.db as the CA records one.
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from cli import ca
from gateway.bank_pki import load_bank_pki, open_ca_store
from gateway.ca.publishing import record_certificate
from gateway.config import load
from gateway.provisioning import init_bank
from setcore.pki.extensions import MerchantData
from setcore.pki.issuance import issue_merchant
from setcore.pki.roles import CertificateUsage

FORGED = "m-x\n00:11:22  01  merchant  signature  2031-01-01  live  m-acme"
TURNED = "m-\u202eemca-m"


def test_a_stored_subject_with_control_characters_is_listed_escaped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    result = init_bank(tmp_path / "bank", env={})
    config = load(result.config_path, env={})
    pki = load_bank_pki(config)
    store = open_ca_store(config)
    try:
        mca = pki.authority_keys().merchant.issuing
        at = datetime.now(UTC)
        with store.write() as tx:
            for merchant_id in (FORGED, TURNED):
                public = ec.generate_private_key(ec.SECP256R1()).public_key()
                der = issue_merchant(
                    mca, public, CertificateUsage.SIGNATURE,
                    MerchantData(merchant_id, "Shop", pan_allowed=False),
                )  # fmt: skip
                record_certificate(tx, der, mca, at)
    finally:
        store.close()
        pki.close()
    parser = argparse.ArgumentParser(prog="setpay")
    ca.add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["ca", "list", "--config", str(result.config_path)])
    assert ca.run(args) == 0
    lines = capsys.readouterr().out.splitlines()
    merchants = [line for line in lines if " merchant " in line]
    assert len(merchants) == 2, lines  # one line each, none forged
    assert any(line.endswith(FORGED.replace("\n", "\\n")) for line in merchants)
    assert any(line.endswith("m-\\u202eemca-m") for line in merchants)
    assert not any(ch in "".join(lines) for ch in "\n\u202e")
