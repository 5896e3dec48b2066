"""Commands about runs: a crawl, the Credit China probe, and what runs left
behind (their events, announcements and archived responses)."""

from __future__ import annotations

import sys
from collections import Counter
from datetime import date, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from alerts.render import event_line
from core.clock import SHANGHAI
from core.health import VOID, is_note, is_partial
from core.registry import RegistryError, get_source
from export.formats import write_jsonl
from pipeline.cli.console import (
    JsonFlag,
    connect,
    err,
    fail,
    health_label,
    hint_if_empty,
    known_source,
    listing,
    out,
    print_json_lines,
    run_report,
)
from pipeline.preflight import unreachable_reason
from pipeline.run import CrawlError, CrawlSpec, NothingToCrawl, crawl
from storage.announcements import list_announcements
from storage.archive import NotArchived, get_response
from storage.engine import (
    get_engine,
)
from storage.events import query_events
from storage.runs import UnknownRun, get_run, list_runs, run_lists, run_summary
from storage.shards import shard_label, shard_of_run

app = typer.Typer()

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"  # the checkout's cassettes


@app.command("crawl")
def crawl_cmd(
    source: Annotated[str, typer.Argument(help="Source id (see `creditwatch sources`).")],
    replay: Annotated[
        Path | None, typer.Option(help="Replay this cassette; never touches the network.")
    ] = None,
    record: Annotated[
        Path | None, typer.Option(help="Crawl live and record every response into this cassette.")
    ] = None,
    delist_after: Annotated[
        int | None,
        typer.Option(
            help="Consecutive healthy absences before `disappeared` (default: the source's, 2)."
        ),
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show Scrapy's log.")] = False,
    watchlist: Annotated[
        str | None,
        typer.Option(
            help="Watch mode (creditchina): a file of names/USCCs, or db: for stored USCCs."
        ),
    ] = None,
    captcha: Annotated[
        str,
        typer.Option(help="Captcha solver: manual (ask here), command, none, or module:factory."),
    ] = "manual",
    captcha_command: Annotated[
        str | None,
        typer.Option(
            help="For --captcha command: program that reads the image, prints the answer."
        ),
    ] = None,
    shard: Annotated[
        str | None,
        typer.Option(
            metavar="K/N",
            help="Crawl only shard K of N of the watchlist (a stable hash of each subject); "
            "shard 1 also reads the list-mode lists. N is capped by watch.max_shards.",
        ),
    ] = None,
) -> None:
    """One run: fetch, archive, normalise, store, detect; then a summary and the run's events."""
    if replay and record:
        raise fail("--replay and --record exclude each other")
    mode = "replay" if replay else "record" if record else "live"
    interactive = captcha == "manual" and sys.stdin.isatty() and mode != "replay"
    try:
        get_source(source)
        spec = CrawlSpec(
            source=source,
            mode=mode,
            cassette=replay or record,
            delist_after=delist_after,
            log_level="INFO" if verbose else "WARNING",
            watchlist=watchlist,
            captcha=captcha,
            captcha_command=captcha_command,
            interactive=interactive,
            shard=shard,
        )
    except (RegistryError, CrawlError) as exc:
        raise fail(escape(str(exc))) from None
    try:
        if interactive:  # no spinner over a captcha prompt
            out.print(f"crawling {source} ({mode}); a captcha, if asked, is shown here…")
            run_id = crawl(spec)
        else:
            with out.status(f"crawling {source} ({mode})…") as status:
                run_id = crawl(
                    spec, progress=lambda n: status.update(f"crawling {source}: {n} responses")
                )
    except NothingToCrawl as exc:  # an empty shard: no run, and nothing wrong
        out.print(escape(str(exc)))
        return
    except CrawlError as exc:  # refused before any run was made (a wrong cassette)
        raise fail(escape(str(exc))) from None
    with get_engine().connect() as conn:
        run = get_run(conn, run_id)
    down = unreachable_reason(run)
    if run.state == VOID:
        raise fail(escape(f"{run.error} (run {run_id} is void: `health` does not count it)"))
    if down is not None:
        raise fail(
            escape(f"{down} — no network? use --replay CASSETTE")
            + escape(_example_cassette(source))
            + f" (run {run_id} failed)",
            code=1,
        )
    print_run(run_id, with_events=True)
    if run.state in ("failed", "aborted"):
        raise typer.Exit(1)


def _example_cassette(source: str) -> str:
    """``, e.g. fixtures/<source>/<day1>.yaml`` when the checkout ships cassettes of it."""
    shipped = sorted((FIXTURES / source).glob("*.yaml"))
    if not shipped:
        return ""
    path = shipped[0]
    if path.is_relative_to(Path.cwd()):
        path = path.relative_to(Path.cwd())
    return f", e.g. --replay {path}"


def print_run(run_id: str, with_events: bool) -> None:
    with get_engine().connect() as conn:
        run = get_run(conn, run_id)
        lists = run_lists(conn, run_id)
        events = list(query_events(conn, run_id=run_id))
    summary = run_summary(run)
    colour = {"healthy": "green", "degraded": "yellow"}.get(run.state, "red")
    state = health_label(run.state, bool(summary.partial))
    out.print(
        f"run [bold]{run.run_id}[/bold] ({run.mode}) [{colour}]{state}[/{colour}]  "
        f"clock {run.started_at.isoformat() if run.started_at else '—'} ({run.clock_origin})"
    )
    if run.error:
        out.print(f"  error: {run.error}")
    shard = shard_of_run(run)
    if shard is not None:
        out.print(
            f"  shard {shard['index']}/{shard['count']} of watchlist {shard['watchlist']}: "
            f"{shard['subjects']} of {shard['of_subjects']} subject(s)",
            markup=False,
        )
    kinds = Counter(e["event"] for e in events)
    out.print(
        f"  pages {run.pages}  records {run.records}  events {len(events)}"
        + (" (" + ", ".join(f"{k} {v}" for k, v in sorted(kinds.items())) + ")" if kinds else "")
    )
    for lst in lists:
        colour = {"healthy": "green", "degraded": "yellow"}.get(lst.health, "red")
        health = health_label(lst.health, is_partial(lst.findings))
        out.print(
            f"  {lst.list:<20} [{colour}]{health:<8}[/{colour}] pages {lst.pages}  "
            f"rows {lst.rows_seen}/{lst.rows_declared if lst.rows_declared is not None else '?'}  "
            f"records {lst.records}"
        )
        for finding in lst.findings or []:
            line = finding.get("detail") or ""
            if finding.get("outcome"):
                line = (
                    f"{finding['outcome']} ×{finding.get('count', 1)}: "
                    + ", ".join(finding.get("urls") or [finding.get("example_url", "")])
                    + (f" ({finding['detail']})" if finding.get("detail") else "")
                )
            # "!" marks a fault; "·" a note (a partial list's: how much of it was read).
            out.print(f"      {'·' if is_note(finding) else '!'} {line}", markup=False)
    if summary.outcomes:
        out.print(
            "  fetch outcomes: "
            + ", ".join(f"{name} {v.count}" for name, v in summary.outcomes.items()),
            markup=False,
        )
    notices = summary.announcements
    if notices:
        out.print(
            f"  announcements: {notices.read} read, "
            f"{len(notices.needs_transcription)} need transcription, "
            f"{len(notices.failed)} failed, "
            f"{len(notices.unmatched_removals)} removal rows matching no entry",
            markup=False,
        )
        for item in notices.failed:
            out.print(f"      ! {item['title']} <{item['url']}>: {item['error']}", markup=False)
        for item in notices.needs_transcription:
            out.print(f"      ? image only: {item['title']} <{item['url']}>", markup=False)
    if with_events:
        shown = [e for e in events if not e["baseline"]]
        if len(shown) < len(events):
            out.print(f"  ({len(events) - len(shown)} baseline listings not shown)")
        for event in shown:
            out.print("  " + event_line(event), markup=False)


@app.command()
def probe(
    source: Annotated[str, typer.Argument(help="Only creditchina has a probe.")],
    keyword: Annotated[
        str | None, typer.Option(help="Also search this subject and read its records.")
    ] = None,
    replay: Annotated[
        Path | None, typer.Option(help="Run the steps against a cassette instead of the site.")
    ] = None,
) -> None:
    """Which outcome each step of a live Credit China session gets today (stores nothing).

    Untested against the live site offline: run it on a machine with network access.
    """
    from pipeline.probe import SOURCE
    from pipeline.probe import probe as run_probe

    if source != SOURCE:
        raise fail(f"no probe for {source!r} (only {SOURCE})")
    if replay is not None and not replay.is_file():
        raise fail(f"cassette {replay} does not exist")
    steps = run_probe(keyword=keyword, cassette=replay)
    for step in steps:
        out.print(step.line(), markup=False)
    if any(step.outcome != "ok" for step in steps):
        raise typer.Exit(1)


@app.command()
def runs(
    source: Annotated[str | None, typer.Option(help="Only this source.")] = None,
    limit: Annotated[int, typer.Option(min=1, help="How many, newest first.")] = 50,
    as_json: JsonFlag = False,
) -> None:
    """Recent runs with their health and counts; a run of one shard of a watchlist is shown
    with it (`creditchina:7 shard 2/3`)."""
    with connect() as conn:
        source = known_source(source, conn)
        hint_if_empty(conn)
        found = list_runs(conn, source, limit)
        if as_json:
            print_json_lines(run_report(conn, run) | {"shard": shard_label(run)} for run in found)
            return
        table = listing(
            "run", "mode", "state", "clock (UTC)", "pages", "records", "events", "lists"
        )
        for run in found:
            health = ", ".join(
                f"{r.list.split('.', 1)[-1]}:{health_label(r.health, is_partial(r.findings))}"
                for r in run_lists(conn, run.run_id)
            )
            state = health_label(run.state, bool(run_summary(run).partial))
            shard = shard_label(run)
            table.add_row(
                f"{run.run_id} shard {shard}" if shard else run.run_id, run.mode, state,
                run.started_at.strftime("%Y-%m-%d %H:%M:%S") if run.started_at else "—",
                str(run.pages), str(run.records), str(run.events), health,
            )  # fmt: skip
    out.print(table)


@app.command()
def changes(
    source: Annotated[str | None, typer.Option(help="Only this source.")] = None,
    since: Annotated[
        str | None, typer.Option(help="Asia/Shanghai date (YYYY-MM-DD), inclusive.")
    ] = None,
    run: Annotated[str | None, typer.Option(help="Only events of this run id.")] = None,
    include_baseline: Annotated[
        bool,
        typer.Option(
            "--include-baseline",
            help="Also the `listed` events of each list's first run (its baseline: what was "
            "already there, not news); hidden by default.",
        ),
    ] = False,
    format: Annotated[str, typer.Option(help="table or jsonl.")] = "table",
    as_json: JsonFlag = False,
) -> None:
    """Change events as schema objects: listings, delistings, relistings, modifications.

    A list's first run raises a `listed` event for every entry already there (its baseline,
    `baseline: true`); those are hidden unless --include-baseline, and the output says how
    many were (on stderr with --json or --format jsonl)."""
    since_at = None
    if since:
        try:
            since_at = datetime.combine(date.fromisoformat(since), datetime.min.time(), SHANGHAI)
        except ValueError:
            raise fail(f"--since wants a date like 2025-11-22, not {since!r}") from None
    if format not in ("table", "jsonl"):
        raise fail("--format is table or jsonl")
    with connect() as conn:
        source = known_source(source, conn)
        if run is not None:
            try:
                get_run(conn, run)
            except UnknownRun as exc:
                raise fail(escape(str(exc))) from None
        hint_if_empty(conn)
        events = list(query_events(conn, source=source, run_id=run, since=since_at))
    shown = events if include_baseline else [e for e in events if not e["baseline"]]
    hidden = len(events) - len(shown)
    note = f"{hidden} baseline listing(s) hidden: --include-baseline shows them"
    if as_json or format == "jsonl":
        write_jsonl(shown, sys.stdout)
        if hidden:
            err.print(note, markup=False, highlight=False)
        return
    table = listing("at (UTC)", "event", "list", "entity", "case / title", "cause / changes")
    for e in shown:
        detail = e["cause"] or (", ".join(e["changes"]) if e["changes"] else "")
        if e["baseline"]:
            detail = "baseline"
        table.add_row(
            *map(escape, (
                e["at"][:19].replace("T", " "), e["event"], e["list"], e["entity_name"] or "",
                e["case_number"] or e["title"] or "", detail,
            ))
        )  # fmt: skip
    out.print(table)
    footer = f"{len(shown)} event(s)"
    out.print(f"{footer}; {note}" if hidden else footer, markup=False, highlight=False)


@app.command()
def announcements(
    source: Annotated[str, typer.Argument(help="An announcement source, e.g. mct_tourism.")],
    state: Annotated[
        str | None, typer.Option(help="Only this state: read, needs_transcription, failed.")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Announcements read so far, newest reading first: what each gave, or why it failed."""
    try:
        if get_source(source).announcements is None:
            raise fail(f"{source} does not publish announcements")
    except RegistryError as exc:
        raise fail(escape(str(exc))) from None
    with connect(reading=True) as conn:
        items = list(list_announcements(conn, source, state))
    if as_json:
        print_json_lines(
            {
                "run_id": item.run_id, "published_on": item.published_on, "kind": item.kind,
                "state": item.state, "rows": item.rows, "title": item.title, "url": item.url,
                "error": item.error,
            }
            for item in items
        )  # fmt: skip
        return
    table = listing("run", "published", "kind", "state", "rows", "title", "url / problem")
    for item in items:
        table.add_row(
            *map(escape, (
                item.run_id, str(item.published_on or "—"), item.kind, item.state,
                str(item.rows), item.title, item.error or item.url,
            ))
        )  # fmt: skip
    out.print(table)


@app.command()
def raw(
    sha: Annotated[str, typer.Argument(help="sha256 of an archived body (6+ hex digits).")],
    out_path: Annotated[
        Path | None, typer.Option("--out", help="Write the body bytes, as received, here.")
    ] = None,
) -> None:
    """Show an archived response: request, status, headers and the decoded body."""
    try:
        with connect() as conn:
            response = get_response(conn, sha)
    except NotArchived as exc:
        raise fail(escape(str(exc))) from None
    if out_path:
        out_path.write_bytes(response.body)
        err.print(f"{len(response.body)} bytes → {out_path}")
        return
    print(f"{response.method} {response.url}")
    print(f"status {response.status}  fetched {response.fetched_at}  run {response.run_id}")
    print(f"sha256 {response.sha256}")
    for name, value in response.headers:
        print(f"{name}: {value}")
    print()
    print(response.text())
