"""PKCS#11 initialized after fork, never before: what a forking process can check."""

from __future__ import annotations

import os

import pytest

from hsm.cryptoki import check_not_initialized, loaded_modules
from hsm.errors import PermanentBackendError
from hsm.pkcs11 import Pkcs11Backend

from .testbed import SOFTHSM_MODULE


@pytest.mark.integration
def test_a_process_that_initialized_a_module_is_told_before_it_forks(
    pkcs11_backend: Pkcs11Backend,
) -> None:
    assert SOFTHSM_MODULE in loaded_modules()
    with pytest.raises(PermanentBackendError, match="before it could fork a worker"):
        check_not_initialized("fork a worker")
    pid = os.fork()
    if pid == 0:  # the child: what it inherited is not its own initialization
        os._exit(0 if loaded_modules() == [] else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
