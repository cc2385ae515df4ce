"""setpay's own distribution: built with the oldest setuptools pyproject.toml allows, the
wheel declares its licence the PEP 639 way and carries the licence text (the image's
wheel, built with the pinned setuptools, is checked the same way in test_image.py).

The build fetches that setuptools from the package index (build_stage.py): without the
index the test fails with pip's error.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from packaging.requirements import Requirement

from .build_stage import SETPAY_LICENCE, build_wheel
from .commands import REPO, run, venv_bin


def _oldest_allowed(requirement: Requirement) -> str:
    (lower,) = (s.version for s in requirement.specifier if s.operator == ">=")
    return lower


def test_wheel_from_the_oldest_allowed_setuptools_carries_the_license(tmp_path: Path) -> None:
    config = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert config["project"]["license"] == SETPAY_LICENCE.expression
    assert SETPAY_LICENCE.text.split()[:3] == ["Apache", "License", "Version"]
    (backend,) = (
        Requirement(text)
        for text in config["build-system"]["requires"]
        if Requirement(text).name == "setuptools"
    )
    oldest = _oldest_allowed(backend)
    wheel = build_wheel(tmp_path, oldest)
    assert wheel.generator() == f"setuptools ({oldest})"
    assert wheel.licence() == SETPAY_LICENCE


def test_runtime_checks_survive_python_optimize() -> None:
    # An operator may run setpay with -O (or PYTHONOPTIMIZE set), which strips asserts:
    # the checks that guard what the bank decides and stores must be explicit.
    probe = (
        "from gateway.settlement import _items\n"
        "from gateway.ledger.outcome_codec import _decode\n"
        "for check, args in ((_items, (object(), 1)), (_decode, ([1, 2], tuple[int, int]))):\n"
        "    try:\n"
        "        check(*args)\n"
        "    except TypeError:\n"
        "        continue\n"
        "    raise SystemExit(f'{check.__module__}.{check.__name__} let it through')\n"
    )
    run([str(venv_bin() / "python"), "-O", "-c", probe])
