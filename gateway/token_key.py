"""The gateway's token-sealing key (``gateway-token``): one version, never renewed.

``setpay init`` makes the key once, writes the token seed beside the bank (a KEM
ciphertext to that version) and seals ``ledger.keys`` to it. Every capture and
authorization token the gateway seals is under the master key that seed opens to
(``setcore.token_seal``), so the bank must open the seed with the version it was made for.
Nothing renews the key, and ``setpay keys`` refuses to make another version; a version made
by another tool would be the newest, and the seed opened with it gives another master key:
with an EC key silently, every token sealed before then refused WRONG_RECIPIENT; with RSA,
a start refused for a seed that does not open. A backend holding more than one version is
therefore refused at the start, before any token is sealed or opened. Which version is
the bank's, ``ledger.keys`` says (it is sealed to the version ``setpay init`` made, and
names it with its thumbprint: ``sealed_to``): the refusal names that one to keep and
gives the command that deletes each other one; a ``ledger.keys`` naming none of them
(plaintext still, or sealed elsewhere) gets no command at all, as a guess could destroy
the key every stored card number is sealed under. ``setpay keys delete`` refuses that
version too, and every version at once.
"""

from __future__ import annotations

from gateway.bank_errors import BankIncomplete
from gateway.config import BankConfig
from hsm.base import KeyBackend, KeyHandle
from setcore.registration import key_thumbprint, spki_of


def sole_version(backend: KeyBackend, config: BankConfig) -> KeyHandle:
    """The one version of the bank's token-sealing key; BankIncomplete when ``backend``
    holds more, naming the version to keep (the one ``ledger.keys`` is sealed to) and the
    command that deletes each other one, or no command if ``ledger.keys`` names none."""
    # Here: gateway.bank_pki, which names the bank's keys, loads the bank through this;
    # gateway.ledger_keys imports gateway.bank_pki.
    from gateway.bank_pki import GATEWAY_TOKEN_LABEL as label  # noqa: PLC0415, N811
    from gateway.bank_pki import delete_key_command  # noqa: PLC0415
    from gateway.ledger_keys import sealed_to  # noqa: PLC0415

    newest = backend.get(label)
    keys = {key.version: key for key in backend.list_keys() if key.label == label}
    if sorted(keys) in ([], [newest.version]):
        return newest
    named = ", ".join(f"v{version}" for version in sorted(keys))
    said = (
        f"key {label!r} has versions {named}, and the bank's token seed opens with only the"
        " one setpay init made (nothing renews it): tokens sealed under it open under no"
        " other"
    )
    sealed = sealed_to(config)
    kept = [
        version for version, key in keys.items()
        if sealed == (label, version, key_thumbprint(spki_of(key.public_key)))
    ]  # fmt: skip
    if not kept:
        raise BankIncomplete(
            f"{said}. ledger.keys is sealed to none of them (or not sealed yet), so which is"
            " the bank's cannot be told here: find the version setpay init made (the first"
            " unless the backend held this label before) and delete only the others"
        )
    commands = "; ".join(
        delete_key_command(config, label, version) for version in sorted(keys) if version != kept[0]
    )
    raise BankIncomplete(
        f"{said}. Keep v{kept[0]}, the version ledger.keys is sealed to, and delete the"
        f" others: {commands}"
    )


def kept_version(config: BankConfig) -> int | None:
    """The token-sealing key's version ``ledger.keys`` is sealed to, None if it names
    none: the one version of it no command may delete."""
    from gateway.bank_pki import GATEWAY_TOKEN_LABEL  # noqa: PLC0415
    from gateway.ledger_keys import sealed_to  # noqa: PLC0415

    sealed = sealed_to(config)
    return sealed[1] if sealed is not None and sealed[0] == GATEWAY_TOKEN_LABEL else None
