"""Algorithm profiles: which key types each party uses.

Two profiles, both first-class (DESIGN.md section 3): ``ec`` (ECDSA P-256 signatures,
ECDH P-256 + HKDF key transport; the default) and ``rsa`` (SET's classic shape: RSA-PSS
signatures and RSA-OAEP key transport). RSA keys are 2048 bits everywhere: DESIGN.md asks
for RSA >= 2048 and the throughput targets are stated for RSA-2048.
"""

from __future__ import annotations

from dataclasses import dataclass

from hsm.base import KeyAlgorithm
from setcore.errors import ConfigurationError


@dataclass(frozen=True)
class Profile:
    """The key algorithms of one profile."""

    name: str
    ca_key: KeyAlgorithm
    signature_key: KeyAlgorithm
    key_exchange_key: KeyAlgorithm


EC = Profile("ec", KeyAlgorithm.EC_P256, KeyAlgorithm.EC_P256, KeyAlgorithm.EC_P256)
RSA = Profile("rsa", KeyAlgorithm.RSA_2048, KeyAlgorithm.RSA_2048, KeyAlgorithm.RSA_2048)

PROFILES: dict[str, Profile] = {EC.name: EC, RSA.name: RSA}
DEFAULT_PROFILE = EC


def profile_named(name: str) -> Profile:
    """The profile called ``name``; raises ConfigurationError for an unknown one."""
    try:
        return PROFILES[name]
    except KeyError:
        known = ", ".join(sorted(PROFILES))
        raise ConfigurationError(f"unknown profile {name!r} (known: {known})") from None
