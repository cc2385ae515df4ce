"""How the command line shows a digest: hex pairs joined by colons.

``openssl x509 -fingerprint`` shows fingerprints this way, and it matters beyond looks:
64 plain hex characters hold a run of 13-19 decimal digits often enough that, now and
then, one passes the Luhn check, and a PAN scanner (a bank's DLP on the logs; ours in the
tests did, before it learned to set hex digests aside) reports a card number in the
output of ``setpay init``. Between colons no run
is longer than two digits. ``setpay ca revoke --thumb`` reads both forms.
"""

from __future__ import annotations


def colon_hex(digest: bytes) -> str:
    """``digest`` as upper-case hex pairs joined by colons (``AB:01:...``)."""
    return ":".join(f"{byte:02X}" for byte in digest)
