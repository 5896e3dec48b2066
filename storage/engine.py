"""Where the data lives and how to connect: SQLite in a data directory by default,
``DATABASE_URL`` for anything else (PostgreSQL is tested too)."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
from functools import cache
from pathlib import Path
from typing import Any

import orjson
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, create_engine, event

DEFAULT_DATA_DIR = "data"


def data_dir() -> Path:
    """The directory holding the embedded database (``CREDITWATCH_DATA_DIR``, default ./data)."""
    return Path(os.environ.get("CREDITWATCH_DATA_DIR", DEFAULT_DATA_DIR))


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
    # Keep Chinese readable in the database (and in Datasette) instead of \\u escapes.
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def _sha256_hex(text: str | None) -> str | None:
    return None if text is None else hashlib.sha256(text.encode("utf-8")).hexdigest()


def _prepare_sqlite(dbapi_conn: sqlite3.Connection, _record: Any) -> None:
    dbapi_conn.create_function("cw_sha256", 1, _sha256_hex, deterministic=True)
    cursor = dbapi_conn.cursor()
    # WAL lets `creditwatch` read progress while a crawl process writes.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def get_engine(url: str | None = None) -> Engine:
    """The engine for ``url`` (default: ``database_url()`` as configured now), one per process."""
    return _engine_for(url or database_url())


@cache
def _engine_for(url: str) -> Engine:
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(
        url, json_serializer=_json_dumps, json_deserializer=orjson.loads, pool_pre_ping=True
    )
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
    """Bring the database at ``url`` to the newest schema (Alembic ``upgrade head``)."""
    command.upgrade(alembic_config(url), "head")


def current_revision(url: str | None = None) -> str | None:
    with get_engine(url).connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()
