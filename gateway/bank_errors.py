"""The bank's provisioning errors: one tree for making, loading and renewing a bank.

Here rather than in ``gateway.bank_pki`` (which re-exports them, and where callers import
them from) so that ``gateway.renewal_lock``, which ``bank_pki`` itself uses, can raise
them too.
"""

from __future__ import annotations


class ProvisioningError(Exception):
    """A bank cannot be created or loaded as asked."""


class BankExists(ProvisioningError):
    """The directory or the key backend already holds a bank: nothing is overwritten."""


class BankIncomplete(ProvisioningError):
    """A bank directory lacks a file ``setpay init`` writes (a certificate, ca.db)."""
