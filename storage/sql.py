"""Small SQL constructs that differ between SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Join, String, Table
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


def upsert_adding(
    conn: Connection, table: Table, rows: list[dict[str, Any]], add: list[str]
) -> None:
    """Insert rows; where the key exists, add the ``add`` columns to the stored ones (counts
    that several batches, or processes, contribute to)."""
    if not rows:
        return
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    statement = dialect.insert(table)
    keys = [column.name for column in table.primary_key.columns]
    conn.execute(
        statement.on_conflict_do_update(
            index_elements=keys,
            set_={name: table.c[name] + statement.excluded[name] for name in add},
        ),
        rows,
    )


class json_object(FunctionElement[Any]):
    """A JSON object built in SQL from alternating keys and values."""

    inherit_cache = True


@compiles(json_object, "sqlite")
def _json_object_sqlite(element: json_object, compiler: Any, **kw: Any) -> str:
    return f"json_object({compiler.process(element.clauses, **kw)})"


@compiles(json_object, "postgresql")
def _json_object_postgresql(element: json_object, compiler: Any, **kw: Any) -> str:
    return f"jsonb_build_object({compiler.process(element.clauses, **kw)})"


class driving_join(Join):
    """An inner join whose left side drives the loop. SQLite plans a scratch table of a few
    thousand rows joined to a staging of millions by guessing (the staging has no statistics)
    and walked the staging; ``CROSS JOIN … ON`` is SQLite's way to fix the order. Other
    databases get a plain ``JOIN``."""

    inherit_cache = True

    def __init__(self, left: Any, right: Any, onclause: Any) -> None:
        super().__init__(left, right, onclause)


@compiles(driving_join, "sqlite")
def _driving_join_sqlite(element: driving_join, compiler: Any, **kw: Any) -> str:
    kw["asfrom"] = True
    left = compiler.process(element.left, **kw)
    right = compiler.process(element.right, **kw)
    return f"{left} CROSS JOIN {right} ON {compiler.process(element.onclause, **kw)}"


# The first key of every creditwatch advisory lock ("cwlk"); the second names the lock and the
# schema (``advisory_key``).
LOCK_SPACE = 0x63776C6B


def advisory_key(name: str) -> tuple[str, dict[str, Any]]:
    """The SQL arguments of the two-key advisory lock ``name`` in the current schema."""
    return (
        "CAST(:lock_space AS integer), hashtext(:lock_name || '@' || current_schema())",
        {"lock_space": LOCK_SPACE, "lock_name": name},
    )
