"""The pins: deploy/constraints.txt (the runtime, and the image) and
deploy/dev-constraints.txt (the tools `make` installs) name exactly what setpay and its
extras need, each pin satisfies what requires it, `make` installs with both, and the
venv under test holds exactly the pinned versions.

That last check is what makes a CI run on a fresh clone test the pins rather than
whatever the package index offers that day. In an environment that is deliberately not
`make`'s (another version of a tool, a distribution's packages), set
SETPAY_TEST_ALLOW_UNPINNED=1: a difference from the pins is then reported as a skip. CI
(.ci/run) clears that variable.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

import pytest
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

from . import pins as pins_module
from .commands import REPO
from .pins import RUNTIME_PINS, TOOL_PINS, Walk, pins, walk

ALLOW_UNPINNED = "SETPAY_TEST_ALLOW_UNPINNED"
# Pinned tools no extra requires: pip, which the Makefile upgrades to its pin first.
INSTALLER = {"pip"}


def _apart_from_the_pins(found: Walk, pinned: dict[str, str]) -> str:
    """Where the venv's versions part from ``pinned``: a skip here and now where the
    environment allows it, else the failure message ("" where they do not part).

    Called before any other check of ``found``: its unpinned and unsatisfied lists come
    from the installed distributions' requirements, so in a venv that is not make's they
    describe that venv, not the pins.
    """
    differing = [text for key, text in found.differing.items() if key in pinned]
    for key in INSTALLER & set(pinned):
        if Version(metadata.version(key)) != Version(pinned[key]):
            differing.append(f"{key}: installed {metadata.version(key)}, pinned {pinned[key]}")
    if not differing:
        return ""
    message = (
        f"the venv does not hold the pinned versions: {sorted(differing)}; `make venv` "
        f"installs them (or set {ALLOW_UNPINNED}=1 in an environment that is not make's)"
    )
    if os.environ.get(ALLOW_UNPINNED) == "1":
        pytest.skip(message)
    return message


def test_constraints_pin_exactly_the_runtime_dependencies() -> None:
    runtime = pins(RUNTIME_PINS)
    found = walk(frozenset(), runtime)
    apart = _apart_from_the_pins(found, runtime)
    assert not found.unpinned, f"runtime dependencies without a pin: {found.unpinned}"
    assert not found.unsatisfied, f"pins that do not satisfy a requirement: {found.unsatisfied}"
    if apart:
        pytest.fail(apart)
    assert set(runtime) == found.needed, (
        f"pinned, not needed: {sorted(set(runtime) - found.needed)}"
    )


def test_dev_constraints_pin_exactly_the_tools() -> None:
    runtime, tools = pins(RUNTIME_PINS), pins(TOOL_PINS)
    assert not set(runtime) & set(tools), (
        f"pinned in both files: {sorted(set(runtime) & set(tools))}"
    )
    found = walk(frozenset({"dev", "plot"}), runtime | tools)
    apart = _apart_from_the_pins(found, tools)
    assert not found.unpinned, f"tools without a pin in {TOOL_PINS.name}: {found.unpinned}"
    assert not found.unsatisfied, f"pins that do not satisfy a requirement: {found.unsatisfied}"
    if apart:
        pytest.fail(apart)
    wanted = (found.needed - set(runtime)) | INSTALLER
    assert set(tools) == wanted, f"pinned, not needed: {sorted(set(tools) - wanted)}"


def test_setuptools_pin_builds_setpay() -> None:
    # The Makefile gives the tool pins to the build environment too: setuptools' pin must
    # satisfy pyproject's build-system requirement.
    text = (REPO / "pyproject.toml").read_text()
    (requirement,) = re.findall(r'^requires = \["setuptools([^"]*)"\]$', text, re.MULTILINE)
    assert SpecifierSet(requirement).contains(pins(TOOL_PINS)["setuptools"])


def test_make_installs_the_venv_with_both_files(tmp_path: Path) -> None:
    # make's own view of the Makefile (its database, -p), for a do-nothing target: no
    # recipe of the Makefile runs.
    probe = tmp_path / "probe.mk"
    probe.write_text("__probe__: ;\n")
    done = subprocess.run(
        ["make", "--no-print-directory", "-pq", "-f", "Makefile", "-f", str(probe), "__probe__"],
        cwd=REPO, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    database = done.stdout
    files = [str(path.relative_to(REPO)) for path in (RUNTIME_PINS, TOOL_PINS)]
    (pip_pins,) = re.findall(r"^PIP_PINS := (.*)$", database, re.MULTILINE)
    assert pip_pins.split() == [word for f in files for word in ("-c", f)]
    (rule,) = re.findall(r"^\S*/\.installed: (.*)\n((?:#.*\n)*)((?:\t.*\n)*)", database, re.M)
    prerequisites, _, recipe = rule
    assert set(files) <= set(prerequisites.split()), "a pin change must reinstall the venv"
    installs = [line for line in recipe.splitlines() if "pip install" in line]
    assert len(installs) == 2  # pip itself, then setpay with its extras
    assert all("$(PIP_PINS)" in line for line in installs), installs
    assert f"--build-constraint {files[1]}" in recipe


class _OtherVenv:
    """importlib.metadata as a venv that is not make's answers: this venv's distributions,
    except one at another version, with one more requirement."""

    PackageNotFoundError = metadata.PackageNotFoundError
    installed = metadata  # the real one: the tests' modules see this class in its place

    def __init__(self, name: str, version: str, new_requirement: str) -> None:
        self.name, self.changed_version, self.new_requirement = name, version, new_requirement

    def version(self, name: str) -> str:
        """The changed distribution's other version, else this venv's."""
        if canonicalize_name(name) == self.name:
            return self.changed_version
        return self.installed.version(name)

    def requires(self, name: str) -> list[str] | None:
        """The changed distribution's requirements plus the new one, else this venv's."""
        requires = self.installed.requires(name)
        if canonicalize_name(name) == self.name:
            return [*(requires or []), self.new_requirement]
        return requires


# What a venv apart from the pins makes the walk find: a requirement with no pin, or one
# that the pinned version does not satisfy.
NEW_REQUIREMENTS = {
    "newdep>=1": r"without a pin.*'newdep \(required by {changed}\)'",
    "typing-extensions>=99": r"do not satisfy.*typing-extensions==\S+ against {changed}'s",
}


@pytest.mark.parametrize("requirement", NEW_REQUIREMENTS)
@pytest.mark.parametrize(
    ("check", "changed"),
    [
        (test_constraints_pin_exactly_the_runtime_dependencies, "grpcio"),
        (test_dev_constraints_pin_exactly_the_tools, "mypy"),
    ],
)
def test_a_venv_apart_from_the_pins_fails_unless_allowed(
    check: Callable[[], None], changed: str, requirement: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A distribution at a version of its own, with a requirement of its own: what a
    # developer's or a Linux distribution's venv may hold. CI fails on it as ever; where
    # allowed, it is a skip.
    other = _OtherVenv(changed, "9.9", requirement)
    monkeypatch.setattr(pins_module, "metadata", other)
    monkeypatch.setattr(sys.modules[__name__], "metadata", other)
    monkeypatch.delenv(ALLOW_UNPINNED, raising=False)
    with pytest.raises(AssertionError, match=NEW_REQUIREMENTS[requirement].format(changed=changed)):
        check()
    monkeypatch.setenv(ALLOW_UNPINNED, "1")
    with pytest.raises(pytest.skip.Exception, match=rf"{changed}: installed 9\.9, pinned "):
        check()
