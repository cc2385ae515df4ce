"""The gateway's token-sealing key (``gateway-token``): one version, never renewed.

``setpay init`` makes the key once, writes the token seed beside the bank (a KEM
ciphertext to that version) and seals ``ledger.keys`` to it. Every capture and
authorization token the gateway seals is under the master key that seed opens to
(``setcore.token_seal``), so the bank must open the seed with the version it was made for.
Nothing renews the key, and ``setpay keys`` refuses to make another version; a version made
by another tool would be the newest, and the seed opened with it gives another master key:
with an EC key silently, every token sealed before then refused WRONG_RECIPIENT; with RSA,
a start refused for a seed that does not open. A backend holding more than one version is
therefore refused at the start, naming them, before any token is sealed or opened.
"""

from __future__ import annotations

from gateway.bank_errors import BankIncomplete
from gateway.config import BankConfig
from hsm.base import KeyBackend, KeyHandle


def sole_version(backend: KeyBackend, config: BankConfig) -> KeyHandle:
    """The one version of the bank's token-sealing key; BankIncomplete when ``backend``
    holds more, with the command that deletes each as the remedy to choose from."""
    # Here: gateway.bank_pki, which names the bank's keys, loads the bank through this.
    from gateway.bank_pki import GATEWAY_TOKEN_LABEL as label  # noqa: PLC0415, N811
    from gateway.bank_pki import delete_key_command  # noqa: PLC0415

    newest = backend.get(label)
    versions = sorted({key.version for key in backend.list_keys() if key.label == label})
    if versions in ([], [newest.version]):
        return newest
    named = ", ".join(f"v{version}" for version in versions)
    commands = "; ".join(delete_key_command(config, label, version) for version in versions)
    raise BankIncomplete(
        f"key {label!r} has versions {named}, and the bank's token seed opens with only the"
        ' one setpay init made (the one ledger.keys names under "key"; nothing renews it):'
        " tokens sealed under it open under no other. Delete every other version with the"
        f" matching one of: {commands}"
    )
