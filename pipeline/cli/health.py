"""CLI: `creditwatch health`: each source's standing and its last runs, list by list."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import typer
from rich.markup import escape

from core.clock import SHANGHAI
from core.registry import RegistryError, get_source, load_registry
from pipeline.cli.console import connect, fail, health_label, out, print_json, run_report
from storage.runs import recent_runs
from storage.source_state import source_state

COLOURS = {
    "healthy": "green",
    "ok": "green",
    "degraded": "yellow",
    "running": "cyan",
    "fetched": "cyan",
    "void": "dim",  # the wrong cassette: not counted
}


def _local(value: Any) -> str | None:
    return value.astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M") if value else None


def source_report(conn: Any, source: Any, runs: int) -> dict[str, Any]:
    """A source's standing (``storage.source_state``) and its last ``runs`` runs."""
    state = source_state(conn, source.id, source.failing_after).as_dict()
    del state["last_runs"]  # the runs below say more
    return {
        **state,
        "name_zh": source.name_zh,
        "name_en": source.name_en,
        "runs": [run_report(conn, run) for run in recent_runs(conn, source.id, runs)],
    }


def _state_line(report: dict[str, Any]) -> str:
    source, state = escape(report["source"]), report["state"]
    if state == "never_run":
        line = f"[bold]{source}[/bold]  [dim]never run[/dim]"
    elif state == "failing":
        line = (
            f"[bold]{source}[/bold]  [red bold]FAILING[/red bold]  {escape(report['detail'])} "
            f"(failing after {report['failing_after']})"
        )
    else:
        streak = report["unhealthy_streak"]
        line = f"[bold]{source}[/bold]  [green]ok[/green]"
        if streak:
            line += f"  {streak} unhealthy run(s) since the last healthy one"
    healthy = report["last_healthy"]
    if state != "never_run":
        line += "  last healthy: " + (
            f"{escape(healthy['run_id'])} ({_local_iso(healthy['started_at'])})"
            if healthy
            else "none"
        )
    if report["running"]:
        line += f"  running: {escape(', '.join(report['running']))}"
    return line


def _local_iso(value: str | None) -> str:
    """An ISO time from the report, in Asia/Shanghai to the minute."""
    if not value:
        return "—"
    return _local(datetime.fromisoformat(value)) or "—"


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{name} {n}" for name, n in sorted(counts.items()) if n) or "none"


def _print_report(out: Any, report: dict[str, Any]) -> None:
    out.print(_state_line(report))
    for run in report["runs"]:
        colour = COLOURS.get(run["state"], "red")
        started = _local_iso(run["started_at"])
        state = health_label(run["state"], run["partial"])
        out.print(
            f"  {escape(run['run_id']):<16} {started:<16}  "
            f"[{colour}]{state:<8}[/{colour}]  records {run['records']}  "
            f"events: {escape(_counts(run['events']))}"
        )
        if run["lists"]:
            lists = []
            for lst in run["lists"]:
                short = lst["list"].split(".", 1)[-1]
                problems = f" [{', '.join(lst['problems'])}]" if lst["problems"] else ""
                health = health_label(lst["health"], lst["partial"])
                lists.append(f"{short} {health} {lst['records']}{problems}")
            out.print("      lists: " + "; ".join(lists), markup=False)
        if run["outcomes"]:
            out.print("      fetch outcomes: " + _counts(run["outcomes"]), markup=False)
        if run["error"]:
            out.print(f"      error: {run['error']}", markup=False)
    if not report["runs"]:
        out.print("  no runs yet")


def health(
    source: Annotated[
        str | None, typer.Argument(help="Only this source (default: every source).")
    ] = None,
    runs: Annotated[int, typer.Option("--runs", min=1, help="How many recent runs to show.")] = 5,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON document, for machines.")] = (
        False
    ),
) -> None:
    """Each source's standing (ok, failing after K unhealthy runs, never run) and its last
    runs: state, each list's health and records, fetch outcomes and events."""

    try:
        sources = [get_source(source)] if source else list(load_registry().values())
    except RegistryError as exc:
        raise fail(escape(str(exc))) from None
    with connect(reading=True) as conn:
        reports = [source_report(conn, src, runs) for src in sources]
    if as_json:
        print_json({"sources": reports})
        return
    for index, report in enumerate(reports):
        if index:
            out.print()
        _print_report(out, report)


app = typer.Typer()
app.command("health")(health)
