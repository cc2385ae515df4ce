"""The import layering of DESIGN.md section 2, checked by import-linter's contracts.

protos <- setcore <- {gateway, clients}; hsm depends on none of them and setcore sees only
hsm's interface. The contracts live in pyproject.toml; this test runs them, and proves
they can fail by checking a temporary module that breaks one.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _lint_imports(cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(Path(sys.executable).parent / "lint-imports"), "--no-cache"],
        cwd=cwd, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def test_layering_contracts_are_kept() -> None:
    result = _lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "4 kept, 0 broken" in result.stdout


def test_a_forbidden_import_breaks_a_contract() -> None:
    offender = ROOT / "hsm" / "_layering_probe.py"
    offender.write_text(
        '"""Temporary: hsm must not import SET code."""\nimport setcore.pan  # noqa: F401\n'
    )
    try:
        result = _lint_imports(ROOT)
    finally:
        offender.unlink()
    assert result.returncode != 0
    assert "hsm knows nothing of SET BROKEN" in result.stdout
