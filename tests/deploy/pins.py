"""The pinned versions (deploy/constraints.txt for the runtime and the image,
deploy/dev-constraints.txt for the tools) and a walk of setpay's requirements through the
installed distributions, to compare the two."""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from .commands import REPO

RUNTIME_PINS = REPO / "deploy" / "constraints.txt"
TOOL_PINS = REPO / "deploy" / "dev-constraints.txt"


def pins(path: Path) -> dict[str, str]:
    """A constraints file's exact pins, by canonical name; anything but ``==`` fails."""
    found: dict[str, str] = {}
    for text in path.read_text().splitlines():
        line = text.split("#", 1)[0].strip()
        if line:
            name, sep, version = line.partition("==")
            assert sep, f"not an exact pin: {line}"
            key = canonicalize_name(name)
            assert key not in found, f"pinned twice in {path.name}: {key}"
            found[key] = version.strip()
    return found


@dataclass
class Walk:
    """What setpay's requirements need, and where the installed versions part from the pins."""

    needed: set[str] = field(default_factory=set)
    unpinned: list[str] = field(default_factory=list)
    unsatisfied: list[str] = field(default_factory=list)
    differing: dict[str, str] = field(default_factory=dict)

    def installed_as(self, name: str, key: str, pinned: str) -> None:
        """Note ``name`` when the version installed here is not ``pinned``."""
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            self.differing[key] = f"{key}: not installed, pinned {pinned}"
            return
        if Version(installed) != Version(pinned):
            self.differing[key] = f"{key}: installed {installed}, pinned {pinned}"


def walk(extras: frozenset[str], pinned: dict[str, str]) -> Walk:
    """setpay's requirements (with ``extras``) down to the leaves, through the installed
    distributions; each checked against ``pinned``."""
    result = Walk()
    pending: list[tuple[str, frozenset[str]]] = [("setpay", extras)]
    while pending:
        name, wanted = pending.pop()
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue  # noted as differing where it was required
        for text in requires:
            requirement = Requirement(text)
            marker = requirement.marker
            if marker is not None and not any(
                marker.evaluate({"extra": extra}) for extra in {"", *wanted}
            ):
                continue
            key = canonicalize_name(requirement.name)
            if key not in pinned:
                result.unpinned.append(f"{key} (required by {name})")
            elif not requirement.specifier.contains(pinned[key], prereleases=True):
                result.unsatisfied.append(f"{key}=={pinned[key]} against {name}'s {text}")
            if key not in result.needed:
                if key in pinned:
                    result.installed_as(requirement.name, key, pinned[key])
                pending.append((requirement.name, frozenset(requirement.extras)))
            elif requirement.extras:
                pending.append((requirement.name, frozenset(requirement.extras)))
            result.needed.add(key)
    return result
