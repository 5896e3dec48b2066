"""The ``html_list`` family: HTML list pages read from the registry alone (no Python per
source), columns found by their header label, and the unhealthy pages that must never delist
anything."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from core.registry import RegistryError, parse_source, read_yaml
from crawlers.spiders.html_list import HtmlListSpider, fill
from fixtures.hainan_xygs import build as hainan
from fixtures.html_list_model import Faults, HtmlPortal, Row, day_interactions
from fixtures.portal_model import dump_yaml
from fixtures.tianjin_xygs import build as tianjin
from fixtures.xinjiang_xygs import build as xinjiang
from pipeline.run import CrawlSpec, crawl
from storage.engine import get_engine
from storage.models import Record
from tests.helpers import events, list_health, new_room, run_row
from tests.test_conformance import everything


def write_day(
    path: Path, portal: HtmlPortal, rows: Sequence[Row], day: int, faults: Faults | None
) -> Path:
    interactions = day_interactions(portal, rows, day, faults)
    path.write_text(dump_yaml({"interactions": interactions, "version": 1}), encoding="utf-8")
    return path


def two_days(
    tmp_path: Path, url: str, portal: HtmlPortal, day1: Sequence[Row], day2: Sequence[Row],
    faults: Faults | None,
) -> tuple[str, str]:  # fmt: skip
    """A healthy day 1, then day 2 with ``faults``."""
    runs = []
    for day, rows, fault in ((1, day1, None), (2, day2, faults)):
        cassette = write_day(tmp_path / f"{portal.source}-{day}.yaml", portal, rows, day, fault)
        spec = CrawlSpec(source=portal.source, mode="replay", cassette=cassette, delist_after=1)
        runs.append(crawl(spec, url=url))
    health = list_health(url, runs[0])[portal.list_id]
    assert health.health == "healthy", health.findings
    return runs[0], runs[1]


def assert_nothing_delisted(url: str, source: str, run_id: str, names: set[str]) -> None:
    """No ``delisted`` event, and every entry named is still active and not counted absent."""
    assert [e["event"] for e in events(url, run_id) if e["event"] == "delisted"] == []
    table = Record.__table__
    query = select(table.c.data, table.c.status, table.c.absent_runs).where(
        table.c.source == source
    )
    with get_engine(url).connect() as conn:
        stored = {row.data["entity_name"]: row for row in conn.execute(query)}
    assert names <= set(stored)
    assert {(stored[n].status, stored[n].absent_runs) for n in names} == {("active", 0)}


def outcomes(health: Any) -> set[str]:
    return {f["outcome"] for f in health.findings if f.get("check") == "fetch"}


def names(rows: Sequence[Row], label: str) -> set[str]:
    return {row.cells[label] for row in rows}


@pytest.mark.replay
def test_a_moved_column_still_parses_to_the_same_values(
    tmp_path: Path, sqlite_url: str, netguard: Path
) -> None:
    rows = tianjin.DAY1
    moved = list(reversed(tianjin.COLUMNS))  # every column elsewhere, the link column too
    _, day2 = two_days(tmp_path, sqlite_url, tianjin.PORTAL, rows, rows, Faults(columns=moved))
    health = list_health(sqlite_url, day2)[tianjin.PORTAL.list_id]
    assert health.health == "healthy", health.findings
    assert [e for e in events(sqlite_url, day2) if e["event"] != "unchanged"] == []
    stored = {r["entity_name"]: r for r in everything(sqlite_url, "tianjin_xygs")}
    for row in rows:
        record = stored[row.cells["企业名称"]]
        assert record["uscc"] == row.cells["统一社会信用代码"]
        assert record["decided_on"] == row.cells["列入日期"]
        assert record["reason"] == row.cells["列入原因"]
    assert netguard.read_text() == ""


@pytest.mark.replay
def test_a_renamed_key_column_is_layout_drift_and_delists_nothing(
    tmp_path: Path, sqlite_url: str, netguard: Path
) -> None:
    rows = xinjiang.DAY1
    faults = Faults(rename={"行政许可决定文书号": "许可文书编号"})
    _, day2 = two_days(tmp_path, sqlite_url, xinjiang.PORTAL, rows, rows, faults)
    health = list_health(sqlite_url, day2)[xinjiang.PORTAL.list_id]
    assert health.health == "failed"
    assert "layout_drift" in outcomes(health)
    assert_nothing_delisted(sqlite_url, "xinjiang_xygs", day2, names(rows, "行政相对人名称"))


@pytest.mark.replay
def test_a_portal_capped_at_ten_pages_is_degraded_and_delists_nothing(
    tmp_path: Path, sqlite_url: str, netguard: Path
) -> None:
    """信用新疆 serves 10 pages (max_pages: 10); a list that grew to 13 pages is read as far as
    it goes, and the day-1 entries the unread pages may hold are not taken as gone."""
    longer = xinjiang.rows(125)
    _, day2 = two_days(tmp_path, sqlite_url, xinjiang.PORTAL, xinjiang.DAY1, longer, None)
    health = list_health(sqlite_url, day2)[xinjiang.PORTAL.list_id]
    assert health.health == "degraded"
    assert (health.rows_declared, health.rows_seen, health.pages) == (125, 100, 10)
    assert {f["check"] for f in health.findings} >= {"pages", "rows"}
    assert run_row(sqlite_url, day2).state == "degraded"
    day1_names = names(xinjiang.DAY1, "行政相对人名称")
    assert_nothing_delisted(sqlite_url, "xinjiang_xygs", day2, day1_names)
    assert netguard.read_text() == ""


@pytest.mark.replay
@pytest.mark.parametrize(
    ("faults", "outcome", "health_of_list"),
    [
        (Faults(cap=1), "rate_limited", "degraded"),  # page 2 on: 您的访问过于频繁
        (
            Faults(error_page="<html><body><h1>系统繁忙，请稍后再试</h1></body></html>"),
            "http_error",
            "failed",
        ),
        (
            Faults(error_page="<html><body><p>页面维护中</p></body></html>"),
            "layout_drift",
            "failed",
        ),
    ],
)
def test_a_refused_or_error_page_is_named_and_delists_nothing(
    tmp_path: Path, sqlite_url: str, netguard: Path, faults: Faults, outcome: str,
    health_of_list: str,
) -> None:  # fmt: skip
    rows = tianjin.DAY1
    _, day2 = two_days(tmp_path, sqlite_url, tianjin.PORTAL, rows, rows, faults)
    health = list_health(sqlite_url, day2)[tianjin.PORTAL.list_id]
    assert health.health == health_of_list
    assert outcome in outcomes(health)
    assert_nothing_delisted(sqlite_url, "tianjin_xygs", day2, names(rows, "企业名称"))


@pytest.mark.replay
def test_a_new_province_is_one_yaml_file_and_a_cassette(
    tmp_path: Path, sqlite_url: str, netguard: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spider = new_room(tmp_path, monkeypatch, "hainan_xygs", "testprovince")
    assert issubclass(spider, HtmlListSpider)
    cassette = write_day(tmp_path / "testprovince.yaml", hainan.PORTAL, hainan.DAY1, 1, None)
    run = crawl(
        CrawlSpec(source="testprovince", mode="replay", cassette=cassette, delist_after=1),
        url=sqlite_url,
    )
    health = list_health(sqlite_url, run)["testprovince.a_grade_taxpayers"]
    assert health.health == "healthy", health.findings
    assert (health.pages, health.records) == (2, len(hainan.DAY1))  # a full page, then none
    stored = everything(sqlite_url, "testprovince")
    assert {r["entity_name"] for r in stored} == names(hainan.DAY1, "纳税人名称")
    assert {r["title"] for r in stored} == {"A"}
    assert netguard.read_text() == ""


# --- the declaration ------------------------------------------------------------------------

BASE = """\
id: trial
name_zh: 试验
name_en: Trial
jurisdiction: {name: 天津市, region_code: 120000}
base_url: https://example.test/
spider: html_list
lists:
  - id: black
    list_kind: blacklist
"""


def parse(text: str) -> Any:
    data, lines = read_yaml(text)
    return parse_source(data, lines)


def test_an_html_list_source_needs_each_lists_block() -> None:
    with pytest.raises(RegistryError, match="reads each list's 'html_list:' block") as caught:
        parse(BASE)
    assert caught.value.line == 8


def test_a_misspelt_html_list_key_names_the_line_and_the_key_meant() -> None:
    text = BASE + (
        "    html_list:\n"
        "      url: list.do?p={page}\n"
        "      table: table.list\n"
        "      key_colums: [名称]\n"
    )
    with pytest.raises(RegistryError, match=r"unknown key 'key_colums'.*'key_columns'") as c:
        parse(text)
    assert c.value.line == 13


def test_an_html_list_block_elsewhere_names_its_line() -> None:
    text = BASE.replace("spider: html_list\n", "") + (
        "    html_list: {url: 'l?p={page}', table: t, key_columns: [名称]}\n"
    )
    with pytest.raises(RegistryError, match="read only by 'spider: html_list'") as caught:
        parse(text)
    assert caught.value.line == 9


@pytest.mark.parametrize(
    ("block", "message"),
    [
        ("{url: list.do, table: t, key_columns: [名称]}", "no page placeholder"),
        ("{url: 'l?p={page}', table: t, key_columns: []}", "key_columns"),
        ("{url: l, table: t, key_columns: [名称], form: {p: '{page}'}}", "GET request has no form"),
        ("{url: 'l?p={page}', table: t, key_columns: [名称], encoding: nope}", "nope"),
        ("{url: 'l?p={page}', table: t, key_columns: [a], pager: {css: p}}", "'total' or 'pages'"),
        (
            "{url: 'l?p={page}', table: t, key_columns: [a], pager: {css: p, total: '共\\d+条'}}",
            "group",
        ),
        (
            "{url: 'l?p={page}', table: t, key_columns: [a], detail: {column: b, table: t}}",
            "not one of key_columns",
        ),
        (
            "{url: 'l?p={page}', table: t, key_columns: [a], refused: [{contains: [x], "
            "outcome: blocked}]}",
            "outcome",
        ),
    ],
)
def test_an_html_list_block_is_checked(block: str, message: str) -> None:
    with pytest.raises(RegistryError, match=message) as caught:
        parse(BASE + f"    html_list: {block}\n")
    assert caught.value.line == 10


def test_a_valid_block_loads_with_its_defaults() -> None:
    source = parse(BASE + "    html_list: {url: 'l?p={page}', table: t, key_columns: [名称]}\n")
    spec = source.lists[0].html_list
    assert spec is not None and (spec.method, spec.rows, spec.page_size) == ("GET", "tr", 10)


def test_placeholders() -> None:
    assert fill("index_{page}.html?o={offset}&n={size}", {"page": 3, "size": 5, "offset": 10}) == (
        "index_3.html?o=10&n=5"
    )
