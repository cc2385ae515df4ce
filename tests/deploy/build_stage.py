"""The image's build stage, run here: the files its COPY lines send (as .dockerignore lets
them into the build context), its RUN steps as argument lists, and setpay's wheel built
from those files the way the stage builds it, in an isolated build environment with
setuptools pinned by a build constraint.

Building needs the package index, as `make venv` does: pip fetches the requested
setuptools into the isolated build environment (from its cache once it has it). Without
the index a build fails the test with pip's own error, never a skip.
"""

from __future__ import annotations

import re
import shlex
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path

from .commands import REPO, run, venv_bin
from .dockerfile import arg_defaults, excluded, ignore_patterns, in_stage

BUILD = "build"


def build_sources() -> list[str]:
    """What the build stage's COPY lines take from the build context."""
    sources: list[str] = []
    for instruction in in_stage(BUILD, "COPY"):
        parts = instruction.arguments.split()
        assert not parts[0].startswith("--"), instruction.arguments
        sources += parts[:-1]
    return sources


def context_files(source: str) -> list[str]:
    """The files under ``source`` that Docker sends, as paths relative to the repo."""
    patterns = ignore_patterns()
    root = REPO / source
    paths = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    names = [p.relative_to(REPO).as_posix() for p in paths]
    return [name for name in names if not excluded(name, patterns)]


def build_steps() -> list[list[str]]:
    """The build stage's RUN commands, split at ``&&``, each as its argument list with the
    ``${NAME}`` of an ARG replaced by the ARG's default."""
    defaults = arg_defaults()
    steps: list[list[str]] = []
    for instruction in in_stage(BUILD, "RUN"):
        for step in instruction.arguments.split("&&"):
            text = re.sub(r"\$\{(\w+)\}", lambda m: defaults.get(m[1], m[0]), step)
            steps.append(shlex.split(text))
    return steps


def build_constraints() -> dict[str, str]:
    """The pins the stage's ``pip wheel`` gives its build environment (``--build-constraint``,
    a file an earlier step writes with echo): name to version, empty without one."""
    steps = build_steps()
    (wheel,) = [step for step in steps if step[:2] == ["pip", "wheel"]]
    if "--build-constraint" not in wheel:
        return {}
    path = wheel[wheel.index("--build-constraint") + 1]
    (writer,) = [step for step in steps if step[0] == "echo" and step[-1] == f">{path}"]
    pinned = (line.partition("==") for line in writer[1:-1])
    return {name: version for name, sep, version in pinned if sep}


@dataclass(frozen=True)
class Licence:
    """What a wheel says about its licence: the SPDX expression, the licence files it
    names, and the text it carries."""

    expression: str
    files: tuple[str, ...]
    text: str


# setpay's own: pyproject.toml's SPDX string, and LICENSE, found by setuptools' defaults.
SETPAY_LICENCE = Licence("Apache-2.0", ("LICENSE",), (REPO / "LICENSE").read_text())


@dataclass(frozen=True)
class Wheel:
    """A built wheel of setpay, read: its file names and its dist-info files."""

    names: frozenset[str]
    info: dict[str, str]  # dist-info file name to text

    def fields(self, name: str) -> list[str]:
        """The values of one METADATA header field, in order."""
        header = self.info["METADATA"].split("\n\n", 1)[0]
        prefix = f"{name}: "
        return [
            line.removeprefix(prefix) for line in header.splitlines() if line.startswith(prefix)
        ]

    def licence(self) -> Licence:
        """The licence as the wheel declares it and the text of its licence files."""
        (expression,) = self.fields("License-Expression") or [""]
        files = tuple(self.fields("License-File"))
        text = "".join(self.info.get(f"licenses/{name}", "") for name in files)
        return Licence(expression, files, text)

    def generator(self) -> str:
        """The WHEEL file's Generator: the build backend and its version."""
        (line,) = [x for x in self.info["WHEEL"].splitlines() if x.startswith("Generator: ")]
        return line.removeprefix("Generator: ")


def build_wheel(directory: Path, setuptools: str) -> Wheel:
    """setpay's wheel built in ``directory`` from the build stage's files, with
    ``setuptools`` (an exact version) in its isolated build environment."""
    source, wheels = directory / "src", directory / "wheels"
    for name in (f for s in build_sources() for f in context_files(s)):
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, source / name)
    constraint = directory / "build-constraints.txt"
    constraint.write_text(f"setuptools=={setuptools}\n")
    run(
        [str(venv_bin() / "python"), "-m", "pip", "wheel", "--quiet", "--no-deps",
         "--build-constraint", str(constraint), "--wheel-dir", str(wheels), str(source)],
    )  # fmt: skip
    (path,) = wheels.glob("setpay-*.whl")
    with zipfile.ZipFile(path) as archive:
        names = frozenset(archive.namelist())
        (info,) = {n.split("/", 1)[0] for n in names if ".dist-info/" in n}
        files = {
            n.removeprefix(f"{info}/"): archive.read(n).decode()
            for n in names
            if n.startswith(f"{info}/")
        }
    return Wheel(names, files)
