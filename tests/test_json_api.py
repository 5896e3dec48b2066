"""The ``json_api`` family: JSON list APIs read from the registry alone (no Python per source),
and the unhealthy answers that must never delist anything."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from core.registry import RegistryError, get_source, load_registry, parse_source, read_yaml
from crawlers.spiders.json_api import JsonApiSpider, at_path, substitute
from fixtures.beijing_punish import build as beijing
from fixtures.json_api_model import Decision, Faults, JsonPortal, day_interactions
from fixtures.portal_model import dump_yaml
from fixtures.shanghai_doublepublic import build as shanghai
from fixtures.shenzhen_punish import build as shenzhen
from pipeline.run import CrawlSpec, crawl
from storage.engine import get_engine
from storage.models import Record
from tests.helpers import events, list_health, new_room, run_row
from tests.test_conformance import everything


def write_day(
    path: Path, portal: JsonPortal, rows: Sequence[Decision], day: int, faults: Faults | None
) -> Path:
    interactions = day_interactions(portal, rows, day, faults)
    path.write_text(dump_yaml({"interactions": interactions, "version": 1}), encoding="utf-8")
    return path


def two_days(
    tmp_path: Path, url: str, source: str, portal: JsonPortal, rows: Sequence[Decision],
    faults: Faults,
) -> tuple[str, str]:  # fmt: skip
    """A healthy day 1, then day 2 with the same rows but ``faults``."""
    runs = []
    for day, fault in ((1, None), (2, faults)):
        cassette = write_day(tmp_path / f"{source}-{day}.yaml", portal, rows, day, fault)
        spec = CrawlSpec(source=source, mode="replay", cassette=cassette, delist_after=1)
        runs.append(crawl(spec, url=url))
    health = list_health(url, runs[0])[portal.list_id]
    assert health.health == "healthy", health.findings
    return runs[0], runs[1]


def assert_nothing_delisted(url: str, source: str, run_id: str, count: int) -> None:
    assert [e["event"] for e in events(url, run_id) if e["event"] == "delisted"] == []
    table = Record.__table__
    query = select(table.c.status, table.c.absent_runs).where(table.c.source == source)
    with get_engine(url).connect() as conn:
        stored = conn.execute(query).all()
    assert len(stored) == count
    assert {(row.status, row.absent_runs) for row in stored} == {("active", 0)}


def outcomes(health: Any) -> set[str]:
    return {f["outcome"] for f in health.findings if f.get("check") == "fetch"}


@pytest.mark.replay
def test_a_page_capped_portal_is_degraded_and_delists_nothing(
    tmp_path: Path, sqlite_url: str, netguard: Path
) -> None:
    rows = shanghai.DAYS.day1  # 23 declared: page 2 answers with no rows
    _, day2 = two_days(
        tmp_path, sqlite_url, "shanghai_doublepublic", shanghai.PORTAL, rows, Faults(cap=1)
    )
    health = list_health(sqlite_url, day2)["shanghai_doublepublic.penalties"]
    assert health.health == "degraded"
    assert (health.rows_declared, health.rows_seen) == (len(rows), shanghai.PAGE_SIZE)
    assert "empty" in outcomes(health)
    assert any(f["check"] == "rows" for f in health.findings)
    assert_nothing_delisted(sqlite_url, "shanghai_doublepublic", day2, len(rows))
    assert netguard.read_text() == ""


@pytest.mark.replay
@pytest.mark.parametrize(
    ("answer", "outcome"),
    [
        (("application/json", '{"status":0,"msg":"非法请求","data":null}'), "session_rejected"),
        (("text/html; charset=utf-8", "<html><body>403 Forbidden</body></html>"), "malformed"),
    ],
)
def test_an_answer_refused_for_want_of_a_referer_is_named_and_delists_nothing(
    tmp_path: Path, sqlite_url: str, netguard: Path, answer: tuple[str, str], outcome: str
) -> None:
    rows = beijing.DAYS.day1
    _, day2 = two_days(
        tmp_path, sqlite_url, "beijing_punish", beijing.PORTAL, rows, Faults(refuse=answer)
    )
    health = list_health(sqlite_url, day2)["beijing_punish.penalties"]
    assert health.health == "failed"
    assert outcome in outcomes(health)
    assert run_row(sqlite_url, day2).state == "failed"
    assert_nothing_delisted(sqlite_url, "beijing_punish", day2, len(rows))


@pytest.mark.replay
def test_a_renamed_json_key_is_layout_drift_and_delists_nothing(
    tmp_path: Path, sqlite_url: str, netguard: Path
) -> None:
    rows = shenzhen.DAYS.day1
    faults = Faults(rename={"PunishNo": "PunishDocNo"})
    _, day2 = two_days(tmp_path, sqlite_url, "shenzhen_punish", shenzhen.PORTAL, rows, faults)
    health = list_health(sqlite_url, day2)["shenzhen_punish.penalties"]
    assert health.health != "healthy"
    assert "layout_drift" in outcomes(health)
    assert_nothing_delisted(sqlite_url, "shenzhen_punish", day2, len(rows))


@pytest.mark.replay
def test_a_new_city_is_one_yaml_file_and_a_cassette(
    tmp_path: Path, sqlite_url: str, netguard: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spider = new_room(tmp_path, monkeypatch, "shenzhen_punish", "testcity")
    assert issubclass(spider, JsonApiSpider)
    cassette = write_day(tmp_path / "testcity.yaml", shenzhen.PORTAL, shenzhen.DAY1, 1, None)
    run = crawl(
        CrawlSpec(source="testcity", mode="replay", cassette=cassette, delist_after=1),
        url=sqlite_url,
    )
    health = list_health(sqlite_url, run)["testcity.penalties"]
    assert health.health == "healthy", health.findings
    assert (health.pages, health.records) == (3, len(shenzhen.DAY1))
    names = {r["entity_name"] for r in everything(sqlite_url, "testcity")}
    assert names == {d.name for d in shenzhen.DAY1}
    assert netguard.read_text() == ""


@pytest.mark.parametrize("family", ["json_api", "html_list"])
def test_family_sources_hold_no_python(family: str) -> None:
    """Sources of a declarative family are their ``source.yml`` alone, each list with the
    family's block (``json_api:``, ``html_list:``)."""
    members = [sid for sid, source in load_registry().items() if source.spider == family]
    assert len(members) >= 3
    for sid in members:
        room = get_source(sid).room
        assert room is not None
        assert sorted(p.name for p in room.iterdir() if p.is_file()) == ["source.yml"], sid
        assert all(getattr(lst, family) is not None for lst in get_source(sid).lists)


# --- the declaration ------------------------------------------------------------------------

BASE = """\
id: trial
name_zh: 试验
name_en: Trial
jurisdiction: {name: 北京市, region_code: 110000}
base_url: https://example.test/
spider: json_api
lists:
  - id: penalties
    list_kind: penalty
"""


def parse(text: str) -> Any:
    data, lines = read_yaml(text)
    return parse_source(data, lines)


def test_a_json_api_source_needs_each_lists_block() -> None:
    with pytest.raises(RegistryError, match="reads each list's 'json_api:' block") as caught:
        parse(BASE)
    assert caught.value.line == 8


def test_a_misspelt_json_api_key_names_the_line_and_the_key_meant() -> None:
    text = BASE + "    json_api: {url: a, rows: list, key_fields: [x], parms: {p: '{page}'}}\n"
    with pytest.raises(RegistryError, match=r"unknown key 'parms'.*did you mean 'params'") as c:
        parse(text)
    assert c.value.line == 10


@pytest.mark.parametrize(
    ("block", "message"),
    [
        ("{url: a, rows: list, key_fields: [x], params: {p: 1}}", "no page placeholder"),
        ("{url: a, rows: l, key_fields: [x], form: {p: '{page}'}}", "GET request has no form"),
        ("{url: a, rows: l, key_fields: [x], params: {p: '{page}'}, encoding: nope}", "nope"),
        ("{url: a, rows: l, key_fields: [], params: {p: '{page}'}}", "key_fields"),
    ],
)
def test_a_json_api_block_is_checked(block: str, message: str) -> None:
    with pytest.raises(RegistryError, match=message):
        parse(BASE + f"    json_api: {block}\n")


def test_paths_and_placeholders() -> None:
    doc = {"data": {"list": [1], "page": {"totalPage": 3}}, "Data": [{"a": 1}]}
    assert at_path(doc, "data.page.totalPage") == 3
    assert at_path(doc, "Data.0.a") == 1
    assert at_path(doc, "data.rows") is at_path(doc, "nothing.here")
    body = {"currentPage": "{page}", "q": "p{page}-{size}", "c": {"o": "{offset}"}}
    assert substitute(body, {"page": 2, "size": 5, "offset": 5}) == {
        "currentPage": 2,
        "q": "p2-5",
        "c": {"o": 5},
    }
