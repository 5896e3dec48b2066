"""CLI: `creditwatch health`: each source's standing and its last runs, list by list."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any

import typer
from rich.markup import escape

from core.clock import SHANGHAI
from core.registry import RegistryError, get_source, load_registry
from pipeline.cli.console import connect, fail, out
from storage.runs import recent_runs, run_lists, run_summary
from storage.source_state import source_state

COLOURS = {
    "healthy": "green",
    "ok": "green",
    "degraded": "yellow",
    "running": "cyan",
    "fetched": "cyan",
}


def _local(value: Any) -> str | None:
    return value.astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M") if value else None


def _problems(findings: list[dict[str, Any]] | None) -> list[str]:
    """What made a list unhealthy, in short: outcome names and broken checks, once each."""
    labels: list[str] = []
    for finding in findings or []:
        label = finding.get("outcome") or finding.get("check") or "?"
        if finding.get("field"):
            label = f"{label}:{finding['field']}"
        if label not in labels:
            labels.append(label)
    return labels


def run_report(conn: Any, run: Any) -> dict[str, Any]:
    """One run as ``health --json`` shows it."""
    summary = run_summary(run)
    return {
        "run_id": run.run_id,
        "seq": run.seq,
        "mode": run.mode,
        "state": run.state,
        "started_at": run.started_at.isoformat() if run.started_at else None,
        "started_at_shanghai": (
            run.started_at.astimezone(SHANGHAI).isoformat() if run.started_at else None
        ),
        "ended_at": run.ended_at.isoformat() if run.ended_at else None,
        "error": run.error,
        "pages": run.pages,
        "records": run.records,
        "lists": [
            {
                "list": row.list,
                "health": row.health,
                "records": row.records,
                "pages": row.pages,
                "rows_seen": row.rows_seen,
                "rows_declared": row.rows_declared,
                "problems": _problems(row.findings),
                "findings": row.findings or [],
            }
            for row in run_lists(conn, run.run_id)
        ],
        "outcomes": {name: value.count for name, value in summary.outcomes.items()},
        "events": dict(summary.events),
    }


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
        out.print(
            f"  {escape(run['run_id']):<16} {started:<16}  "
            f"[{colour}]{run['state']:<8}[/{colour}]  records {run['records']}  "
            f"events: {escape(_counts(run['events']))}"
        )
        if run["lists"]:
            lists = []
            for lst in run["lists"]:
                short = lst["list"].split(".", 1)[-1]
                problems = f" [{', '.join(lst['problems'])}]" if lst["problems"] else ""
                lists.append(f"{short} {lst['health']} {lst['records']}{problems}")
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
        raise fail(str(exc)) from None
    with connect() as conn:
        reports = [source_report(conn, src, runs) for src in sources]
    if as_json:
        typer.echo(json.dumps({"sources": reports}, ensure_ascii=False, indent=2))
        return
    for index, report in enumerate(reports):
        if index:
            out.print()
        _print_report(out, report)


app = typer.Typer()
app.command("health")(health)
