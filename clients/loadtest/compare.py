"""Bench reports side by side: the medians of runs, by group (``setpay bench compare``).

On a shared machine a single run says little: the figures worth quoting are medians of
several runs, and a change is judged by alternating runs with and without it. This
reads the JSON reports of ``setpay bench authorize --json`` and prints, for each group
of them, the closed loop's and the open loop's main figures: the median and every run's
value. The gateway/ceiling ratio is given a second time over the runs whose closed loop
carries no DOUBT. From the second group on, each median is also shown as a multiple of
the first group's.

A run with a service-run that was not clean (a request unaccounted for, an error, a
timeout, a closed loop that ran out of requests: the report's ``clean``), or whose report
states a DOUBT (its ``doubts``: a ledger on tmpfs, sends too late for the p99, a closed
loop at two speeds, ...; the bench exited 3 for either), is named NOT CLEAN with what
went wrong; its figures stay in the medians, which the line says, so that a reader
decides whether to drop the run. Reports written before the report listed its doubts
are judged by their service-runs alone.

A report is read from its closed-loop step (the first) and the open-loop step that
follows it; a figure the report lacks (no ceiling, no open loop, no server CPU against
a remote target) is left out of that run's values.

A median is only worth quoting over runs of one setting. The runs of a group whose
reports say different settings (their ``setting`` and ``plan``: the profile, the workers,
the machine, the duration, ...) are named MIXED with what differs, and a group that ran on
another machine than the first (cores, CPU, kernel, versions) is named so beside its
multiples of the first's. Before, a group of a one-worker run, a two-worker run and an rsa
run of another machine gave one median without a word. The undoubted ratio leaves out,
beside a closed loop the bench doubted, one that was not clean: its errors, timeouts or
lost requests bent its throughput, and a request unaccounted for means its figures
cannot be trusted (the bench's exit 1).
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clients.loadtest.errors import BenchError
from clients.loadtest.report import FAILED, SCHEMA

Step = dict[str, Any]

RATIO = "gateway / ceiling"
UNDOUBTED = "gateway / ceiling, undoubted runs"
# The ratio's key in a closed-loop step's ``ratios`` (``report.ratios``).
_RATIO_KEY = "gateway/ceiling"


class ReportError(BenchError):
    """A file is not a bench report this version can read."""


def _result(step: Step | None, service: str, *path: str) -> float | None:
    value: Any = (step or {}).get("results", {}).get(service)
    for key in path:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return float(value) if isinstance(value, int | float) else None


def _ratio(closed: Step | None, _: Step | None) -> float | None:
    # The report's own ratio (``report.ratios``), not worked out again here.
    value = (closed or {}).get("ratios", {}).get(_RATIO_KEY, {}).get("throughput")
    return float(value) if isinstance(value, int | float) else None


def _closed(service: str, *path: str) -> Callable[[Step | None, Step | None], float | None]:
    return lambda closed, _: _result(closed, service, *path)


def _cpu_per_answer(service: str) -> Callable[[Step | None, Step | None], float | None]:
    # Reports written before the per-answer figure have only the per-request one.
    def figure(closed: Step | None, _: Step | None) -> float | None:
        found = _result(closed, service, "server_cpu_us_per_answer")
        return found if found is not None else _result(closed, service, "server_cpu_us_per_request")

    return figure


def _open(service: str, *path: str) -> Callable[[Step | None, Step | None], float | None]:
    return lambda _, following: _result(following, service, *path)


# Each figure and where a report keeps it (the closed-loop step, the open-loop one).
FIGURES: dict[str, Callable[[Step | None, Step | None], float | None]] = {
    "gateway closed-loop answers/s": _closed("gateway", "throughput"),
    "ceiling closed-loop answers/s": _closed("ceiling", "throughput"),
    "echo closed-loop answers/s": _closed("echo", "throughput"),
    RATIO: _ratio,
    "gateway server CPU us/auth": _cpu_per_answer("gateway"),
    "ceiling server CPU us/auth": _cpu_per_answer("ceiling"),
    "open loop rate/s": _open("gateway", "offered_rate"),
    "gateway open-loop p99 ms": _open("gateway", "latency_ms", "p99"),
    "ceiling open-loop p99 ms": _open("ceiling", "latency_ms", "p99"),
    "gateway open-loop errors": _open("gateway", "errors"),
    "gateway closed-loop speed ms": _closed("gateway", "machine_speed", "reference_loop_ms_median"),
    "ceiling closed-loop speed ms": _closed("ceiling", "machine_speed", "reference_loop_ms_median"),
}


@dataclass(frozen=True)
class Run:
    """One report's figures."""

    name: str
    figures: dict[str, float]
    """Only the figures the report has."""
    doubted: bool
    """Its closed loop carries a DOUBT or was not clean (the ratio is not to be trusted)."""
    problems: tuple[str, ...] = ()
    """What was not clean, by step and service, then the report's DOUBTs (empty: every
    service-run was clean and the report doubts nothing)."""
    setting: dict[str, str] = field(default_factory=dict)
    """What the report says it measured (``_setting``), entry by entry, as text."""

    @property
    def clean(self) -> bool:
        """Every service-run of every step was clean, and the report doubts nothing."""
        return not self.problems


def read_run(path: Path) -> Run:
    """One report's figures; ReportError if the file is not a bench report."""
    try:
        document = json.loads(path.read_text())
    except (OSError, ValueError, RecursionError) as exc:
        # ValueError: not UTF-8, not JSON, or an integer of more digits than Python
        # converts (4300); RecursionError: arrays nested past the parser's depth.
        raise ReportError(f"{path}: cannot read a JSON report ({exc})") from exc
    if not isinstance(document, dict) or document.get("schema") != SCHEMA:
        raise ReportError(f"{path}: not a report of setpay bench authorize ({SCHEMA})")
    if FAILED in document:
        raise ReportError(f"{path}: the run failed, it has no figures ({document[FAILED]})")
    wrong = _malformed(document)
    if wrong is not None:
        raise ReportError(f"{path}: not a report ({wrong})")
    steps: list[Step] = document.get("steps", [])
    closed = next((step for step in steps if step.get("mode") == "closed"), None)
    following = next((step for step in steps if step.get("mode") == "open"), None)
    figures = {}
    for name, where in FIGURES.items():
        value = where(closed, following)
        if value is not None:
            figures[name] = value
    problems = tuple(
        f"{step.get('shape', 'a step')}, {service}: {_problem(result)}"
        for step in steps
        for service, result in step.get("results", {}).items()
        if not isinstance(result, dict)
        or result.get("clean") is not True
        or result.get("accounting_doubts")
    )
    problems += tuple(f"DOUBT: {doubt}" for doubt in _doubts(document, steps))
    return Run(path.name, figures, _doubted(closed), problems, _setting(document))


def _doubted(closed: Step | None) -> bool:
    """Whether the closed loop's ratio is not to be trusted: the step carries a DOUBT, or
    one of its service-runs was not clean (the module docstring)."""
    if closed is None:
        return False
    results = closed.get("results", {}).values()
    return bool(closed.get("doubts")) or any(
        not isinstance(result, dict) or result.get("clean") is not True for result in results
    )


# The entries of a report's setting that are readings of the run, not its setting: the
# reference loop timed before and after it (``cli.bench``'s BEFORE and AFTER; a test holds
# them equal). And the plan's p99 bound, which changes no figure compare prints.
READINGS = frozenset({"reference loop ms (before)", "reference loop ms (after)"})
_PLAN_UNREAD = frozenset({"p99_max_ms"})
# The setting entry that describes the machine, whose entries are named after it.
MACHINE = "machine"
# Longest value shown for an entry: a report's text is the bench's, but a file is a file.
_SHOWN_CHARS = 60
# A value a report does not give (an older one, or another kind of run).
NOT_SAID = "not said"


def _shown(value: Any) -> str:
    # Text as written, unless it holds what a terminal would act on (JSON escapes it).
    printable = isinstance(value, str) and value.isprintable()
    text = value if printable else json.dumps(value, sort_keys=True)
    return text if len(text) <= _SHOWN_CHARS else text[: _SHOWN_CHARS - 3] + "..."


def _setting(document: dict[str, Any]) -> dict[str, str]:
    """The report's ``setting`` (the machine's entries as ``machine cores``...) and ``plan``
    (as ``plan duration_s``...), but the readings and what compare does not read, as text."""
    found: dict[str, str] = {}
    setting, plan = document.get("setting"), document.get("plan")
    for key, value in (setting if isinstance(setting, dict) else {}).items():
        if isinstance(value, dict):
            found.update({f"{key} {inner}": _shown(item)
                          for inner, item in value.items() if inner not in READINGS})  # fmt: skip
        else:
            found[key] = _shown(value)
    for key, value in (plan if isinstance(plan, dict) else {}).items():
        if key not in _PLAN_UNREAD:
            found[f"plan {key}"] = _shown(value)
    return found


def _values(runs: Sequence[Run], key: str) -> dict[str, None]:
    """The values ``runs`` give ``key``, each once, in run order."""
    return dict.fromkeys(run.setting.get(key, NOT_SAID) for run in runs)


def _keys(runs: Sequence[Run]) -> dict[str, None]:
    return dict.fromkeys(key for run in runs for key in run.setting)


def differences(runs: Sequence[Run]) -> list[str]:
    """Each setting entry on which ``runs`` differ, with their values in run order
    (``workers 1, 2``)."""
    found = []
    for key in _keys(runs):
        values = _values(runs, key)
        if len(values) > 1:
            found.append(f"{key} {', '.join(values)}")
    return found


def other_machine(first: Sequence[Run], runs: Sequence[Run]) -> list[str]:
    """Each machine entry on which ``runs`` say other than ``first`` (``machine cores 8
    against 2``)."""
    found = []
    for key in _keys([*first, *runs]):
        if not key.startswith(f"{MACHINE} "):
            continue
        mine, theirs = _values(runs, key), _values(first, key)
        if set(mine) != set(theirs):
            found.append(f"{key} {', '.join(mine)} against {', '.join(theirs)}")
    return found


# What a report's fields hold, for the fields compare reads (``FIGURES``, ``_problem``,
# ``_doubts`` and ``read_run``), and only those: a field of another type is refused rather
# than misread (a count "many", a list for an object, null for the steps, a doubt that is
# not text), and so is a number that is not finite (NaN, 1e999 read as infinity, or an
# integer too large for a float: a figure is read as one). None stands for null where
# the bench writes it (a figure it could not observe); a field a report lacks (an older
# one) is read as absent. A field compare never reads (a latency's p50, a ratio's CPU) is
# left as it is: it changes nothing compare prints.
_NUMBER = (int, float)
_MAYBE_NUMBER = (int, float, type(None))
_TOP: dict[str, tuple[type, ...]] = {"steps": (list,), "doubts": (list,)}
_STEP: dict[str, tuple[type, ...]] = {
    "shape": (str,), "mode": (str,), "results": (dict,), "ratios": (dict,), "doubts": (list,),
}  # fmt: skip
_RESULT: dict[str, tuple[type, ...]] = {
    "clean": (bool,), "accounted": (bool,), "ran_out_of_requests": (bool,),
    "errors": (int,), "timeouts": (int,), "accounting_doubts": (list,),
    "throughput": _NUMBER, "offered_rate": _MAYBE_NUMBER,
    "server_cpu_us_per_answer": _MAYBE_NUMBER, "server_cpu_us_per_request": _MAYBE_NUMBER,
    "latency_ms": (dict, type(None)), "machine_speed": (dict, type(None)),
}  # fmt: skip
# Inside a result's objects (``Latency.as_dict``, ``Speed.as_dict``) and the ratio: the
# figures ``FIGURES`` takes from them.
_INSIDE: dict[str, dict[str, tuple[type, ...]]] = {
    "latency_ms": {"p99": _NUMBER},
    "machine_speed": {"reference_loop_ms_median": _NUMBER},
}
_RATIO: dict[str, tuple[type, ...]] = {"throughput": _MAYBE_NUMBER}
# The lists of DOUBTs a report states, by field: compare prints each, and names a service
# run's accounting doubts once (``_doubts``); an item of another type than text is refused.
_TEXTS = frozenset({"doubts", "accounting_doubts"})
# What a check finds wrong in an object at a place (None: nothing).
Check = Callable[[dict[str, Any], str], str | None]


def _kind_name(kind: type) -> str:
    return "null" if kind is type(None) else kind.__name__


def _mistyped(fields: dict[str, Any], kinds: dict[str, tuple[type, ...]], where: str) -> str | None:
    """The first of ``fields`` not of its kind, or a number of them not finite; a field
    ``fields`` lacks passes."""
    for key, kind in kinds.items():
        if key not in fields:
            continue
        value = fields[key]
        # bool is an int to Python, never a count or a figure in a report.
        if not isinstance(value, kind) or (isinstance(value, bool) and bool not in kind):
            names = " or ".join(_kind_name(k) for k in kind)
            return f"{where}{key} is {_kind_name(type(value))}, not {names}"
        found = _not_finite(value) or (_not_text(value) if key in _TEXTS else None)
        if found is not None:
            return f"{where}{key}{found}"
    return None


def _not_finite(value: object) -> str | None:
    """What makes a number not finite (None: it is, or it is no number)."""
    if isinstance(value, float) and not math.isfinite(value):
        return f" is {value}, not a finite number"
    if isinstance(value, int) and not isinstance(value, bool):
        try:
            float(value)
        except OverflowError:
            return f" is an integer of {len(str(value))} digits, not a finite number"
    return None


def _not_text(items: object) -> str | None:
    """The first item of the list ``items`` that is not text (None: every one is)."""
    for n, item in enumerate(items if isinstance(items, list) else []):
        if not isinstance(item, str):
            return f"[{n}] is {_kind_name(type(item))}, not str"
    return None


def _objects(placed: Iterable[tuple[str, Any]], check: Check) -> str | None:
    """The first of the ``(place, value)`` pairs whose value is not a JSON object, or what
    ``check`` finds wrong in one (None: every one is an object that passes)."""
    for place, value in placed:
        if not isinstance(value, dict):
            return f"{place} is {_kind_name(type(value))}, not dict"
        found = check(value, place)
        if found is not None:
            return found
    return None


def _malformed(document: dict[str, Any]) -> str | None:
    """What in ``document`` is not of the type a report has (None: every field read is)."""
    found = _mistyped(document, _TOP, "")
    if found is not None:
        return found
    steps = document.get("steps", [])
    return _objects(((f"steps[{n}]", step) for n, step in enumerate(steps)), _malformed_step)


def _malformed_step(step: Step, where: str) -> str | None:
    found = _mistyped(step, _STEP, f"{where}.")
    if found is not None:
        return found
    results, ratios = step.get("results", {}), step.get("ratios", {})
    found = _objects(
        ((f"{where}.results.{service}", result) for service, result in results.items()),
        _malformed_result,
    )
    if found is not None or _RATIO_KEY not in ratios:
        return found
    ratio, place = ratios[_RATIO_KEY], f"{where}.ratios.{_RATIO_KEY}"
    if not isinstance(ratio, dict):
        return f"{place} is {_kind_name(type(ratio))}, not dict"
    return _mistyped(ratio, _RATIO, f"{place}.")


def _malformed_result(result: dict[str, Any], place: str) -> str | None:
    found = _mistyped(result, _RESULT, f"{place}.")
    for name, kinds in _INSIDE.items():
        inside = result.get(name)  # an object or null (``_RESULT``), or absent
        if found is None and isinstance(inside, dict):
            found = _mistyped(inside, kinds, f"{place}.{name}.")
    return found


def _doubts(document: dict[str, Any], steps: list[Step]) -> list[str]:
    """The report's DOUBTs (none in a report written before it listed them), but those
    of a service-run's accounting: ``_problem`` names them already."""
    found = document.get("doubts")
    if not isinstance(found, list):
        return []
    named = {
        f"{step.get('shape')}, {service}: {doubt}"
        for step in steps
        for service, result in step.get("results", {}).items()
        if isinstance(result, dict)
        for doubt in result.get("accounting_doubts") or []
    }
    return [doubt for doubt in found if doubt not in named]


def _problem(result: Any) -> str:
    """What made a service-run's result not clean, in a few words."""
    if not isinstance(result, dict):
        return "no result"
    found = []
    if result.get("accounted") is not True:
        found.append("requests unaccounted for")
    for key, name in (("errors", "errors"), ("timeouts", "timeouts")):
        if result.get(key):
            found.append(f"{result[key]:,} {name}")
    if result.get("ran_out_of_requests"):
        found.append("ran out of prepared requests")
    if result.get("accounting_doubts"):
        # The bank was still busy when its page was read: its counts could not be held to
        # the bench's, so the run is not one to take a median over (the bench exited 3).
        found.append("requests not checked against the bank's page")
    return ", ".join(found) or "not clean"


@dataclass(frozen=True)
class Group:
    """Runs compared as one setting."""

    label: str
    runs: Sequence[Run]

    def values(self, figure: str) -> list[float]:
        """The runs' values of ``figure``, in run order (runs without it left out)."""
        if figure == UNDOUBTED:
            trusted = [run for run in self.runs if not run.doubted]
            return [run.figures[RATIO] for run in trusted if RATIO in run.figures]
        return [run.figures[figure] for run in self.runs if figure in run.figures]

    def median(self, figure: str) -> float | None:
        """The median of ``figure`` over the runs that have it."""
        values = self.values(figure)
        return statistics.median(values) if values else None


# A report stores its ratios with 3 decimals; shown with 2 they would be rounded twice
# (a stored 0.475 of a 0.4753 ratio prints 0.47, where the text report says 0.48).
_RATIOS = frozenset({RATIO, UNDOUBTED})


def _number(value: float, decimals: int = 2) -> str:
    return f"{value:,.0f}" if value.is_integer() or abs(value) >= 10 else f"{value:,.{decimals}f}"


def _line(group: Group, figure: str, first: Group | None) -> str | None:
    values = group.values(figure)
    if not values:
        if figure == UNDOUBTED and group.values(RATIO):
            return f"  {figure:32s}       none of {len(group.runs)} runs"
        return None
    median = statistics.median(values)
    decimals = 3 if figure in _RATIOS else 2
    shown = ", ".join(_number(value, decimals) for value in values)
    if figure == UNDOUBTED:
        shown += f": {len(values)} of {len(group.runs)} runs"
    line = f"  {figure:32s} {median:>10,.{decimals}f}   ({shown})"
    if first is not None:
        base = first.median(figure)
        if base:
            line += f"   {median / base:.2f} x {first.label}"
    return line


def to_text(groups: Sequence[Group]) -> str:
    """The groups' medians, each run's value beside them."""
    lines: list[str] = []
    first = groups[0] if len(groups) > 1 else None
    for group in groups:
        names = ", ".join(run.name for run in group.runs)
        lines.append(f"{group.label}: median of {len(group.runs)} ({names})")
        mixed = differences(group.runs)
        if mixed:
            lines.append(f"  MIXED: its runs differ in {'; '.join(mixed)}: each median below "
                         "is over runs of different settings")  # fmt: skip
        other = other_machine(first.runs, group.runs) if first and group is not first else []
        if other and first is not None:
            lines.append(f"  MACHINE: its runs and {first.label}'s differ in {'; '.join(other)}:"
                         f" its multiples of {first.label} compare the machines too")  # fmt: skip
        for run in group.runs:
            if not run.clean:
                lines.append(f"  NOT CLEAN: {run.name} ({'; '.join(run.problems)}): its "
                             "figures are in the medians below")  # fmt: skip
        for figure in [*FIGURES, UNDOUBTED]:
            line = _line(group, figure, first if group is not first else None)
            if line is not None:
                lines.append(line)
    return "\n".join(lines) + "\n"
