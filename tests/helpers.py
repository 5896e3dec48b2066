"""Helpers shared by the tests: replaying cassettes, editing cassettes, reading results."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import select, update

from pipeline.run import CrawlSpec, crawl
from storage.asof import export_records
from storage.engine import get_engine
from storage.events import query_events
from storage.models import Fetch, Record, RecordHistory, Run, RunList

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
SHIPPED_SOURCES = Path(__file__).resolve().parent.parent / "crawlers" / "sources"
XM = FIXTURES / "xmtravel"
DAY1 = XM / "xmtravel-day1.yaml"
DAY2 = XM / "xmtravel-day2.yaml"


def replay(url: str, cassette: Path, delist_after: int = 2, source: str = "xmtravel") -> str:
    return crawl(
        CrawlSpec(source=source, mode="replay", cassette=cassette, delist_after=delist_after),
        url=url,
    )


def events(url: str, run_id: str) -> list[dict[str, Any]]:
    with get_engine(url).connect() as conn:
        return list(query_events(conn, run_id=run_id))


def exported(url: str, source: str = "xmtravel") -> list[dict[str, Any]]:
    from core.registry import get_source

    with get_engine(url).connect() as conn:
        records, _ = export_records(conn, source, get_source(source).list_ids)
    return records


def run_row(url: str, run_id: str) -> Any:
    with get_engine(url).connect() as conn:
        return conn.execute(select(Run.__table__).where(Run.__table__.c.run_id == run_id)).one()


def list_health(url: str, run_id: str) -> dict[str, Any]:
    table = RunList.__table__
    with get_engine(url).connect() as conn:
        rows = conn.execute(select(table).where(table.c.run_id == run_id)).all()
    return {row.list: row for row in rows}


def fetches(url: str, run_id: str) -> list[Any]:
    table = Fetch.__table__
    with get_engine(url).connect() as conn:
        return conn.execute(select(table).where(table.c.run_id == run_id)).all()


def load_cassette(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def save_cassette(data: dict[str, Any], path: Path) -> Path:
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


def interaction(data: dict[str, Any], url_suffix: str) -> dict[str, Any]:
    matches = [i for i in data["interactions"] if i["request"]["uri"].endswith(url_suffix)]
    assert len(matches) == 1, f"{len(matches)} interactions end with {url_suffix}"
    return matches[0]


def truth(name: str) -> list[dict[str, Any]]:
    return json.loads((XM / name).read_text(encoding="utf-8"))


def assert_matches_truth(
    records: list[dict[str, Any]],
    expected: list[dict[str, Any]],
    key: Callable[[dict[str, Any]], tuple[str, ...]],
) -> None:
    """Every expected entry is exported once, and every field it names is equal."""
    by_key = {key(r): r for r in records}
    assert len(by_key) == len(records), "two exported records share a truth key"
    assert sorted(by_key) == sorted(key(e) for e in expected)
    mismatches = [
        (key(e), name, e[name], by_key[key(e)].get(name))
        for e in expected
        for name in e
        if by_key[key(e)].get(name) != e[name]
    ]
    assert mismatches == []


def new_room(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    shipped: str,
    source_id: str,
    edits: Mapping[str, str] | None = None,
) -> type[Any]:
    """A new source made of YAML alone: a registry in ``tmp_path/sources`` (the registry and
    every crawl read it, ``CREDITWATCH_SOURCES_DIR``) holding one room, the shipped source
    ``shipped``'s declaration under the id ``source_id``, its text changed by ``edits``
    (old → new). Returns the spider class the loader serves it with."""
    from core.registry import SOURCES_DIR_ENV
    from crawlers.loader import SourceSpiderLoader

    sources = tmp_path / "sources"
    (sources / source_id).mkdir(parents=True)
    text = (SHIPPED_SOURCES / shipped / "source.yml").read_text(encoding="utf-8")
    for old, new in {f"id: {shipped}\n": f"id: {source_id}\n", **(edits or {})}.items():
        assert old in text, old
        text = text.replace(old, new, 1)
    (sources / source_id / "source.yml").write_text(text, encoding="utf-8")
    monkeypatch.setenv(SOURCES_DIR_ENV, str(sources))
    spider = SourceSpiderLoader().load(source_id)
    assert spider.source_id == source_id
    return spider


def rewrite_record(conn: Any, record_id: int, changes: Mapping[str, Any]) -> None:
    """Write ``changes`` into a stored record's ``data`` and every version of its history
    (``entity_name`` into the column too): text the pipeline would not produce, put where
    the readers under test find it."""
    records, history = Record.__table__, RecordHistory.__table__
    data = conn.execute(select(records.c.data).where(records.c.id == record_id)).scalar_one()
    columns = {"entity_name": changes["entity_name"]} if "entity_name" in changes else {}
    conn.execute(
        update(records).where(records.c.id == record_id).values(data={**data, **changes}, **columns)
    )
    for version in conn.execute(
        select(history.c.id, history.c.data).where(history.c.record_id == record_id)
    ).all():
        conn.execute(
            update(history)
            .where(history.c.id == version.id)
            .values(data={**version.data, **changes})
        )


def until(check: Callable[[], Any], timeout: float, what: str, every: float = 0.1) -> Any:
    """Poll ``check`` until it returns something true (returned), or fail after ``timeout``
    seconds saying what was awaited."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")
