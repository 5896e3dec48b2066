"""The ``creditwatch`` command line."""

from __future__ import annotations

import json
import sys
from collections import Counter
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Annotated, Any
from zoneinfo import ZoneInfo

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from sqlalchemy.exc import OperationalError
from w3lib.encoding import html_to_unicode

from alerts.channels import ChannelError, parse_channel
from alerts.feed import feed_document
from alerts.messages import sample_message
from alerts.render import event_line
from alerts.sender import send_pending
from alerts.subscriptions import Subscription, load_file
from core.registry import RegistryError, broken_sources, get_source, load_registry
from core.schema import RECORD_FIELDS
from export.formats import write_csv, write_jsonl
from export.snapshots import MANIFEST, SnapshotError, write_snapshot
from pipeline.run import CrawlError, CrawlSpec, crawl
from storage.announcements import list_announcements
from storage.archive import NotArchived, get_response
from storage.asof import DIFF_FIELDS, export_records
from storage.asof import diff as diff_lists
from storage.engine import (
    ReadOnlyDatabase,
    current_revision,
    database_url,
    get_engine,
    read_only_reason,
    upgrade,
)
from storage.events import query_events
from storage.outbox import (
    alert_log,
    delete_subscription,
    requeue,
    save_subscription,
    subscription_rows,
)
from storage.runs import get_run, list_runs, run_lists

SHANGHAI = ZoneInfo("Asia/Shanghai")

app = typer.Typer(
    help="Scheduled spiders, one schema and change detection for China's public credit portals.",
    no_args_is_help=True,
    add_completion=False,
)
db_app = typer.Typer(help="Database maintenance.", no_args_is_help=True)
app.add_typer(db_app, name="db")
watch_app = typer.Typer(help="Subscriptions: who hears about what.", no_args_is_help=True)
app.add_typer(watch_app, name="watch")
alerts_app = typer.Typer(help="Delivering alerts.", no_args_is_help=True)
app.add_typer(alerts_app, name="alerts")
# Piped output (CI logs, files) gets a wide fixed width instead of rich's 80 columns.
out = Console(width=None if sys.stdout.isatty() else 200, soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


def fail(message: str, code: int = 2) -> typer.Exit:
    err.print(f"[red]error:[/red] {message}")
    return typer.Exit(code)


def connect() -> Any:
    upgrade()
    return get_engine().connect()


@app.command()
def sources() -> None:
    """List the declared sources and their lists. Declarations that do not load are listed
    on stderr (file, line, problem) and make the exit status 1: the others still run."""
    table = Table("source", "name", "jurisdiction", "lists", "schedule")
    for source in load_registry().values():
        table.add_row(
            source.id,
            f"{source.name_zh}\n{source.name_en}",
            f"{source.jurisdiction} ({source.region_code})",
            "\n".join(f"{lst.id} [{lst.list_kind}]" for lst in source.lists),
            f"{source.cron} {source.timezone}",
        )
    out.print(table)
    broken = broken_sources()
    for problem in broken:
        err.print(f"[red]broken:[/red] {escape(str(problem))}")
    if broken:
        raise typer.Exit(1)


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
        )
    except (RegistryError, CrawlError) as exc:
        raise fail(str(exc)) from None
    if interactive:  # no spinner over a captcha prompt
        out.print(f"crawling {source} ({mode}); a captcha, if asked, is shown here…")
        run_id = crawl(spec)
    else:
        with out.status(f"crawling {source} ({mode})…") as status:
            run_id = crawl(
                spec, progress=lambda n: status.update(f"crawling {source}: {n} responses")
            )
    print_run(run_id, with_events=True)
    with get_engine().connect() as conn:
        if get_run(conn, run_id).state in ("failed", "aborted"):
            raise typer.Exit(1)


def print_run(run_id: str, with_events: bool) -> None:
    with get_engine().connect() as conn:
        run = get_run(conn, run_id)
        lists = run_lists(conn, run_id)
        events = list(query_events(conn, run_id=run_id))
    summary = run.summary or {}
    colour = {"healthy": "green", "degraded": "yellow"}.get(run.state, "red")
    out.print(
        f"run [bold]{run.run_id}[/bold] ({run.mode}) [{colour}]{run.state}[/{colour}]  "
        f"clock {run.started_at.isoformat() if run.started_at else '—'} ({run.clock_origin})"
    )
    if run.error:
        out.print(f"  error: {run.error}")
    kinds = Counter(e["event"] for e in events)
    out.print(
        f"  pages {run.pages}  records {run.records}  events {len(events)}"
        + (" (" + ", ".join(f"{k} {v}" for k, v in sorted(kinds.items())) + ")" if kinds else "")
    )
    for lst in lists:
        colour = {"healthy": "green", "degraded": "yellow"}.get(lst.health, "red")
        out.print(
            f"  {lst.list:<20} [{colour}]{lst.health:<8}[/{colour}] pages {lst.pages}  "
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
            out.print(f"      ! {line}", markup=False)
    outcomes = summary.get("outcomes", {})
    if outcomes:
        out.print(
            "  fetch outcomes: "
            + ", ".join(f"{name} {v['count']}" for name, v in outcomes.items()),
            markup=False,
        )
    notices = summary.get("announcements")
    if notices:
        out.print(
            f"  announcements: {notices['read']} read, "
            f"{len(notices['needs_transcription'])} need transcription, "
            f"{len(notices['failed'])} failed, "
            f"{len(notices['unmatched_removals'])} removal rows matching no entry",
            markup=False,
        )
        for item in notices["failed"]:
            out.print(f"      ! {item['title']} <{item['url']}>: {item['error']}", markup=False)
        for item in notices["needs_transcription"]:
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
def changes(
    source: Annotated[str | None, typer.Option(help="Only this source.")] = None,
    since: Annotated[
        str | None, typer.Option(help="Asia/Shanghai date (YYYY-MM-DD), inclusive.")
    ] = None,
    run: Annotated[str | None, typer.Option(help="Only events of this run id.")] = None,
    format: Annotated[str, typer.Option(help="table or jsonl.")] = "table",
) -> None:
    """Change events as schema objects."""
    since_at = None
    if since:
        try:
            since_at = datetime.combine(date.fromisoformat(since), datetime.min.time(), SHANGHAI)
        except ValueError:
            raise fail(f"--since wants a date like 2025-11-22, not {since!r}") from None
    if format not in ("table", "jsonl"):
        raise fail("--format is table or jsonl")
    with connect() as conn:
        events = list(query_events(conn, source=source, run_id=run, since=since_at))
    if format == "jsonl":
        write_jsonl(events, sys.stdout)
        return
    table = Table("at", "event", "list", "entity", "case / title", "cause / changes")
    for e in events:
        detail = e["cause"] or (", ".join(e["changes"]) if e["changes"] else "")
        if e["baseline"]:
            detail = "baseline"
        table.add_row(
            e["at"][:19], e["event"], e["list"], e["entity_name"] or "",
            e["case_number"] or e["title"] or "", detail,
        )  # fmt: skip
    out.print(table)


@app.command()
def export(
    source: Annotated[str, typer.Argument(help="Source id.")],
    list_: Annotated[str | None, typer.Option("--list", help="Full list id or its suffix.")] = None,
    include_removed: Annotated[bool, typer.Option(help="Also entries now removed.")] = False,
    format: Annotated[str, typer.Option(help="jsonl or csv.")] = "jsonl",
    out_path: Annotated[Path | None, typer.Option("--out", help="File (default stdout).")] = None,
    raw: Annotated[
        bool, typer.Option(help="CSV: cells verbatim, even those a spreadsheet runs as formulas.")
    ] = False,
) -> None:
    """Records in the schema, one per row: what each list's latest healthy run saw."""
    try:
        src = get_source(source)
        lists = [src.list(list_).id] if list_ else list(src.list_ids)
    except RegistryError as exc:
        raise fail(str(exc)) from None
    if format not in ("jsonl", "csv"):
        raise fail("--format is jsonl or csv")
    with connect() as conn:
        records, unvouched = export_records(conn, src.id, lists, include_removed=include_removed)
    for list_id in unvouched:
        err.print(f"[yellow]warning:[/yellow] {list_id} has no healthy run yet; none exported")
    stream = out_path.open("w", encoding="utf-8", newline="") if out_path else sys.stdout
    try:
        if format == "csv":
            count = write_csv(records, stream, RECORD_FIELDS, raw=raw)
        else:
            count = write_jsonl(records, stream)
    finally:
        if out_path:
            stream.close()
    if out_path:
        err.print(f"{count} records → {out_path}")


@app.command()
def runs(source: Annotated[str | None, typer.Option(help="Only this source.")] = None) -> None:
    """Recent runs with their health and counts."""
    table = Table("run", "mode", "state", "clock (UTC)", "pages", "records", "events", "lists")
    with connect() as conn:
        for run in list_runs(conn, source):
            health = ", ".join(
                f"{r.list.split('.', 1)[-1]}:{r.health}" for r in run_lists(conn, run.run_id)
            )
            table.add_row(
                run.run_id, run.mode, run.state,
                run.started_at.strftime("%Y-%m-%d %H:%M:%S") if run.started_at else "—",
                str(run.pages), str(run.records), str(run.events), health,
            )  # fmt: skip
    out.print(table)


@app.command()
def announcements(
    source: Annotated[str, typer.Argument(help="An announcement source, e.g. mct_tourism.")],
    state: Annotated[
        str | None, typer.Option(help="Only this state: read, needs_transcription, failed.")
    ] = None,
) -> None:
    """Announcements read so far, newest reading first: what each gave, or why it failed."""
    try:
        if get_source(source).announcements is None:
            raise fail(f"{source} does not publish announcements")
    except RegistryError as exc:
        raise fail(str(exc)) from None
    table = Table("run", "published", "kind", "state", "rows", "title", "url / problem")
    with connect() as conn:
        for item in list_announcements(conn, source, state):
            table.add_row(
                item.run_id, str(item.published_on or "—"), item.kind, item.state,
                str(item.rows), item.title, item.error or item.url,
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
        raise fail(str(exc)) from None
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
    print(decode_body(response.body, response.headers))


def decode_body(body: bytes, headers: list[list[str]]) -> str:
    """The body as text, in the charset the response declared (header or ``<meta>``)."""
    content_type = next((v for n, v in headers if n.lower() == "content-type"), None)
    _, text = html_to_unicode(content_type, body)
    return text


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Bring the database (DATABASE_URL, default ./data/creditwatch.sqlite) to the newest schema."""
    upgrade()
    out.print(f"{database_url()} at revision {current_revision()}")


@db_app.command("status")
def db_status() -> None:
    """Which database is in use and its schema revision."""
    out.print(f"{database_url()} at revision {current_revision() or '(empty)'}")


# --- snapshots, diffs, the web app ------------------------------------------------------------


def _date(value: str | None, option: str) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise fail(f"{option} takes a date, YYYY-MM-DD (got {value!r})") from None


def _sources_and_lists(source: str, list_: list[str] | None) -> tuple[list[str], list[str]]:
    """``all`` or one source id, and the full ids of the lists asked for (all when none)."""
    try:
        sources = sorted(load_registry()) if source == "all" else [get_source(source).id]
        if not list_:
            return sources, []
        found = []
        for ref in list_:
            matches = [
                lst.id
                for src in sources
                for lst in get_source(src).lists
                if ref in (lst.id, lst.short_id)
            ]
            if len(matches) != 1:
                raise RegistryError(
                    f"list {ref!r} " + ("is ambiguous" if matches else f"is not in {source}")
                )
            found.append(matches[0])
        return sources, found
    except RegistryError as exc:
        raise fail(str(exc)) from None


@app.command()
def snapshot(
    source: Annotated[str, typer.Argument(help="A source id, or all.")] = "all",
    list_: Annotated[
        list[str] | None, typer.Option("--list", help="Only this list (repeatable).")
    ] = None,
    as_of: Annotated[
        str | None, typer.Option(help="YYYY-MM-DD (Asia/Shanghai); default: the newest.")
    ] = None,
    format: Annotated[str, typer.Option(help="parquet, csv, jsonl or ftm.")] = "parquet",
    out_dir: Annotated[Path, typer.Option("--out", help="Directory to write into.")] = Path(
        "snapshot"
    ),
    redact: Annotated[bool, typer.Option(help="Shorten persons' names, drop masked IDs.")] = False,
    bom: Annotated[bool, typer.Option(help="CSV: a UTF-8 byte-order mark, for Excel.")] = False,
    raw: Annotated[
        bool, typer.Option(help="CSV: cells verbatim, even those a spreadsheet runs as formulas.")
    ] = False,
) -> None:
    """Dated, reproducible files of every list, with manifest.json and a data dictionary."""
    sources, lists = _sources_and_lists(source, list_)
    when = _date(as_of, "--as-of")
    try:
        with connect() as conn:
            manifest = write_snapshot(
                conn, out_dir, sources=sources, lists=lists or None, as_of=when, fmt=format,
                redact=redact, bom=bom, raw=raw,
            )  # fmt: skip
    except SnapshotError as exc:
        raise fail(str(exc)) from None
    for src in manifest["sources"]:
        for lst in src["lists"]:
            run = lst["run"]
            if run is None:
                err.print(f"[yellow]warning:[/yellow] {lst['list']}: {lst['note']}; not written")
            else:
                out.print(
                    f"{lst['list']:<28} {lst['rows']:>8} rows  as of {run['run_id']} "
                    f"({run['at'][:10]}, run {run['run_state']})",
                    markup=False,
                )
    out.print(f"wrote {len(manifest['files'])} file(s) and {MANIFEST} to {out_dir}")


def _diff_table(rows: list[dict[str, Any]]) -> Table:
    table = Table("change", "list", "entity", "case / title", "status", "cause / fields")
    for row in rows:
        status = f"{row['status_from'] or '—'} → {row['status_to'] or '—'}"
        detail = row["cause"] or ""
        if row["changes"]:
            detail = "; ".join(
                f"{name}: {json.dumps(old, ensure_ascii=False)} → "
                f"{json.dumps(new, ensure_ascii=False)}"
                for name, (old, new) in row["changes"].items()
            )
        cells = (
            row["change"], row["list"], row["entity_name"] or "",
            row["case_number"] or row["title"] or "", status, detail,
        )  # fmt: skip
        table.add_row(*map(escape, cells))
    return table


@app.command()
def diff(
    source: Annotated[str, typer.Argument(help="Source id.")],
    from_: Annotated[str, typer.Option("--from", help="YYYY-MM-DD, the earlier state.")],
    to: Annotated[str, typer.Option("--to", help="YYYY-MM-DD, the later state.")],
    list_: Annotated[
        list[str] | None, typer.Option("--list", help="Only this list (repeatable).")
    ] = None,
    format: Annotated[str, typer.Option(help="table, jsonl or csv.")] = "table",
    raw: Annotated[
        bool, typer.Option(help="CSV: cells verbatim, even those a spreadsheet runs as formulas.")
    ] = False,
) -> None:
    """Entries added, removed (with the cause) and changed (field by field) between two dates."""
    if source == "all":
        raise fail("diff compares one source's lists: name the source")
    sources, lists = _sources_and_lists(source, list_)
    if format not in ("table", "jsonl", "csv"):
        raise fail("--format is table, jsonl or csv")
    start, end = _date(from_, "--from"), _date(to, "--to")
    assert start is not None and end is not None
    if start > end:
        raise fail("--from is after --to")
    wanted = lists or list(get_source(sources[0]).list_ids)
    with connect() as conn:
        rows, runs = diff_lists(conn, sources[0], wanted, start, end)
    for list_id, (before, after) in runs.items():
        err.print(
            f"{list_id}: {before.run_id if before else 'nothing vouched'} → "
            f"{after.run_id if after else 'nothing vouched'}",
            markup=False,
        )
    if format == "table":
        out.print(_diff_table(rows))
    elif format == "jsonl":
        write_jsonl(rows, sys.stdout)
    else:
        write_csv(rows, sys.stdout, DIFF_FIELDS, raw=raw)


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 8000,
    snapshots: Annotated[
        Path | None, typer.Option(help="Directory of snapshots to offer (default: DATA/snapshots).")
    ] = None,
    redact: Annotated[bool, typer.Option(help="Shorten persons' names, hide masked IDs.")] = False,
) -> None:
    """A read-only web app over the database: lists, search, entities, snapshots, JSON API."""
    from web.app import serve as run_server  # FastAPI only when serving

    upgrade()
    run_server(host=host, port=port, snapshots_dir=snapshots, redact=redact)


# --- alerts ------------------------------------------------------------------------------

Many = Annotated[list[str] | None, typer.Option()]


@watch_app.command("add")
def watch_add(
    subscription_id: Annotated[str, typer.Argument(metavar="ID")],
    channel: Annotated[
        list[str], typer.Option(help="email:…, webhook:…, feed:PATH, or an apprise URL.")
    ],
    uscc: Many = None,
    name: Annotated[list[str] | None, typer.Option(help="Exact entity name.")] = None,
    fuzzy_name: Annotated[list[str] | None, typer.Option(help="Fuzzy entity name.")] = None,
    threshold: Annotated[float, typer.Option(help="Fuzzy score to reach (0-100).")] = 90.0,
    keyword: Annotated[list[str] | None, typer.Option(help="Word(s) in reason or measure.")] = None,
    region: Annotated[list[str] | None, typer.Option(help="GB/T 2260 code prefix.")] = None,
    source: Many = None,
    list_id: Annotated[list[str] | None, typer.Option("--list", help="Full list id.")] = None,
    kind: Annotated[list[str] | None, typer.Option(help="list_kind, e.g. blacklist.")] = None,
    event: Annotated[
        list[str] | None, typer.Option(help="listed, delisted, modified, relisted.")
    ] = None,
    mode: Annotated[str, typer.Option(help="immediate, hourly or daily.")] = "immediate",
    timezone: Annotated[str, typer.Option(help="Time zone of digest windows.")] = "Asia/Shanghai",
    language: Annotated[str, typer.Option(help="zh or en.")] = "zh",
    baseline: Annotated[bool, typer.Option(help="Also alert a list's baseline.")] = False,
    health: Annotated[bool, typer.Option(help="Maintainers: also source-health alerts.")] = False,
    health_only: Annotated[
        bool, typer.Option(help="Maintainers: source-health alerts and no events.")
    ] = False,
) -> None:
    """Add (or replace) a subscription."""
    data: dict[str, Any] = {
        "id": subscription_id, "channels": channel, "uscc": uscc or [], "names": name or [],
        "fuzzy_names": fuzzy_name or [], "fuzzy_threshold": threshold, "keywords": keyword or [],
        "regions": region or [], "sources": source or [], "lists": list_id or [],
        "list_kinds": kind or [], "mode": mode, "timezone": timezone, "language": language,
        "include_baseline": baseline, "health": health or health_only,
    }  # fmt: skip
    if event or health_only:
        data["events"] = [] if health_only else event
    _save_subscriptions([_subscription(data)], origin="cli")
    out.print(f"subscription {subscription_id} saved")


def _subscription(data: dict[str, Any]) -> Subscription:
    try:
        subscription = Subscription.from_dict(data)
        for spec in subscription.channels:
            parse_channel(spec)
    except ValueError as exc:
        raise fail(str(exc)) from None
    return subscription


def _save_subscriptions(subscriptions: list[Subscription], origin: str) -> None:
    now = datetime.now(UTC)
    upgrade()
    with get_engine().begin() as conn:
        for subscription in subscriptions:
            save_subscription(conn, subscription.as_dict(), origin, now)


@watch_app.command("import")
def watch_import(path: Annotated[Path, typer.Argument(exists=True, dir_okay=False)]) -> None:
    """Add or replace the subscriptions of a YAML or TOML file (kept in git by a group)."""
    try:
        subscriptions = load_file(path)
        for subscription in subscriptions:
            for spec in subscription.channels:
                parse_channel(spec)
    except ValueError as exc:
        raise fail(str(exc)) from None
    _save_subscriptions(subscriptions, origin=str(path))
    out.print(f"{len(subscriptions)} subscription(s) saved from {path}")


@watch_app.command("list")
def watch_list() -> None:
    """The subscriptions, what each follows and where it goes."""
    table = Table("id", "follows", "scope", "mode", "lang", "channels", "origin")
    with connect() as conn:
        for row in subscription_rows(conn):
            d = row.data
            follows = (
                "; ".join(
                    f"{name}: {', '.join(map(str, d[name]))}"
                    for name in ("uscc", "names", "fuzzy_names", "keywords", "regions")
                    if d.get(name)
                )
                or "whole lists"
            )
            scope = "; ".join(
                f"{name}: {', '.join(d[name])}"
                for name in ("sources", "lists", "list_kinds", "events")
                if d.get(name)
            )
            cells = (
                row.id, follows, scope, d["mode"], d["language"], "\n".join(d["channels"]),
                row.origin or "",
            )  # fmt: skip
            table.add_row(*map(escape, cells))  # user text, not rich markup
    out.print(table)


@watch_app.command("remove")
def watch_remove(subscription_id: Annotated[str, typer.Argument(metavar="ID")]) -> None:
    """Remove a subscription (alerts already in the outbox are still delivered)."""
    upgrade()
    with get_engine().begin() as conn:
        if not delete_subscription(conn, subscription_id):
            raise fail(f"no subscription {subscription_id!r}")
    out.print(f"subscription {subscription_id} removed")


@alerts_app.command("send")
def alerts_send() -> None:
    """One pass over the outbox: bundle closed digest windows, deliver what is due. Alerts
    a channel's configuration blocks stay queued (``blocked``) until it is fixed."""
    upgrade()
    report = send_pending(get_engine())
    out.print(
        f"delivered {report['delivered']}, retry later {report['retry']}, "
        f"failed {report['failed']}, blocked {report['blocked']}, "
        f"digests bundled {report['digests']}"
    )
    for problem, status in sorted(report.problems.items(), key=lambda item: item[1]):
        kept = " (its alerts stay queued until this is fixed)" if status == "blocked" else ""
        err.print(f"[red]{status}:[/red] {escape(problem)}{kept}")
    if report["failed"] or report["blocked"]:
        raise typer.Exit(1)


@alerts_app.command("retry")
def alerts_retry(
    failed: Annotated[
        bool, typer.Option("--failed", help="Also alerts that failed for good (tries start over).")
    ] = False,
    subscription: Annotated[str | None, typer.Option(help="Only this subscription.")] = None,
) -> None:
    """Put alerts blocked by a configuration error (and, with --failed, alerts that failed
    for good) back to pending, due now: the next `alerts send` delivers them."""
    upgrade()
    statuses = ("blocked", "failed") if failed else ("blocked",)
    with get_engine().begin() as conn:
        count = requeue(conn, statuses, subscription, datetime.now(UTC))
    out.print(f"{count} alert(s) back to pending")


@alerts_app.command("test")
def alerts_test(
    channel: Annotated[str, typer.Argument(help="A channel spec, as in a subscription.")],
    language: Annotated[str, typer.Option(help="zh or en.")] = "zh",
) -> None:
    """Send a sample alert to a channel, to check it is set up."""
    try:
        receipt = parse_channel(channel).deliver(sample_message(language))
    except (ChannelError, ValueError) as exc:
        raise fail(f"{channel}: {exc}") from None
    out.print(f"sent: {receipt}", markup=False)


@alerts_app.command("log")
def alerts_log(
    subscription: Annotated[str | None, typer.Option(help="Only this subscription.")] = None,
    limit: Annotated[int, typer.Option(help="How many, newest first.")] = 50,
) -> None:
    """What went where, when, with what result."""
    table = Table(
        "id", "about", "subscription", "channel", "status", "tries", "delivered (UTC)", "result"
    )
    with connect() as conn:
        for row in alert_log(conn, subscription, limit):
            cells = (
                str(row.id), _about(row), row.subscription, row.channel, row.status,
                str(row.attempts),
                row.delivered_at.strftime("%Y-%m-%d %H:%M:%S") if row.delivered_at else "—",
                row.receipt or row.last_error or "",
            )  # fmt: skip
            table.add_row(*map(escape, cells))  # receipts quote servers, not rich markup
    out.print(table)


def _about(row: Any) -> str:
    """What an outbox row is about, from its frozen payload: the event and entity, the
    digest's size or the health problem."""
    payload = row.payload or {}
    if row.kind == "event":
        event = payload["context"]["event"]
        return f"{event['event']} {event.get('entity_name') or event['record_key']}"
    if row.kind == "digest":
        return f"digest of {len(row.event_ids or [])} event(s)"
    return f"health {payload.get('source')}: {payload.get('problem')}"


@app.command()
def feed(
    subscription: Annotated[str, typer.Argument(help="A subscription id.")],
    out_path: Annotated[Path, typer.Option("--out", help="Where to write the Atom file.")],
) -> None:
    """Write a subscription's alerts as an Atom feed (newest first)."""
    with connect() as conn:
        row = next((r for r in subscription_rows(conn) if r.id == subscription), None)
        if row is None:
            raise fail(f"no subscription {subscription!r}")
        data = feed_document(conn, Subscription.from_dict(row.data))
    out_path.write_bytes(data)
    out.print(f"wrote {out_path}")


# --- operations: run health, held delistings, the scheduler (each in its own module) ---

from pipeline import cli_health, cli_pending, cli_schedule  # noqa: E402  (use helpers above)

for _module in (cli_health, cli_pending, cli_schedule):
    _module.register(app)


def main() -> None:
    """The console entry point: ``app`` with one line instead of a traceback when the
    database cannot be written (read-only commands still work on such a database)."""
    try:
        app()
    except ReadOnlyDatabase as exc:
        err.print(f"[red]error:[/red] {escape(str(exc))}")
        sys.exit(1)
    except OperationalError as exc:
        reason = read_only_reason()
        if reason is None or "readonly" not in str(exc).replace("-", "").lower():
            raise
        err.print(f"[red]error:[/red] {escape(reason)}; this command writes to it")
        sys.exit(1)


if __name__ == "__main__":
    main()
