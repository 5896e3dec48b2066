"""CLI: `creditwatch schedule`: the scheduler daemon (``pipeline/daemon.py``), or with
``--list`` each job's next run."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from core.clock import TIMEZONE_NAME
from core.registry import broken_sources
from pipeline.cli.console import err, fail, listing, out, print_json_lines


def _settings(pairs: list[str] | None) -> dict[str, str]:
    settings = {}
    for pair in pairs or []:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise fail(f"--setting takes NAME=VALUE, not {pair!r}")
        settings[name] = value
    return settings


def schedule(
    list_: Annotated[
        bool, typer.Option("--list", help="Show each job's next run and trigger, then exit.")
    ] = False,
    json_: Annotated[bool, typer.Option("--json", help="With --list: JSON lines.")] = False,
    source: Annotated[
        list[str] | None,
        typer.Option(
            "--source", help="Schedule only this source (repeatable); the others' jobs go."
        ),
    ] = None,
    replay_dir: Annotated[
        Path | None,
        typer.Option(
            help="Replay DIR/<source>.yaml on every run instead of crawling the live site; "
            "only sources with a cassette there are scheduled.",
            file_okay=False,
        ),
    ] = None,
    interval: Annotated[
        float | None,
        typer.Option(help="Crawl every N seconds instead of on the registry's cron (no jitter)."),
    ] = None,
    delist_after: Annotated[
        int | None, typer.Option(help="Healthy absences before delisting (default: per source).")
    ] = None,
    setting: Annotated[
        list[str] | None,
        typer.Option("--setting", "-s", help="NAME=VALUE Scrapy setting for every crawl."),
    ] = None,
    alerts_every: Annotated[
        float,
        typer.Option(help="Seconds between alert passes (delivery and digests); 0: none."),
    ] = 300,
    misfire_grace: Annotated[
        int, typer.Option(help="Seconds a run missed (daemon down) may still start late.")
    ] = 3600,
    workers: Annotated[int, typer.Option(help="Crawls of different sources at once.")] = 4,
    stop_timeout: Annotated[
        float,
        typer.Option(help="On SIGTERM, seconds to wait for crawls in progress before stopping."),
    ] = 900,
    run_for: Annotated[
        float | None, typer.Option(help="Stop (as on SIGTERM) after N seconds.")
    ] = None,
    timezone: Annotated[
        str, typer.Option(help="The scheduler's time zone (sources declare their own).")
    ] = TIMEZONE_NAME,
    queue: Annotated[
        bool,
        typer.Option(
            "--queue",
            help="PostgreSQL: queue each crawl for `creditwatch worker` processes instead of "
            "crawling here.",
        ),
    ] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log APScheduler too.")] = False,
) -> None:
    """Run the scheduler: every source on its registry cron, alerts every few minutes. Jobs
    live in the database (table scheduler_jobs) and keep their next run across restarts; the
    registry is reconciled with them on every start. SIGTERM lets crawls in progress finish
    (up to --stop-timeout); a second SIGTERM stops them, marked aborted. Runs left `running`
    by a process that died are marked aborted at start-up. On PostgreSQL only one scheduler
    leads (an advisory lock): another one started on the same database stands by and takes
    over when the leader stops; with --queue the crawls run in `creditwatch worker`
    processes (docs/scale-out.md), and a source declaring `schedule.shards: N` queues N
    jobs per trigger, one per shard of its watchlist."""
    from pipeline.daemon import Daemon, DaemonError, DaemonOptions, schedule_rows

    try:
        options = DaemonOptions(
            sources=tuple(source or ()),
            replay_dir=replay_dir,
            interval=interval,
            delist_after=delist_after,
            settings=_settings(setting),
            alerts_every=alerts_every,
            misfire_grace=misfire_grace,
            workers=workers,
            stop_timeout=stop_timeout,
            run_for=run_for,
            timezone=timezone,
            queue=queue,
        )
        if list_:
            rows = schedule_rows(options)
        else:
            daemon_logging(verbose)
            daemon = Daemon(options)
    except DaemonError as exc:
        raise fail(escape(str(exc))) from None
    if list_:
        _report_broken()
        _print_rows(rows, json_)
        return
    try:
        code = daemon.serve()
    except DaemonError as exc:
        raise fail(escape(str(exc))) from None
    if code:
        raise typer.Exit(code)


def _report_broken() -> None:
    """Sources whose declaration does not load get no job; the daemon logs them, --list says
    so on stderr (with file and line) so the listing itself stays usable."""

    for problem in broken_sources():
        err.print(f"[red]not scheduled:[/red] {escape(str(problem))}")


def daemon_logging(verbose: bool) -> None:
    """The log of a long-running process (the scheduler, a worker): one line per event."""
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # APScheduler's INFO lines ("Running job …") are noise next to ours; its warnings (a
    # trigger skipped because the source is still crawling, a run missed) are kept.
    logging.getLogger("apscheduler").setLevel(logging.INFO if verbose else logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.INFO if verbose else logging.WARNING)
    logging.getLogger("procrastinate").setLevel(logging.INFO if verbose else logging.WARNING)


def _print_rows(rows: list[dict[str, object]], as_json: bool) -> None:
    if as_json:
        print_json_lines(rows)
        return
    table = listing(
        "job", "next run", "trigger", "status", "mode", "last run", box=None, pad_edge=False
    )
    for row in rows:
        table.add_row(
            *map(escape, (
                str(row["id"]), str(row["next_run"] or "—"), str(row["trigger"] or "—"),
                str(row["status"]), _mode(row), str(row["last_run"] or "—"),
            ))
        )  # fmt: skip
    out.print(table)


def _mode(row: dict[str, object]) -> str:
    cassette = f" {Path(str(row['cassette'])).name}" if row["cassette"] else ""
    return f"{row['mode'] or '—'}{cassette}"


app = typer.Typer()
app.command("schedule")(schedule)
