"""The fault suite's tally: what was tried, what was expected and what was seen, printed as one
table at the end of the pytest session (and written to ``$CW_FAULT_TABLE`` when set).

A test calls :func:`tally` once per fault or input it tried, with the outcome it expected and
the outcome it *read back* (from the database, the HTTP response, the receiver), never a copy
of the expectation. The test still asserts; the tally only counts, so a reader sees at a glance
how much was tried and that nothing was lost, invented or delivered twice.

Trials travel as JSON lines through a directory shared by the pytest-xdist workers: the
controller makes it in ``pytest_configure`` and hands it to each worker in ``workerinput``.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pytest

KINDS = {
    "fault": "fetch faults served by the fake portal",
    "input": "hostile inputs followed end to end",
    "crash": "SIGKILL kill points",
    "environment": "broken data dir, database or configuration",
}
DIR_ENV = "CW_FAULT_TALLY_DIR"
TABLE_ENV = "CW_FAULT_TABLE"


@dataclass(frozen=True)
class Trial:
    kind: str
    name: str
    expected: str
    seen: str
    tried: int = 1
    lost: int = 0
    invented: int = 0
    duplicate_alerts: int = 0


def tally(
    kind: str,
    name: str,
    *,
    expected: str,
    seen: str,
    tried: int = 1,
    lost: int = 0,
    invented: int = 0,
    duplicate_alerts: int = 0,
) -> None:
    """Count one fault or input: ``lost`` and ``invented`` are records (or events) missing
    from or added to what an undisturbed run gives; ``duplicate_alerts`` alerts delivered
    more than once."""
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}: one of {sorted(KINDS)}")
    folder = os.environ.get(DIR_ENV)
    if not folder:  # the plugin is not loaded (a test imported outside pytest): nothing to count
        return
    trial = Trial(kind, name, expected, seen, tried, lost, invented, duplicate_alerts)
    line = json.dumps(asdict(trial), ensure_ascii=False) + "\n"
    with open(Path(folder) / f"{os.getpid()}.jsonl", "a", encoding="utf-8") as out:
        out.write(line)


def read_trials(folder: Path) -> list[Trial]:
    return [
        Trial(**json.loads(line))
        for path in sorted(folder.glob("*.jsonl"))
        for line in path.read_text(encoding="utf-8").splitlines()
        if line.strip()
    ]


def render(trials: list[Trial]) -> str:
    """The table, one row per (kind, name), then the totals the README quotes."""
    rows: dict[tuple[str, str], dict[str, Any]] = defaultdict(
        lambda: {"tried": 0, "expected": set(), "seen": set(), "bad": 0}
    )
    for trial in trials:
        row = rows[(trial.kind, trial.name)]
        row["tried"] += trial.tried
        row["expected"].add(trial.expected)
        row["seen"].add(trial.seen)
        row["bad"] += trial.lost + trial.invented + trial.duplicate_alerts
    order = list(KINDS)
    header = ("kind", "fault or input", "tried", "outcome expected", "outcome seen")
    lines = [
        (kind, name, str(row["tried"]), " / ".join(sorted(row["expected"])),
         " / ".join(sorted(row["seen"])))
        for (kind, name), row in sorted(rows.items(), key=lambda i: (order.index(i[0][0]), i[0][1]))
    ]  # fmt: skip
    widths = [max(len(cells[i]) for cells in [header, *lines]) for i in range(len(header))]
    fmt = "  ".join(f"{{:{w}}}" for w in widths)
    out = [fmt.format(*header).rstrip(), fmt.format(*("-" * w for w in widths))]
    out += [fmt.format(*cells).rstrip() for cells in lines]
    out.append("")
    out.append(totals_line(trials))
    return "\n".join(out)


def totals(trials: list[Trial]) -> dict[str, int]:
    names = {kind: {t.name for t in trials if t.kind == kind} for kind in KINDS}
    return {
        "distinct faults": len(names["fault"] | names["crash"] | names["environment"]),
        "fetch faults": len(names["fault"]),
        "kill points": sum(t.tried for t in trials if t.kind == "crash"),
        "environment faults": len(names["environment"]),
        "hostile inputs": len(names["input"]),
        "trials": sum(t.tried for t in trials),
        "mismatches": sum(1 for t in trials if t.expected != t.seen),
        "lost": sum(t.lost for t in trials),
        "invented": sum(t.invented for t in trials),
        "duplicate alerts": sum(t.duplicate_alerts for t in trials),
    }


def totals_line(trials: list[Trial]) -> str:
    return "totals: " + ", ".join(f"{name} {n}" for name, n in totals(trials).items())


# -- the plugin -------------------------------------------------------------------------------


def pytest_configure(config: pytest.Config) -> None:
    workerinput = getattr(config, "workerinput", None)
    if workerinput is not None:  # an xdist worker: use the controller's directory
        os.environ[DIR_ENV] = workerinput[DIR_ENV]
        return
    folder = tempfile.mkdtemp(prefix="cw-fault-tally-")
    os.environ[DIR_ENV] = folder
    config.stash[_FOLDER] = folder


_FOLDER = pytest.StashKey[str]()


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    node.workerinput[DIR_ENV] = node.config.stash[_FOLDER]


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    folder = config.stash.get(_FOLDER, None)
    if folder is None:
        return
    trials = read_trials(Path(folder))
    if not trials:
        return
    table = render(trials)
    terminalreporter.section("fault and hostile-input table")
    for line in table.splitlines():
        terminalreporter.write_line(line)
    if target := os.environ.get(TABLE_ENV):
        Path(target).write_text(table + "\n", encoding="utf-8")


def pytest_unconfigure(config: pytest.Config) -> None:
    if (folder := config.stash.get(_FOLDER, None)) is not None:
        shutil.rmtree(folder, ignore_errors=True)
