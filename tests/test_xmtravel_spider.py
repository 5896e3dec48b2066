"""The Xiamen spider on real replayed pages: what each callback reads and yields."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import scrapy
from scrapy.http import HtmlResponse, Request
from sqlalchemy import select

from core.items import ListPage, RawEntry
from core.outcomes import LayoutDrift
from crawlers.sources.xmtravel.spider import XmtravelSpider
from storage.engine import get_engine
from storage.lifecycle import last_seen
from storage.models import Record
from storage.runs import get_run
from tests.helpers import (
    DAY1,
    DAY2,
    events,
    exported,
    interaction,
    list_health,
    load_cassette,
    replay,
    save_cassette,
)
from tests.replay_cache import Replay, Replayed

DAY1_DATA = load_cassette(DAY1)
DETAIL = "xygs-detail.html?id=fb3b29f6730864d490ec1f53510e92d3"


def page(url_suffix: str, body: bytes | None = None) -> HtmlResponse:
    found = interaction(DAY1_DATA, url_suffix)
    url = found["request"]["uri"]
    # No charset in the headers, as on the portal: Scrapy must find GBK in <meta>.
    return HtmlResponse(url, body=body or found["response"]["body"]["string"], request=Request(url))


def test_list_page_yields_its_evidence_the_other_pages_and_every_detail() -> None:
    spider = XmtravelSpider()
    items = list(spider.parse_list(page("xygs-main.html"), "xmtravel.warning", 1))
    evidence = [i for i in items if isinstance(i, ListPage)]
    requests = [i for i in items if isinstance(i, scrapy.Request)]
    assert [(e.rows, e.declared_total, e.declared_pages) for e in evidence] == [(10, 23, 3)]
    assert [r.url.rsplit("=", 1)[-1] for r in requests[:2]] == ["2", "3"]
    details = requests[2:]
    assert len(details) == 10 and all("xygs-detail.html?id=" in r.url for r in details)
    assert details[0].cb_kwargs["row"]["主体名称"] == "厦门嘉禾酒店有限公司"


def test_gbk_is_read_from_meta() -> None:
    response = page(DETAIL)
    assert response.encoding in ("gb18030", "gbk")
    spider = XmtravelSpider()
    request = next(spider.parse_detail(response, "xmtravel.warning"))
    assert isinstance(request, scrapy.Request) and "subject/info.html" in request.url
    entry = spider.waiting[request.url][0]
    assert entry.fields["主体名称"] == "厦门嘉禾酒店有限公司"
    assert entry.fields["处罚结果"] == "警告，并处罚款人民币1万元"


def test_profile_completes_waiting_entries() -> None:
    spider = XmtravelSpider()
    detail = page(DETAIL)
    subject_request = next(spider.parse_detail(detail, "xmtravel.warning"))
    subject_url = subject_request.url
    profile = page(subject_url.split("10345", 1)[1])
    entries = [
        i for i in spider.parse_subject(profile, subject_url=subject_url) if isinstance(i, RawEntry)
    ]
    assert len(entries) == 1
    assert entries[0].subject["联系电话"].startswith("0592-")
    assert [p.role for p in entries[0].pages] == ["detail", "subject"]


@pytest.mark.parametrize(
    ("suffix", "callback"),
    [
        ("xygs-main.html", "list"),
        ("xygs-detail.html?id=fb3b29f6730864d490ec1f53510e92d3", "detail"),
    ],
)
def test_missing_tables_are_layout_drift(suffix: str, callback: str) -> None:
    original = interaction(DAY1_DATA, suffix)["response"]["body"]["string"]
    broken = re.sub(rb"<table.*?</table>", b"", original, flags=re.S)
    spider = XmtravelSpider()
    with pytest.raises(LayoutDrift):
        if callback == "list":
            list(spider.parse_list(page(suffix, broken), "xmtravel.warning", 1))
        else:
            list(spider.parse_detail(page(suffix, broken), "xmtravel.warning"))


@pytest.mark.replay
def test_entry_shown_only_on_its_profile_is_still_seen(
    sqlite_url: str, replayed: Replayed, tmp_path: Path
) -> None:
    """Drop one row from list page 2 (and its count): the profile page still shows it."""
    data = load_cassette(DAY2)
    response = interaction(data, "xygs-main.html?pageNo=2")["response"]
    html = response["body"]["string"].decode("gbk")
    row = re.search(r"<tr><td>\d+</td>.*?厦文旅罚\[2024\]84号.*?</tr>\n?", html)
    assert row is not None
    response["body"]["string"] = html.replace(row.group(0), "").encode("gbk")
    for i in data["interactions"]:
        if "xygs-main.html" in i["request"]["uri"]:
            body = i["response"]["body"]["string"].decode("gbk")
            i["response"]["body"]["string"] = body.replace("<b>24</b>", "<b>23</b>").encode("gbk")
    damaged = save_cassette(data, tmp_path / "day2-row-gone.yaml")
    replayed(sqlite_url, Replay(DAY1, delist_after=1))
    run_id = replay(sqlite_url, damaged, delist_after=1)
    assert list_health(sqlite_url, run_id)["xmtravel.warning"].health == "healthy"
    assert "厦文旅罚[2024]84号" not in [e["case_number"] for e in events(sqlite_url, run_id)]
    assert any(r["case_number"] == "厦文旅罚[2024]84号" for r in exported(sqlite_url))
    # Seen by this run (through the profile's link alone): its sighting is this run's. The
    # stored provenance stays that of the version's first read (an entry seen again unchanged
    # is not rewritten); this run's archive holds the pages it was seen on.
    table = Record.__table__
    with get_engine(sqlite_url).connect() as conn:
        current = conn.execute(
            select(table.c.status, table.c.absent_runs, last_seen()).where(
                table.c.case_number == "厦文旅罚[2024]84号"
            )
        ).one()
        run = get_run(conn, run_id)
    assert current.status == "active" and current.absent_runs == 0
    assert current.last_seen == run.started_at
