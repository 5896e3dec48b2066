"""`creditwatch doctor`: what is wrong with this installation, and the command that fixes it.

Each check returns findings (ok, warn or fail) and never raises for the state it inspects: a
damaged database, a broken registry or a missing browser is a finding, not a traceback, so
one run names every problem at once. Checks that need the database are skipped (with a
finding saying why) when it cannot be opened.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
from collections.abc import Callable, Iterable
from contextlib import closing
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from apscheduler.triggers.cron import CronTrigger
from sqlalchemy import inspect

from alerts.channels import parse_channel
from alerts.subscriptions import Subscription
from core.registry import RegistryError, SourceDef, broken_sources, load_registry
from crawlers.browser import chromium_executable, launch_options
from storage.engine import (
    DATA_DIR_ENV,
    VERSION_TABLE,
    current_revision,
    database_url,
    explain,
    get_engine,
    head_revision,
    schema_problem,
    shown_url,
    sqlite_path,
)
from storage.outbox import subscription_rows
from storage.runs import last_live_start
from storage.source_state import source_state

OK, WARN, FAIL = "ok", "warn", "fail"
# Free space on the database's disk below which a crawl may fail half-way (fail) or soon
# will (warn): a run of a big list stages and archives hundreds of MiB.
FREE_FAIL_BYTES = 100 * 2**20
FREE_WARN_BYTES = 1024 * 2**20


@dataclass(frozen=True)
class Finding:
    """One thing checked: ``status`` ok/warn/fail, ``problem`` what is wrong (or what was
    found, when ok) and ``fix`` the command or step that puts it right."""

    check: str
    status: str
    problem: str
    fix: str = ""
    subject: str = ""

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def check_data_dir(url: str) -> list[Finding]:
    """The SQLite database's directory exists, is a directory and can be written."""
    path = sqlite_path(url)
    if path is None:
        return [Finding("data dir", OK, "not used: the database is a server (DATABASE_URL)")]
    folder = path.parent
    fix_other = f"pass --data-dir DIR (or set {DATA_DIR_ENV}) to the right directory"
    if folder.exists() and not folder.is_dir():
        return [Finding("data dir", FAIL, f"{folder} is not a directory", fix_other)]
    if not folder.exists():
        return [
            Finding(
                "data dir",
                WARN,
                f"{folder} does not exist: nothing was crawled into it yet",
                f"creditwatch crawl SOURCE creates it; or {fix_other}",
            )
        ]
    if not os.access(folder, os.W_OK | os.X_OK):
        return [
            Finding(
                "data dir",
                FAIL,
                f"{folder} is not writable: crawls and subscriptions cannot be saved",
                f"chmod u+w {folder} (or run as its owner); reading commands still work",
            )
        ]
    if path.exists() and not os.access(path, os.W_OK):
        return [Finding("data dir", FAIL, f"{path} is read-only", f"chmod u+w {path}")]
    return [Finding("data dir", OK, f"{folder} exists and is writable")]


def check_disk_space(
    url: str, fail_below: int = FREE_FAIL_BYTES, warn_below: int = FREE_WARN_BYTES
) -> list[Finding]:
    """Free space where the SQLite database grows."""
    path = sqlite_path(url)
    if path is None:
        return []
    existing = next((p for p in (path.parent, *path.parents) if p.is_dir()), None)
    if existing is None:
        return []
    free = shutil.disk_usage(existing).free
    shown = f"{free / 2**20:,.0f} MiB free on the disk of {existing}"
    fix = f"free space there, or move the data dir to a bigger disk (--data-dir, {DATA_DIR_ENV})"
    if free < fail_below:
        return [Finding("disk space", FAIL, f"only {shown}: a crawl may fail half-way", fix)]
    if free < warn_below:
        return [Finding("disk space", WARN, f"only {shown}", fix)]
    return [Finding("disk space", OK, shown)]


def check_database(url: str) -> tuple[list[Finding], bool]:
    """Reachable, creditwatch's, migrations at head, and (SQLite) intact. Also whether the
    database can be read for the checks after it."""
    path = sqlite_path(url)
    where = shown_url(url)
    if path is not None and not path.exists():
        missing = f"no database at {where} yet"
        return [
            Finding(
                "database", WARN, missing, "creditwatch crawl SOURCE (or creditwatch db upgrade)"
            )
        ], False
    if path is not None:
        integrity = _quick_check(path)
        if integrity is not None:
            return [
                Finding(
                    "database",
                    FAIL,
                    f"{where} is damaged: {integrity}",
                    f"restore {path.name} from a backup, or move it aside to start a new one",
                )
            ], False
    try:
        problem = schema_problem(url)
        current = current_revision(url)
        with get_engine(url).connect() as conn:
            tables = set(inspect(conn).get_table_names())
    except Exception as exc:  # whatever stops the connection is the finding
        reason = explain(exc, url) or _first_line(exc)
        return [Finding("database", FAIL, reason, "check DATABASE_URL / --data-dir")], False
    if problem is not None:
        return [Finding("database", FAIL, problem, "as the problem says")], False
    head = head_revision()
    findings = []
    if path is not None:
        findings.append(Finding("database", OK, f"{where}: integrity ok (PRAGMA quick_check)"))
    else:
        findings.append(Finding("database", OK, f"{where} answers"))
    if VERSION_TABLE not in tables:
        findings.append(Finding("migrations", WARN, f"{where} is empty", "creditwatch db upgrade"))
        return findings, False
    if current != head:
        findings.append(
            Finding(
                "migrations",
                WARN,
                f"schema at revision {current}, this creditwatch's is {head}: migrations pending",
                "creditwatch db upgrade",
            )
        )
        return findings, False
    findings.append(Finding("migrations", OK, f"schema at the newest revision ({head})"))
    return findings, True


def _quick_check(path: Path) -> str | None:
    """What ``PRAGMA quick_check`` (or opening the file) reports, None when all is well.
    Opened read-only, so a damaged file is never written to."""
    try:
        location = f"file:{path.resolve()}?mode=ro"
        with closing(sqlite3.connect(location, uri=True)) as conn:
            rows = [row[0] for row in conn.execute("PRAGMA quick_check").fetchall()]
    except sqlite3.Error as exc:
        return _first_line(exc)
    return None if rows == ["ok"] else "; ".join(rows[:3])


def check_browser(launch: bool = True) -> list[Finding]:
    """A Chromium the browser sources (Credit China, creditsearch portals) can launch."""
    fix = "apt-get install -y chromium (or set CREDITWATCH_CHROMIUM to a Chromium binary)"
    executable = chromium_executable()
    if executable is not None and not os.path.exists(executable):
        return [Finding("browser", WARN, f"{executable} does not exist", fix)]
    if not launch:
        found = executable or "Playwright's own Chromium"
        return [Finding("browser", OK, f"{found} (not launched)")]
    try:
        from playwright.sync_api import sync_playwright

        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(**launch_options(timeout_ms=20_000))
            version = browser.version
            browser.close()
    except Exception as exc:  # any reason it does not start is the finding
        return [Finding("browser", WARN, f"Chromium does not launch: {_first_line(exc)}", fix)]
    return [Finding("browser", OK, f"Chromium {version} launches ({executable or 'Playwright'})")]


def check_registry() -> tuple[list[Finding], list[SourceDef]]:
    """Every declaration loads; the sources that do, for the checks of their runs."""
    try:
        sources = list(load_registry().values())
    except RegistryError as exc:
        return [Finding("registry", FAIL, _first_line(exc), "fix the sources directory")], []
    findings = [
        Finding(
            "registry",
            FAIL,
            str(broken),
            "fix the declaration, then `creditwatch sources` shows it loaded",
            broken.source_id,
        )
        for broken in broken_sources()
    ]
    if not findings:
        findings.append(Finding("registry", OK, f"{len(sources)} sources load"))
    return findings, sources


def check_subscriptions(conn: Any) -> list[Finding]:
    """Every stored subscription still reads and names channels that parse."""
    findings = []
    rows = subscription_rows(conn)
    for row in rows:
        try:
            subscription = Subscription.from_dict({**row.data, "id": row.id})
            for spec in subscription.channels:
                parse_channel(spec)
        except (ValueError, TypeError) as exc:
            findings.append(
                Finding(
                    "subscriptions",
                    FAIL,
                    _first_line(exc),
                    f"creditwatch watch remove {row.id}, then add or import it again",
                    row.id,
                )
            )
    if not findings:
        findings.append(Finding("subscriptions", OK, f"{len(rows)} subscription(s) load"))
    return findings


def stale_since(source: SourceDef, last_started: datetime, now: datetime) -> datetime | None:
    """When a run was due and none came: the second scheduled time after the newest run
    (plus the source's jitter), if it has passed, else None. One missed time is allowed: a
    slow crawl or the jitter may hold a run back."""
    trigger = CronTrigger.from_crontab(source.cron, timezone=source.timezone)
    due = trigger.get_next_fire_time(None, last_started + _SECOND)
    missed = trigger.get_next_fire_time(due, due + _SECOND) if due is not None else None
    if missed is None:
        return None
    missed += timedelta(seconds=source.jitter)
    return missed if missed < now else None


_SECOND = timedelta(seconds=1)


def check_sources(conn: Any, sources: Iterable[SourceDef], now: datetime) -> list[Finding]:
    """Each source's last run: never run, failing (K unhealthy runs), the last one
    unhealthy, or stale (its schedule wanted a run that never came)."""
    findings = []
    for source in sources:
        state = source_state(conn, source.id, source.failing_after)
        look = f"creditwatch health {source.id}"
        if state.state == "never_run":
            findings.append(
                Finding(
                    "source",
                    WARN,
                    "never run",
                    f"creditwatch crawl {source.id} (or creditwatch schedule)",
                    source.id,
                )
            )
            continue
        newest = state.last_runs[0]
        if state.state == "failing":
            findings.append(
                Finding(
                    "source",
                    FAIL,
                    f"failing: {state.unhealthy_streak} unhealthy runs in a row "
                    f"(failing after {state.failing_after}); the last, {newest.run_id}, "
                    f"{newest.state}",
                    look,
                    source.id,
                )
            )
            continue
        if not newest.healthy:
            findings.append(
                Finding("source", WARN, f"last run {newest.run_id} {newest.state}", look, source.id)
            )
            continue
        started = last_live_start(conn, source.id)
        if started is None:
            findings.append(
                Finding(
                    "source",
                    OK,
                    f"last run {newest.run_id} healthy (replayed: its schedule is judged "
                    "from live runs)",
                    "",
                    source.id,
                )
            )
            continue
        missed = stale_since(source, started, now)
        if missed is not None:
            findings.append(
                Finding(
                    "source",
                    WARN,
                    f"stale: last live run started {started:%Y-%m-%d %H:%M} UTC; "
                    f"its schedule ({source.cron}) wanted one by "
                    f"{missed.astimezone(UTC):%Y-%m-%d %H:%M} UTC",
                    f"creditwatch crawl {source.id}; is `creditwatch schedule` running?",
                    source.id,
                )
            )
            continue
        findings.append(Finding("source", OK, f"last run {newest.run_id} healthy", "", source.id))
    return findings


def diagnose(
    url: str | None = None,
    *,
    now: datetime | None = None,
    launch_browser: bool = True,
    free_space: Callable[[str], list[Finding]] = check_disk_space,
) -> list[Finding]:
    """Every check, in the order a person would fix things."""
    url = url or database_url()
    now = now or datetime.now(UTC)
    findings = check_data_dir(url)
    findings += free_space(url)
    database, readable = check_database(url)
    findings += database
    findings += check_browser(launch=launch_browser)
    registry, sources = check_registry()
    findings += registry
    if not readable:
        skipped = "not checked: the database cannot be read (see above)"
        findings.append(Finding("subscriptions", WARN, skipped))
        findings.append(Finding("source", WARN, skipped))
        return findings
    with get_engine(url).connect() as conn:
        findings += check_subscriptions(conn)
        findings += check_sources(conn, sources, now)
    return findings


def failed(findings: Iterable[Finding]) -> bool:
    return any(finding.status == FAIL for finding in findings)
