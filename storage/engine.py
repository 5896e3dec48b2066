"""Where the data lives and how to connect: SQLite in a data directory by default,
``DATABASE_URL`` for anything else (PostgreSQL is tested too)."""

from __future__ import annotations

import contextlib
import hashlib
import os
import sqlite3
import threading
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import quote

import orjson
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy import Engine, create_engine, event, inspect
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, OperationalError

DEFAULT_DATA_DIR = "data"
DATA_DIR_ENV = "CREDITWATCH_DATA_DIR"  # `creditwatch --data-dir DIR` sets it
# Alembic's command API keeps module-global state (its `context` proxy): two upgrades at once
# in one process (crawls starting together in a daemon's or a worker's threads) break it.
_UPGRADING = threading.Lock()


def data_dir() -> Path:
    """The directory holding the embedded database (``CREDITWATCH_DATA_DIR``, default ./data)."""
    return Path(os.environ.get(DATA_DIR_ENV, DEFAULT_DATA_DIR))


def database_url() -> str:
    url = os.environ.get("DATABASE_URL")
    if url:
        # Plain postgresql:// URLs would pick psycopg2, which is not installed.
        return (
            url.replace("postgresql://", "postgresql+psycopg://", 1)
            if url.startswith("postgresql://")
            else url
        )
    return f"sqlite:///{(data_dir() / 'creditwatch.sqlite').resolve()}"


def _json_dumps(value: Any) -> str:
    """JSON as stored: keys sorted, Chinese readable in the database (and in Datasette)
    instead of \\u escapes. orjson: staging ten million records spends most of its Python
    time here, and the standard library's encoder is several times slower."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


def _sha256_hex(text: str | None) -> str | None:
    return None if text is None else hashlib.sha256(text.encode("utf-8")).hexdigest()


class ReadOnlyDatabase(RuntimeError):
    """The command has to write, and the database (or its directory) is read-only."""


class DatabaseProblem(RuntimeError):
    """The database cannot be used as it is (damaged, another program's, from a newer
    creditwatch, not answering, its disk full): the message is one line naming the fix, so
    the command line can say it instead of a traceback."""


VERSION_TABLE = "alembic_version"


def _prepare_sqlite(dbapi_conn: sqlite3.Connection, _record: Any) -> None:
    dbapi_conn.create_function("cw_sha256", 1, _sha256_hex, deterministic=True)
    cursor = dbapi_conn.cursor()
    # WAL lets `creditwatch` read progress while a crawl process writes.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    # 64 MiB of page cache (the default is 2 MiB): a run over a list of millions walks indexes
    # far bigger than that, and spilling a transaction's pages early grows the write-ahead log.
    cursor.execute("PRAGMA cache_size=-65536")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _prepare_read_only_sqlite(dbapi_conn: sqlite3.Connection, _record: Any) -> None:
    dbapi_conn.create_function("cw_sha256", 1, _sha256_hex, deterministic=True)
    dbapi_conn.execute("PRAGMA busy_timeout=30000")


def _opens_read_only(location: str) -> bool:
    """Whether SQLite can read the database with its usual locking. It cannot when the
    write-ahead log's shared-memory file is missing and its directory is not writable: then
    no writer is at work (it would have made that file), and the database is opened as
    immutable, which reads it without locks (a process that outlives the next crawl must be
    restarted to see it)."""
    try:
        with contextlib.closing(sqlite3.connect(f"{location}?mode=ro", uri=True)) as conn:
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.Error:
        return False
    return True


def sqlite_path(url: str) -> Path | None:
    """The file of a SQLite URL, None for other databases."""
    return Path(url.removeprefix("sqlite:///")) if url.startswith("sqlite:///") else None


def read_only_reason(url: str | None = None) -> str | None:
    """Why the database at ``url`` cannot be written (None when it can, or is not SQLite).

    A SQLite database needs its directory writable as well as its file: it keeps its
    write-ahead log and lock files next to it.
    """
    path = sqlite_path(url or database_url())
    if path is None or not path.exists():
        return None
    if not os.access(path, os.W_OK):
        return f"the database {path} is read-only"
    if not os.access(path.parent, os.W_OK):
        return f"the directory {path.parent} of the database is read-only"
    return None


def require_writable(url: str | None = None) -> None:
    """Raise ``ReadOnlyDatabase`` (one line, saying what to fix) before a write is tried."""
    reason = read_only_reason(url)
    if reason is not None:
        raise ReadOnlyDatabase(f"{reason}; this command writes to it (read-only commands work)")


def get_engine(url: str | None = None) -> Engine:
    """The engine for ``url`` (default: ``database_url()`` as configured now), one per process."""
    return _engine_for(url or database_url())


@cache
def _engine_for(url: str) -> Engine:
    path = sqlite_path(url)
    options: dict[str, Any] = {
        "json_serializer": _json_dumps,
        "json_deserializer": orjson.loads,
        "pool_pre_ping": True,
    }
    if path is not None and read_only_reason(url) is not None:
        # Serving and exporting a database someone else writes, or one on a read-only
        # medium, are normal uses: open it read-only.
        location = f"file:{quote(str(path.resolve()))}"
        flags = "mode=ro" if _opens_read_only(location) else "mode=ro&immutable=1"
        engine = create_engine(f"sqlite:///{location}?{flags}&uri=true", **options)
        event.listen(engine, "connect", _prepare_read_only_sqlite)
        return engine
    if path is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            raise DatabaseProblem(
                f"the data directory {path.parent} is not a directory (or lies inside a "
                f"file): pass --data-dir (or set {DATA_DIR_ENV}) to a directory"
            ) from None
        except PermissionError:
            raise DatabaseProblem(
                f"the data directory {path.parent} does not exist and cannot be made "
                "(permission denied): create it, or pass --data-dir to one you can write"
            ) from None
    engine = create_engine(url, **options)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _prepare_sqlite)
    return engine


def alembic_config(url: str | None = None) -> Config:
    """Alembic's configuration for the database at ``url``, without an alembic.ini."""
    cfg = Config()
    cfg.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    cfg.attributes["engine"] = get_engine(url)
    return cfg


def upgrade(url: str | None = None) -> None:
    """Bring the database at ``url`` to the newest schema (Alembic ``upgrade head``). A
    read-only database already at the newest schema is left as it is."""
    check_schema(url)
    reason = read_only_reason(url)
    if reason is not None:
        current, head = current_revision(url), head_revision()
        if current != head:
            raise ReadOnlyDatabase(
                f"{reason} and its schema ({current}) is older than this "
                f"version's ({head}): run `creditwatch db upgrade` where it is writable"
            )
        return
    with _UPGRADING:
        command.upgrade(alembic_config(url), "head")


def _scripts() -> ScriptDirectory:
    cfg = Config()
    cfg.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    return ScriptDirectory.from_config(cfg)


def head_revision() -> str | None:
    return _scripts().get_current_head()


def known_revisions() -> set[str]:
    """Every schema revision this version of creditwatch can migrate from."""
    return {script.revision for script in _scripts().walk_revisions()}


def shown_url(url: str | None = None) -> str:
    """The database as a message names it: a SQLite file's path, else the URL without its
    password."""
    url = url or database_url()
    path = sqlite_path(url)
    return str(path) if path is not None else make_url(url).render_as_string(hide_password=True)


def schema_problem(url: str | None = None) -> str | None:
    """Why the database at ``url`` is not one creditwatch may migrate and use, or None (an
    empty one is fine: it becomes one). Checked before any migration, so that another
    program's database or a newer creditwatch's is left exactly as it was."""
    with get_engine(url).connect() as conn:
        tables = set(inspect(conn).get_table_names())
        if not tables:
            return None
        if VERSION_TABLE not in tables:
            shown = ", ".join(sorted(tables)[:4]) + (", …" if len(tables) > 4 else "")
            return (
                f"{shown_url(url)} is not a creditwatch database (tables {shown}, no schema "
                "revision): point --data-dir or DATABASE_URL at creditwatch's database"
            )
        current = MigrationContext.configure(conn).get_current_revision()
    if current is not None and current not in known_revisions():
        return (
            f"{shown_url(url)} has schema revision {current!r}, which this creditwatch does "
            f"not know (its newest is {head_revision()!r}): it was made by a newer "
            "creditwatch; upgrade creditwatch, or restore a backup"
        )
    return None


def check_schema(url: str | None = None) -> None:
    """Raise ``DatabaseProblem`` when ``schema_problem`` finds one."""
    problem = schema_problem(url)
    if problem is not None:
        raise DatabaseProblem(problem)


def explain(exc: BaseException, url: str | None = None) -> str | None:
    """One line saying what is wrong with the database and what to do, for an error a
    command met using it; None for an error that is not about the database (a bug: its
    traceback is wanted)."""
    if isinstance(exc, ReadOnlyDatabase | DatabaseProblem):
        return str(exc)
    if isinstance(exc, CommandError) and "Can't locate revision" in str(exc):
        return f"{shown_url(url)}: {exc}: it was made by a newer creditwatch; upgrade creditwatch"
    path = sqlite_path(url or database_url())
    if (
        isinstance(exc, PermissionError)
        and path is not None
        and exc.filename is not None
        and Path(exc.filename).resolve() in (path, path.parent)
    ):
        return (
            f"permission denied on {exc.filename}: this user cannot reach the database; "
            "run as its owner, or fix the permissions of its directory"
        )
    if not isinstance(exc, DBAPIError):
        return None
    detail = str(exc.orig).strip().splitlines()[0] if str(exc.orig).strip() else repr(exc.orig)
    lowered = detail.lower()
    where = shown_url(url)
    if "readonly" in lowered.replace("-", "").replace(" ", ""):
        reason = read_only_reason(url)
        return f"{reason or f'the database {where} is read-only'}; this command writes to it"
    if "disk is full" in lowered or "no space left" in lowered:
        return (
            f"the disk holding {where} is full ({detail}); the change was not written: "
            "free some space and run the command again"
        )
    if "not a database" in lowered or "malformed" in lowered or "disk i/o error" in lowered:
        return (
            f"the database {where} is damaged ({detail}): restore it from a backup, or "
            "move it aside to start a new one; `creditwatch doctor` checks it"
        )
    if "unable to open database file" in lowered:
        return f"cannot open the database {where} ({detail}): check its directory exists"
    if isinstance(exc, OperationalError) and "connect" in lowered:
        return f"cannot connect to the database {where}: {detail}"
    return None


def current_revision(url: str | None = None) -> str | None:
    with get_engine(url).connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()
