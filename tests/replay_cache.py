"""Replayed databases built once per session, then copied into each test's fresh database.

Many tests start the same way: replay day 1 (and maybe day 2) of a shipped cassette into an
empty database, then damage, read or replay on top of it. A replay is a Scrapy crawl in a
child process (seconds each), so ``replayed(url, Replay(DAY1, delist_after=1), ...)`` replays
each distinct sequence of cassettes once per session and backend into a template, and copies
the template into the test's database:

* SQLite: the template file is copied with SQLite's backup API (WAL included).
* PostgreSQL: the test's empty schema is migrated to head, then every table's rows and every
  sequence's position are copied from the template schema in the same database.

The copy is the template's data row for row, run ids and all, so a test reads (and replays on
top of) exactly what replaying would have left. Only use it where the replays are set-up, not
the subject: a test about the crawl itself should still crawl.
"""

from __future__ import annotations

import hashlib
import sqlite3
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from sqlalchemy import create_engine, text

from storage.engine import get_engine, sqlite_path, upgrade
from tests.helpers import replay


@dataclass(frozen=True)
class Replay:
    """One replay of a cassette, as ``tests.helpers.replay`` runs it."""

    cassette: Path
    source: str = "xmtravel"
    delist_after: int = 2

    def key(self) -> tuple[str, str, int]:
        digest = hashlib.sha256(self.cassette.read_bytes()).hexdigest()
        return (digest, self.source, self.delist_after)


Replayed = Callable[..., list[str]]


def _schema(url: str) -> str:
    """The schema a test's PostgreSQL URL points at (``options=-csearch_path=...``)."""
    (options,) = parse_qs(urlsplit(url).query)["options"]
    assert options.startswith("-csearch_path="), url
    return options.removeprefix("-csearch_path=")


class ReplayCache:
    """Templates by (backend, replays); built on first use, dropped at the end of the session."""

    def __init__(self, root: Path, pg_admin_url: str) -> None:
        self.root = root
        self.pg_admin_url = pg_admin_url
        self.templates: dict[tuple[object, ...], tuple[str, list[str]]] = {}
        self.pg_schemas: list[str] = []

    def into(self, url: str, *steps: Replay) -> list[str]:
        """Make the empty database at ``url`` what replaying ``steps`` into it would; their ids."""
        assert steps, "replay something"
        template, run_ids = self._template(url, steps)
        self._copy(template, url)
        return list(run_ids)

    def _template(self, url: str, steps: tuple[Replay, ...]) -> tuple[str, list[str]]:
        backend = "sqlite" if sqlite_path(url) is not None else "postgresql"
        key = (backend, *(step.key() for step in steps))
        if key in self.templates:
            return self.templates[key]
        name = hashlib.sha256(repr(key).encode()).hexdigest()[:16]
        if backend == "sqlite":
            template = f"sqlite:///{self.root / f'{name}.sqlite'}"
        else:
            schema = f"cw_tmpl_{name}_{uuid.uuid4().hex[:6]}"
            self._admin(f'create schema "{schema}"')
            self.pg_schemas.append(schema)
            template = url.replace(_schema(url), schema)
        # Start from the longest sequence already built, then replay the rest for real.
        done = 0
        run_ids: list[str] = []
        for cut in range(len(steps) - 1, 0, -1):
            if (backend, *(step.key() for step in steps[:cut])) in self.templates:
                prefix, run_ids = self.templates[(backend, *(s.key() for s in steps[:cut]))]
                self._copy(prefix, template)
                run_ids, done = list(run_ids), cut
                break
        for step in steps[done:]:
            run_ids.append(replay(template, step.cassette, step.delist_after, step.source))
        get_engine(template).dispose()
        self.templates[key] = (template, run_ids)
        return template, run_ids

    def _copy(self, template: str, url: str) -> None:
        source = sqlite_path(template)
        if source is not None:
            target = sqlite_path(url)
            assert target is not None, "one backend at a time"
            assert not target.exists() or target.stat().st_size == 0, f"{target} is not empty"
            target.parent.mkdir(parents=True, exist_ok=True)
            src, dst = sqlite3.connect(source), sqlite3.connect(target)
            try:
                src.backup(dst)
            finally:
                src.close()
                dst.close()
            return
        self._copy_schema(_schema(template), _schema(url), url)

    def _copy_schema(self, template: str, schema: str, url: str) -> None:
        admin = create_engine(self.pg_admin_url)
        try:
            with admin.connect() as conn:
                tables = self._tables(conn, schema)
            assert not tables, f"schema {schema} is not empty: {tables}"
            upgrade(url)  # the same migrations made the template's tables
            with admin.begin() as conn:
                conn.execute(text("set local session_replication_role = replica"))  # no FK order
                for table in self._tables(conn, template):
                    if table == "alembic_version":  # upgrade wrote it
                        continue
                    columns = ", ".join(
                        f'"{c}"'
                        for c in conn.execute(
                            text(
                                "select column_name from information_schema.columns"
                                " where table_schema = :s and table_name = :t"
                                " order by ordinal_position"
                            ),
                            {"s": template, "t": table},
                        ).scalars()
                    )
                    conn.execute(
                        text(
                            f'insert into "{schema}"."{table}" ({columns})'
                            f' select {columns} from "{template}"."{table}"'
                        )
                    )
                sequences = conn.execute(
                    text(
                        "select sequencename, last_value from pg_sequences"
                        " where schemaname = :s and last_value is not null"
                    ),
                    {"s": template},
                ).all()
                for name, last_value in sequences:
                    conn.execute(
                        text("select setval(:seq, :value, true)"),
                        {"seq": f'"{schema}"."{name}"', "value": last_value},
                    )
        finally:
            admin.dispose()

    @staticmethod
    def _tables(conn: object, schema: str) -> list[str]:
        return list(
            conn.execute(  # type: ignore[attr-defined]
                text(
                    "select table_name from information_schema.tables"
                    " where table_schema = :s and table_type = 'BASE TABLE' order by table_name"
                ),
                {"s": schema},
            ).scalars()
        )

    def _admin(self, sql: str) -> None:
        admin = create_engine(self.pg_admin_url)
        with admin.begin() as conn:
            conn.execute(text(sql))
        admin.dispose()

    def close(self) -> None:
        for url, _ in self.templates.values():
            get_engine(url).dispose()
        for schema in self.pg_schemas:
            self._admin(f'drop schema "{schema}" cascade')
