"""`creditwatch doctor`: every check of the installation, what is wrong and the fix."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape

from pipeline.cli.console import out, print_json
from pipeline.doctor import FAIL, OK, WARN, diagnose, failed

MARKS = {OK: "[green]ok  [/green]", WARN: "[yellow]warn[/yellow]", FAIL: "[red]FAIL[/red]"}

app = typer.Typer()


@app.command("doctor")
def doctor(
    as_json: Annotated[
        bool, typer.Option("--json", help="One JSON document: the findings, for machines.")
    ] = False,
    launch: Annotated[
        bool, typer.Option(help="Launch Chromium to check it starts (--no-launch: only look).")
    ] = True,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Show only what is wrong.")] = False,
) -> None:
    """Check the data dir, disk space, database (reachable, creditwatch's, migrations at
    head, intact), browser, registry, subscriptions and each source's last run; print what
    is wrong with the command that fixes it. Exit status 1 when a check fails."""
    findings = diagnose(launch_browser=launch)
    if as_json:
        print_json({"ok": not failed(findings), "findings": [f.as_dict() for f in findings]})
    else:
        for finding in findings:
            if quiet and finding.status == OK:
                continue
            subject = f" {escape(finding.subject)}" if finding.subject else ""
            line = f"{MARKS[finding.status]}  {escape(finding.check)}{subject}: "
            line += escape(finding.problem)
            if finding.fix and finding.status != OK:
                line += f"\n      fix: {escape(finding.fix)}"
            out.print(line, highlight=False)
        counts = {s: sum(f.status == s for f in findings) for s in (OK, WARN, FAIL)}
        out.print(f"{counts[OK]} ok, {counts[WARN]} warn, {counts[FAIL]} fail", highlight=False)
    if failed(findings):
        raise typer.Exit(1)
