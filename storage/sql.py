"""Small SQL constructs that differ between SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

from sqlalchemy import String, Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement


class sha256_hex(FunctionElement[str]):
    """Hex sha256 of a text expression, computed in the database (for stable event ids)."""

    type = String()
    inherit_cache = True


@compiles(sha256_hex, "sqlite")
def _sha256_sqlite(element: sha256_hex, compiler: Any, **kw: Any) -> str:
    return f"cw_sha256({compiler.process(element.clauses, **kw)})"


@compiles(sha256_hex, "postgresql")
def _sha256_postgresql(element: sha256_hex, compiler: Any, **kw: Any) -> str:
    return f"encode(sha256(convert_to({compiler.process(element.clauses, **kw)}, 'UTF8')), 'hex')"


def insert_ignore(conn: Connection, table: Table, rows: list[dict[str, Any]]) -> None:
    """Insert rows, skipping those whose key already exists (content-addressed and staged data)."""
    if not rows:
        return
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    conn.execute(dialect.insert(table).on_conflict_do_nothing(), rows)


class json_object(FunctionElement[Any]):
    """A JSON object built in SQL from alternating keys and values."""

    inherit_cache = True


@compiles(json_object, "sqlite")
def _json_object_sqlite(element: json_object, compiler: Any, **kw: Any) -> str:
    return f"json_object({compiler.process(element.clauses, **kw)})"


@compiles(json_object, "postgresql")
def _json_object_postgresql(element: json_object, compiler: Any, **kw: Any) -> str:
    return f"jsonb_build_object({compiler.process(element.clauses, **kw)})"
