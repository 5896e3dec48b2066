"""What every command module shares: the consoles, the error exit, the database connection
and date options, the ``--json`` option and its printer, listing tables that never cut a
cell short, the check of a ``--source`` and the hint on an empty database. Command modules
import this; it imports none of them."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Mapping
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from sqlalchemy.engine import make_url
from typer import rich_utils

# Typer raises its own copy of Click's exceptions (typer._click), not click's.
from typer._click.exceptions import ClickException, NoArgsIsHelpError, UsageError

from core import catalogue
from core.clock import SHANGHAI
from core.health import faults, is_partial, shown_health
from core.registry import RegistryError, get_source
from storage.engine import database_url, explain, get_engine, sqlite_path, upgrade
from storage.runs import has_runs, run_lists, run_summary

# Piped output (CI logs, files) gets a wide fixed width instead of rich's 80 columns.
out = Console(width=None if sys.stdout.isatty() else 200, soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

# Where ./scripts/demo.sh builds its database, relative to the repository root.
DEMO_DATA_DIR = Path("data/demo")

JsonFlag = Annotated[
    bool,
    typer.Option(
        "--json", help="JSON Lines for machines: one object a row, ISO times, UTF-8 text."
    ),
]


def fail(message: str, code: int = 2) -> typer.Exit:
    err.print(f"[red]error:[/red] {message}")
    return typer.Exit(code)


def run(app: typer.Typer) -> None:
    """Run ``app`` as the console entry point: a usage mistake, or a database that cannot be
    used (read-only, damaged, another program's, not answering, its disk full), is said in
    one line on stderr with exit status 2 or 1; only a bug shows a traceback."""
    try:
        code = app(standalone_mode=False)
    except NoArgsIsHelpError as exc:  # a group named alone: its help, as Typer shows it
        rich_utils.rich_format_error(exc)
        sys.exit(exc.exit_code)
    except UsageError as exc:
        command = exc.ctx.command_path if exc.ctx is not None else "creditwatch"
        err.print(f"[red]error:[/red] {escape(exc.format_message())} (see {command} --help)")
        sys.exit(exc.exit_code)
    except ClickException as exc:
        err.print(f"[red]error:[/red] {escape(exc.format_message())}")
        sys.exit(exc.exit_code)
    except typer.Abort:
        err.print("aborted")
        sys.exit(130)
    except Exception as exc:
        message = explain(exc)
        if message is None:
            raise
        err.print(f"[red]error:[/red] {escape(message)}", highlight=False)
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)


def connect(*, reading: bool = False) -> Any:
    """A connection to the database, brought to the newest schema. ``reading``: the command
    shows stored data, so a database without any run gets a hint on stderr (the usual cause
    is the wrong data directory: the demo's is data/demo)."""
    upgrade()
    conn = get_engine().connect()
    if reading:
        hint_if_empty(conn)
    return conn


def hint_if_empty(conn: Any) -> None:
    """One line on stderr when the database has no run at all (see ``empty_hint``)."""
    if not has_runs(conn):
        err.print(empty_hint(), markup=False, highlight=False)


def where() -> str:
    """The database in use, as a person would name it: a SQLite file's path, else the URL
    without its password."""
    url = database_url()
    path = sqlite_path(url)
    if path is not None:
        return str(path)
    return make_url(url).render_as_string(hide_password=True)


def empty_hint() -> str:
    hint = f"no runs in {where()}; "
    demo = DEMO_DATA_DIR / "creditwatch.sqlite"
    if demo.is_file() and sqlite_path(database_url()) != demo.resolve():
        return hint + f"the demo's database is in {DEMO_DATA_DIR}: pass --data-dir {DEMO_DATA_DIR}"
    return hint + (
        "run ./scripts/demo.sh for a demo database (data/demo), or pass --data-dir DIR "
        "(or set CREDITWATCH_DATA_DIR) for another one"
    )


def parse_date(value: str | None, option: str) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise fail(f"{option} takes a date, YYYY-MM-DD (got {value!r})") from None


def known_source(source: str | None, conn: Any = None) -> str | None:
    """``source`` when it names a declared source (or, given ``conn``, one the database has
    runs of: a source since removed from the registry); else the usage error that names the
    known ones, exit status 2. None passes (no filter)."""
    if source is None:
        return None
    try:
        return get_source(source).id
    except RegistryError as exc:
        if conn is not None and has_runs(conn, source):
            return source
        raise fail(escape(str(exc))) from None


def listing(*headers: str, **options: Any) -> Table:
    """A table whose cells fold onto more lines instead of ending in "…": full names, case
    numbers and ids survive a narrow terminal (CJK text has no spaces to wrap at)."""
    table = Table(**options)
    for header in headers:
        table.add_column(header, overflow="fold")
    return table


def _plain(value: Any) -> Any:
    """What ``json`` cannot write itself: times and dates in ISO 8601, paths and decimals as
    text, sets as sorted lists."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Path | Decimal):
        return str(value)
    if isinstance(value, set | frozenset | tuple):
        return sorted(value) if isinstance(value, set | frozenset) else list(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def json_text(value: Any, indent: int | None = None) -> str:
    return json.dumps(value, ensure_ascii=False, default=_plain, indent=indent)


def print_json_lines(rows: Iterable[Mapping[str, Any]]) -> int:
    """``--json``: each row as one line of JSON on stdout (never through rich, which would
    wrap or colour it); returns how many."""
    count = 0
    for row in rows:
        sys.stdout.write(json_text(row) + "\n")
        count += 1
    sys.stdout.flush()
    return count


def print_json(document: Any) -> None:
    """One JSON document on stdout, indented (``health --json``)."""
    sys.stdout.write(json_text(document, indent=2) + "\n")
    sys.stdout.flush()


def health_label(health: str, partial: bool = False) -> str:
    """A run's or list's health as the CLI shows it: ``healthy (partial)`` for a healthy one
    read in part by design (its words from the catalogue), else the state itself."""
    shown = shown_health(health, partial)
    return health if shown == health else catalogue.word("health", shown, "en") or shown


def _problems(findings: list[dict[str, Any]] | None) -> list[str]:
    """What made a list unhealthy, in short: outcome names and broken checks, once each (a
    note, like the ``partial`` one, made it nothing)."""
    labels: list[str] = []
    for finding in faults(findings):
        label = finding.get("outcome") or finding.get("check") or "?"
        if finding.get("field"):
            label = f"{label}:{finding['field']}"
        if label not in labels:
            labels.append(label)
    return labels


def run_report(conn: Any, run: Any) -> dict[str, Any]:
    """One run as ``runs --json`` and ``health --json`` show it."""
    summary = run_summary(run)
    return {
        "run_id": run.run_id,
        "source": run.source,
        "seq": run.seq,
        "mode": run.mode,
        "state": run.state,
        # Healthy with lists read in part by design: shown ``healthy (partial)``.
        "partial": run.state == "healthy" and bool(summary.partial),
        "started_at": run.started_at.isoformat() if run.started_at else None,
        "started_at_shanghai": (
            run.started_at.astimezone(SHANGHAI).isoformat() if run.started_at else None
        ),
        "ended_at": run.ended_at.isoformat() if run.ended_at else None,
        "clock_origin": run.clock_origin,
        "cassette": run.cassette,
        "error": run.error,
        "pages": run.pages,
        "records": run.records,
        "lists": [
            {
                "list": row.list,
                "health": row.health,
                "partial": row.health == "healthy" and is_partial(row.findings),
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
