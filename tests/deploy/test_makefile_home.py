"""The Makefile's tasks write inside the clone only (besides Debian's packages), and run
one recipe at a time under ``make -j``.

Each test asks make itself: a rule added with ``--eval`` prints what a recipe would get,
and ``-n`` prints recipes without running them."""

from __future__ import annotations

import subprocess
from pathlib import Path

from .commands import REPO

# The deepest clone whose tests' Unix sockets fit under pytest's directory in build/ (the
# Makefile's PYTEST_BASE says why).
MAX_CLONE_PATH_BYTES = 45

# A rule of the test's own, so that nothing of the Makefile's runs: it prints the
# environment a recipe gets and two of the Makefile's variables.
_SHOW = "fx-show: ; @env; echo DEB_PACKAGES=$(DEB_PACKAGES); echo PYTEST_BASE=$(PYTEST_BASE)"


def _make(*argv: str) -> str:
    done = subprocess.run(
        ["make", "--no-print-directory", "-C", str(REPO), *argv],
        capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    return done.stdout


def _shown() -> dict[str, str]:
    lines = _make("--eval", _SHOW, "fx-show").splitlines()
    return dict(line.partition("=")[::2] for line in lines if "=" in line)


def test_the_tools_cache_in_the_clone_not_in_home() -> None:
    shown = _shown()
    build = REPO / "build"
    for name in ("XDG_CACHE_HOME", "PIP_CACHE_DIR", "MPLCONFIGDIR"):
        assert Path(shown[name]).is_relative_to(build), (name, shown.get(name))


def test_pytest_keeps_its_temporary_directories_in_the_clone_when_sockets_fit() -> None:
    # The test recipe as make would run it (-n: printed, not run; the venv is assumed made).
    recipe = _make("-n", "-o", ".venv/.installed", "-o", "system-deps", "test")
    in_clone = f"--basetemp={REPO / 'build' / 'pytest'}" in recipe
    # The Makefile's bound: a deeper clone keeps pytest's own directory (Unix sockets).
    assert in_clone == (len(str(REPO)) <= MAX_CLONE_PATH_BYTES), recipe
    assert in_clone or "--basetemp" not in recipe, recipe


def test_a_deep_clone_keeps_pytests_own_directory(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * MAX_CLONE_PATH_BYTES)
    deep.mkdir()
    (deep / "Makefile").write_bytes((REPO / "Makefile").read_bytes())
    recipe = subprocess.run(
        ["make", "-n", "-C", str(deep), "-o", ".venv/.installed", "-o", "system-deps", "test"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert "--basetemp" not in recipe, recipe


def test_make_j_runs_no_two_apt_gets_at_once() -> None:
    assert "python3-venv" in _shown()["DEB_PACKAGES"].split()
    database = _make("-p", "-n", "--eval", "fx-none: ;", "fx-none")
    assert "\n.NOTPARALLEL:" in database


def test_clean_removes_every_cache() -> None:
    recipe = _make("-n", "clean")
    for directory in (".import_linter_cache", "build", ".pytest_cache", ".venv"):
        assert f" {directory}" in recipe, recipe
