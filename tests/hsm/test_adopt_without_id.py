"""``adopt`` of a key made by another tool without a CKA_ID: refused, nothing changed."""

from __future__ import annotations

import subprocess
import sys

import pytest

from hsm.base import KeyUsage
from hsm.errors import PermanentBackendError
from hsm.pkcs11 import Pkcs11Backend

from .testbed import SOFTHSM_MODULE, SoftToken, pkcs11_tool

# Run in a process of its own (logged in there): a vendor tool that sets no CKA_ID.
_WITHOUT_ID = """
import sys
import pkcs11
from pkcs11 import Attribute, KeyType, Mechanism
module, label, pin = sys.argv[1:4]
token = pkcs11.lib(module).get_token(token_label=label)
with token.open(rw=True, user_pin=pin) as session:
    session.generate_keypair(
        KeyType.EC, store=True, mechanism=Mechanism.EC_KEY_PAIR_GEN,
        public_template={Attribute.EC_PARAMS: bytes.fromhex("06082a8648ce3d030107"),
                         Attribute.LABEL: "no-id", Attribute.VERIFY: True},
        private_template={Attribute.LABEL: "no-id", Attribute.SENSITIVE: True,
                          Attribute.EXTRACTABLE: False, Attribute.PRIVATE: True,
                          Attribute.SIGN: True, Attribute.DERIVE: False},
    )
"""


@pytest.mark.integration
def test_a_key_without_an_id_is_not_adopted_and_nothing_is_written(token: SoftToken) -> None:
    """The old code wrote setpay metadata naming no id (which no reading ever matches to
    a key), narrowed the key, then said the key "vanished after creation"; each retry
    wrote another data object and used up another version number."""
    done = subprocess.run(
        [sys.executable, "-c", _WITHOUT_ID, SOFTHSM_MODULE, token.label, token.pin],
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    objects_before = pkcs11_tool(token, "--list-objects").stdout
    backend = Pkcs11Backend(token.config())
    try:
        listed = backend.list_keys()
        assert [(key.label, key.version) for key in listed] == [("no-id", 1)]
        for _ in range(2):
            with pytest.raises(PermanentBackendError, match="without a CKA_ID cannot be adopted"):
                backend.adopt(b"", "adopted", KeyUsage.SIGNATURE)
        assert backend.list_keys() == listed
    finally:
        backend.close()
    assert pkcs11_tool(token, "--list-objects").stdout == objects_before
