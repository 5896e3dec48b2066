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
from sqlalchemy import Engine, create_engine, event

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
        path.parent.mkdir(parents=True, exist_ok=True)
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


def head_revision() -> str | None:
    cfg = Config()
    cfg.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    return ScriptDirectory.from_config(cfg).get_current_head()


def current_revision(url: str | None = None) -> str | None:
    with get_engine(url).connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()
