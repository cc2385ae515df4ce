"""Read the Dockerfile and .dockerignore the way Docker does, for the parts setpay uses.

There is no Docker engine on the development machine or in CI, so the image's steps are
checked by reading these files and running the same steps here: the instructions (with
line continuations and comments), exec-form arguments, ENV pairs, HEALTHCHECK options,
and .dockerignore patterns (``*``, ``**``, ``?``, ``!`` exceptions, parent directories).
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

from .commands import REPO

DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"


@dataclass(frozen=True)
class Instruction:
    """One Dockerfile instruction: its keyword, its argument text, and its stage's name."""

    keyword: str
    arguments: str
    stage: str


def instructions(path: Path = DOCKERFILE) -> list[Instruction]:
    """Every instruction, continuation lines joined, comments and blank lines dropped."""
    logical: list[str] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue  # Docker drops comment lines even inside a continuation
        if line.endswith("\\"):
            pending += line[:-1].strip() + " "
            continue
        logical.append(pending + line)
        pending = ""
    assert not pending, "the Dockerfile ends inside a line continuation"
    found: list[Instruction] = []
    stage = ""
    for line in logical:
        keyword, _, arguments = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            parts = arguments.split()
            stage = parts[2] if len(parts) == 3 and parts[1].upper() == "AS" else ""
        found.append(Instruction(keyword, arguments.strip(), stage))
    return found


def in_stage(stage: str, keyword: str) -> list[Instruction]:
    """The instructions with ``keyword`` in ``stage``."""
    return [i for i in instructions() if i.stage == stage and i.keyword == keyword]


def exec_form(arguments: str) -> list[str]:
    """The argument list of an exec-form (JSON) instruction."""
    value = json.loads(arguments)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), arguments
    return value


def env_pairs(stage: str) -> dict[str, str]:
    """The ENV settings of ``stage`` (``NAME=value`` pairs), later ones winning."""
    settings: dict[str, str] = {}
    for instruction in in_stage(stage, "ENV"):
        for pair in shlex.split(instruction.arguments):
            name, sep, value = pair.partition("=")
            assert sep, f"ENV without '=': {instruction.arguments}"
            settings[name] = value
    return settings


def arg_defaults() -> dict[str, str]:
    """Every ``ARG NAME=default`` of the file."""
    defaults: dict[str, str] = {}
    for instruction in instructions():
        if instruction.keyword == "ARG":
            name, sep, value = instruction.arguments.partition("=")
            if sep:
                defaults[name] = value
    return defaults


def healthcheck(stage: str) -> tuple[dict[str, str], list[str]]:
    """The HEALTHCHECK of ``stage``: its ``--option=value`` settings and its command."""
    (instruction,) = in_stage(stage, "HEALTHCHECK")
    options: dict[str, str] = {}
    rest = instruction.arguments
    while rest.startswith("--"):
        option, _, rest = rest.partition(" ")
        name, _, value = option[2:].partition("=")
        options[name] = value
        rest = rest.strip()
    keyword, _, command = rest.partition(" ")
    assert keyword.upper() == "CMD", instruction.arguments
    return options, exec_form(command.strip())


def ignore_patterns(path: Path = DOCKERIGNORE) -> list[str]:
    """The .dockerignore patterns in order (comments and blank lines dropped)."""
    lines = (line.strip() for line in path.read_text().splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        elif pattern[i] == "[":
            end = pattern.index("]", i)
            out, i = out + pattern[i : end + 1], end + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out)


def excluded(relative: str, patterns: list[str]) -> bool:
    """Whether Docker leaves ``relative`` (a path inside the context) out of the context.

    A pattern matches a path or any of its parent directories; the last matching pattern
    decides, a ``!`` pattern putting the path back.
    """
    parts = relative.strip("/").split("/")
    candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    result = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        body = pattern[1:] if negated else pattern
        regex = _pattern_regex(body.strip().strip("/"))
        if any(regex.fullmatch(candidate) for candidate in candidates):
            result = not negated
    return result
