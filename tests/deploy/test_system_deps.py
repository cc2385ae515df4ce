"""`make system-deps`: which Debian packages count as installed, and what it does about the
others.

The recipe runs as make runs it, with stand-ins first on PATH: a ``dpkg-query`` that
answers from a table of package states, an ``id`` that plays root or not, and an
``apt-get`` that only logs its calls (nothing is installed).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from .commands import REPO, run

# dpkg-query's status abbreviation (dpkg-query(1), --list): the selection (install, hold,
# remove, purge, unknown), the package's state, then an error flag (blank, or R for
# reinstall required). Only the state "installed", with no error, means the programs are
# there, whatever is selected.
INSTALLED = {"plain": "ii ", "held": "hi ", "to-remove": "ri "}
NOT_INSTALLED = {
    "config-only": "rc ",
    "purged": "pn ",
    "unpacked": "iU ",
    "held-half-configured": "hF ",
    "broken": "iiR",
}
UNKNOWN = "never-heard-of"  # a name dpkg has no record of

_FAKE_DPKG_QUERY = """#!/usr/bin/env bash
# Only the query the Makefile makes; anything else is a test that has gone stale.
if [[ $# -ne 3 || $1 != -W || $2 != '-f=${db:Status-Abbrev}' ]]; then
    echo "unexpected dpkg-query $*" >&2
    exit 2
fi
while IFS=$'\\t' read -r name status; do
    if [[ $name == "$3" ]]; then printf '%s' "$status"; exit 0; fi
done <"$FAKE_DPKG_STATUS"
echo "dpkg-query: no packages found matching $3" >&2
exit 1
"""
_FAKE_ID = """#!/usr/bin/env bash
[[ $* == -u ]] || { echo "unexpected id $*" >&2; exit 2; }
echo "$FAKE_UID"
"""
_FAKE_APT_GET = """#!/usr/bin/env bash
echo "$*" >>"$APT_LOG"
"""


def _system_deps(tmp_path: Path, packages: list[str], uid: int) -> tuple[int, str, str, list[str]]:
    """``make system-deps`` for ``packages`` against the stand-ins: its exit status,
    stdout, stderr and apt-get's calls."""
    bin_dir, status, apt_log = tmp_path / "bin", tmp_path / "status", tmp_path / "apt.log"
    bin_dir.mkdir()
    for name, text in (("dpkg-query", _FAKE_DPKG_QUERY), ("id", _FAKE_ID),
                       ("apt-get", _FAKE_APT_GET)):  # fmt: skip
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    states = INSTALLED | NOT_INSTALLED
    status.write_text("".join(f"{name}\t{abbrev}\n" for name, abbrev in states.items()))
    # As a fresh make: not a sub-make of the `make test` that may be running this suite.
    env = {k: v for k, v in os.environ.items() if k not in {"MAKEFLAGS", "MFLAGS", "MAKELEVEL"}}
    env.update(
        PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}", FAKE_DPKG_STATUS=str(status),
        FAKE_UID=str(uid), APT_LOG=str(apt_log),
    )  # fmt: skip
    done = run(
        ["make", "--no-print-directory", "-f", str(REPO / "Makefile"), "-C", str(REPO),
         "system-deps", f"DEB_PACKAGES={' '.join(packages)}"],
        env=env, check=False,
    )  # fmt: skip
    calls = apt_log.read_text().splitlines() if apt_log.exists() else []
    return done.returncode, done.stdout, done.stderr, calls


def test_installed_packages_need_nothing_held_ones_included(tmp_path: Path) -> None:
    code, out, err, calls = _system_deps(tmp_path, list(INSTALLED), uid=1000)
    assert (code, out, err, calls) == (0, "", "", [])


def test_without_root_the_missing_packages_are_named(tmp_path: Path) -> None:
    packages = [*INSTALLED, *NOT_INSTALLED, UNKNOWN]
    code, out, err, calls = _system_deps(tmp_path, packages, uid=1000)
    missing = " ".join([*NOT_INSTALLED, UNKNOWN])
    assert code != 0
    assert out == f"installing Debian packages: {missing}\n"
    assert err.splitlines()[0] == f"need root to install: {missing}", err
    assert calls == []


@pytest.mark.parametrize("package", [*NOT_INSTALLED, UNKNOWN])
def test_as_root_only_the_missing_packages_are_installed(tmp_path: Path, package: str) -> None:
    code, out, err, calls = _system_deps(tmp_path, [*INSTALLED, package], uid=0)
    assert (code, out, err) == (0, f"installing Debian packages: {package}\n", "")
    assert calls == ["update -qq", f"install -y -qq --no-install-recommends {package}"]
