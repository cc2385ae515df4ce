"""setpay's own distribution: built with the oldest setuptools pyproject.toml allows, the
wheel declares its licence the PEP 639 way and carries the licence text."""

from __future__ import annotations

import shutil
import tomllib
import zipfile
from pathlib import Path

from packaging.requirements import Requirement

from .commands import REPO, run, venv_bin

# What a wheel is made of (the Dockerfile's build stage copies these too).
SOURCES = ("pyproject.toml", "README.md", "LICENSE", "protos", "setcore", "hsm", "gateway",
           "clients", "cli")  # fmt: skip


def _oldest_allowed(requirement: Requirement) -> str:
    (lower,) = (s.version for s in requirement.specifier if s.operator == ">=")
    return lower


def test_wheel_from_the_oldest_allowed_setuptools_carries_the_license(tmp_path: Path) -> None:
    config = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert config["project"]["license"] == "Apache-2.0"
    (backend,) = (
        Requirement(text)
        for text in config["build-system"]["requires"]
        if Requirement(text).name == "setuptools"
    )
    source = tmp_path / "src"
    source.mkdir()
    for name in SOURCES:
        if (REPO / name).is_dir():
            shutil.copytree(
                REPO / name, source / name, ignore=shutil.ignore_patterns("__pycache__")
            )
        else:
            shutil.copy2(REPO / name, source / name)
    constraint = tmp_path / "build-constraints.txt"
    constraint.write_text(f"setuptools=={_oldest_allowed(backend)}\n")
    wheels = tmp_path / "wheels"
    run(
        [str(venv_bin() / "python"), "-m", "pip", "wheel", "--quiet", "--no-deps",
         "--build-constraint", str(constraint), "--wheel-dir", str(wheels), str(source)],
    )  # fmt: skip
    (wheel,) = wheels.glob("setpay-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        (info,) = {n.split("/", 1)[0] for n in names if ".dist-info/" in n}
        fields = archive.read(f"{info}/METADATA").decode().split("\n\n", 1)[0].splitlines()
        license_text = archive.read(f"{info}/licenses/LICENSE").decode()
    assert "License-Expression: Apache-2.0" in fields
    assert "License-File: LICENSE" in fields
    assert license_text == (REPO / "LICENSE").read_text()
    assert license_text.split()[:3] == ["Apache", "License", "Version"]


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
