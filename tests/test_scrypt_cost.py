"""The product's scrypt cost is the one it ships with, whatever the tests run at.

``tests/conftest.py`` lowers the cost of the keystores and card files the test process
makes; what it lowered is kept, so a change of the product's own cost (a passphrase's
guard against guessing) is seen here rather than hidden by the tests' value.
"""

from __future__ import annotations

import pytest

from clients.wallet import vault
from hsm import keystore_header
from tests.conftest import PRODUCT_SCRYPT_N, TEST_SCRYPT_N


@pytest.mark.parametrize("made", sorted(PRODUCT_SCRYPT_N))
def test_the_product_stretches_a_passphrase_with_scrypt_at_2_to_the_15(made: str) -> None:
    assert PRODUCT_SCRYPT_N[made] == 2**15


def test_the_tests_make_files_at_their_own_lower_cost() -> None:
    assert keystore_header.SCRYPT_N == vault.SCRYPT_N == TEST_SCRYPT_N < 2**15
