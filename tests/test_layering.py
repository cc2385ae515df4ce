"""The import layering of DESIGN.md section 2, checked by import-linter's contracts.

protos <- setcore <- {gateway, clients} <- cli; hsm depends on none of them and setcore
sees only hsm's interface. The contracts live in pyproject.toml; this test runs them, and
proves each can fail by checking a copy of the tree with a module added that breaks it
(a copy, so that a probe never shows in the shared tree while other runs lint it).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
# The packages import-linter analyses from the working directory; setpay (the generated
# wire contract, under protos/) is found through the installed distribution.
PACKAGES = ("setcore", "hsm", "gateway", "clients", "cli")
LAYERS = "protos <- setcore <- {gateway, clients} <- cli; hsm apart"
HSM_APART = "hsm knows nothing of SET"
HSM_INTERFACE = "setcore sees only hsm's interface"
# What setcore may import of hsm: the interface, its errors, the rules every backend
# applies, and the package itself (whose __init__ imports nothing).
HSM_ALLOWED = {"hsm", "hsm.base", "hsm.errors", "hsm.policy"}


def _lint_imports(cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(Path(sys.executable).parent / "lint-imports"), "--no-cache"],
        cwd=cwd, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def _contract(name: str) -> dict[str, Any]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    (contract,) = (c for c in config["contracts"] if c["name"] == name)
    return dict(contract)


def _modules(package: str) -> set[str]:
    names = set()
    for path in (ROOT / package).rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        names.add(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def test_layering_contracts_are_kept() -> None:
    result = _lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "4 kept, 0 broken" in result.stdout


def test_cli_is_analysed() -> None:
    # Without cli among the root packages, an import of cli from below is invisible.
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    assert set(PACKAGES) | {"setpay"} <= set(config["root_packages"])
    assert _contract(LAYERS)["layers"][0] == "cli"


def test_every_hsm_module_but_the_interface_is_forbidden_to_setcore() -> None:
    forbidden: list[str] = _contract(HSM_INTERFACE)["forbidden_modules"]
    modules = _modules("hsm")
    assert modules >= HSM_ALLOWED
    unguarded = sorted(
        m
        for m in modules - HSM_ALLOWED
        if not any(m == f or m.startswith(f + ".") for f in forbidden)
    )
    assert not unguarded, f"hsm modules setcore may import: name them in the contract {unguarded}"
    stale = sorted(f for f in forbidden if f.startswith("hsm.") and f not in modules)
    assert not stale, f"the contract names hsm modules that do not exist: {stale}"


@pytest.mark.parametrize(
    ("where", "imported", "broken"),
    [
        ("hsm", "setcore.pan", HSM_APART),
        ("hsm", "cli.story", HSM_APART),
        ("setcore", "hsm.keystore", HSM_INTERFACE),
        ("setcore", "hsm.token_session", HSM_INTERFACE),
        ("setcore", "cli.story", LAYERS),
        ("gateway", "cli.story", LAYERS),
    ],
)
def test_a_forbidden_import_breaks_a_contract(
    tmp_path: Path, where: str, imported: str, broken: str
) -> None:
    for package in PACKAGES:
        shutil.copytree(
            ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    shutil.copy2(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    (tmp_path / where / "_layering_probe.py").write_text(
        f'"""A forbidden import."""\nimport {imported}  # noqa: F401\n'
    )
    result = _lint_imports(tmp_path)
    assert result.returncode != 0, result.stdout + result.stderr
    assert f"{broken} BROKEN" in result.stdout, result.stdout
