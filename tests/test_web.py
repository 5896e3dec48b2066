"""The read-only web app, in process: the start page, a list's search and filters and its state
on a past date, entity histories, snapshots and their downloads, archived responses kept
inert, Atom feeds, the JSON API and its description, languages, security headers, and a
redacting server that never shows a natural person's full name."""

from __future__ import annotations

import hashlib
import html
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import feedparser
import pytest
from fastapi.encoders import jsonable_encoder
from fastapi.testclient import TestClient
from markupsafe import escape
from sqlalchemy import select
from typer.testing import CliRunner

from core.catalogue import word
from core.clock import SHANGHAI
from core.redact import pseudonym, short_name
from core.registry import get_source
from core.schema import EVENT_FIELDS, RECORD_FIELDS
from export.snapshots import MANIFEST, write_snapshot
from pipeline.cli import app as cli_app
from storage.archive import BODIES, RESPONSES, body_row, get_response
from storage.asof import records_as_of, run_date
from storage.engine import get_engine
from storage.models import Event, Record
from tests.helpers import FIXTURES, replay, rewrite_record, run_row
from web.app import CSP, RAW_CSP, create_app, http_url
from web.i18n import FIELDS, LABELS, Translator

pytestmark = pytest.mark.replay

WARNING = "xmtravel.warning"
GOOD = "xmtravel.good"
BLACKLIST = "mct_tourism.blacklist"
JIAHE = "uscc-91350213MA028DE74Q"  # 厦门嘉禾酒店有限公司: on both Xiamen lists, modified on day 2
JIAHE_USCC = "91350213MA028DE74Q"
HULI = "uscc-91350203MA116W7K8T"  # a branch with one entry delisted and one listed on day 2
HOSTILE_USCC = "91350203MAHRWNL11C"  # an honoured agency whose scraped values the tests poison
HOSTILE_NAME = '<script>alert("name")</script><img src=x onerror=alert(1)>厦门"恶意"旅行社'
HOSTILE_URL = "javascript:alert(document.cookie)//http://example.org/"
HOSTILE_BODY = (
    '<html><head><meta charset="utf-8"><title>t</title></head><body><h1>存档</h1>'
    "<script>alert(document.domain)</script><img src=x onerror=\"alert('img')\">"
    '<a href="javascript:alert(2)">link</a>"\'></iframe><script>alert(3)</script>'
    "</body></html>"
).encode()
HOSTILE_RAW_URL = "javascript:alert('url')"


@dataclass(frozen=True)
class Site:
    url: str
    root: Path
    snapshots: Path
    day1: date
    day2: date
    first_run: str
    second_run: str
    hostile_sha: str
    days: dict[str, tuple[date, date]]  # each source's two run dates


# Subscriptions made between the Xiamen days: a company by USCC, a list of tour guides, the
# blacklist of persons from its baseline on, and a person by full name.
SUBSCRIPTIONS = {
    "jiahe": ["--uscc", JIAHE_USCC, "--language", "en"],
    "guides": ["--list", GOOD],
    "blacklist": ["--list", BLACKLIST, "--baseline", "--language", "en"],
    "by-name": ["--name", "王立新", "--baseline"],
}


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Site:
    return build_site(tmp_path_factory.mktemp("web"))


def build_site(root: Path) -> Site:
    """Two days of the Xiamen portal (companies and tour guides) and of the tourism blacklist
    (natural persons only); subscriptions made between the Xiamen days; an unredacted CSV
    snapshot and a redacted JSON Lines one; then a hostile archived response and one entry
    whose scraped name and URL are hostile, as a compromised portal could publish them."""
    url = f"sqlite:///{root / 'creditwatch.sqlite'}"
    first = replay(url, FIXTURES / "xmtravel" / "xmtravel-day1.yaml", delist_after=1)
    for name, criteria in SUBSCRIPTIONS.items():
        channel = ["--channel", f"feed:{root / name}.atom"]
        added = CliRunner().invoke(
            cli_app, ["watch", "add", name, *criteria, *channel], env={"DATABASE_URL": url}
        )
        assert added.exit_code == 0, added.output
    second = replay(url, FIXTURES / "xmtravel" / "xmtravel-day2.yaml", delist_after=1)
    blacklist = [
        replay(url, FIXTURES / "mct_tourism" / f"mct_tourism-day{day}.yaml", 1, "mct_tourism")
        for day in (1, 2)
    ]
    snapshots = root / "snapshots"
    engine = get_engine(url)
    with engine.connect() as conn:
        write_snapshot(conn, snapshots / "xm-csv", sources=["xmtravel"], fmt="csv")
        write_snapshot(
            conn,
            snapshots / "all-redacted",
            sources=["mct_tourism", "xmtravel"],
            fmt="jsonl",
            redact=True,
        )
    hostile = body_row(HOSTILE_BODY)
    records = Record.__table__
    with engine.begin() as conn:
        conn.execute(BODIES.insert().values(**hostile))
        conn.execute(
            RESPONSES.insert().values(
                run_id=second,
                sha256=hostile["sha256"],
                url=HOSTILE_RAW_URL,
                method="GET",
                status=200,
                headers=[
                    ["Content-Type", "text/html; charset=utf-8"],
                    ["X-Note", "<script>alert('header')</script>"],
                ],
                fetched_at=datetime.now(UTC),
            )
        )
        [row] = conn.execute(
            select(records.c.id, records.c.data).where(
                records.c.list == GOOD, records.c.uscc == HOSTILE_USCC
            )
        ).all()
        poison = {"entity_name": HOSTILE_NAME, "source_url": HOSTILE_URL}
        rewrite_record(conn, row.id, poison)
    return Site(
        url=url,
        root=root,
        snapshots=snapshots,
        day1=run_date(run_row(url, first).started_at),
        day2=run_date(run_row(url, second).started_at),
        first_run=first,
        second_run=second,
        hostile_sha=hostile["sha256"],
        days={
            source: (run_date(run_row(url, a).started_at), run_date(run_row(url, b).started_at))
            for source, (a, b) in {"xmtravel": (first, second), "mct_tourism": blacklist}.items()
        },
    )


@pytest.fixture(scope="module")
def client(site: Site) -> TestClient:
    return TestClient(create_app(database_url=site.url, snapshots_dir=site.snapshots))


@pytest.fixture(scope="module")
def redacting(site: Site) -> TestClient:
    app = create_app(database_url=site.url, snapshots_dir=site.snapshots, redact=True)
    return TestClient(app)


# -- helpers ------------------------------------------------------------------------------------


def entries(client: TestClient, list_id: str, **params: Any) -> dict[str, Any]:
    answer = client.get(f"/api/lists/{list_id}/entries", params={"per_page": 500, **params})
    assert answer.status_code == 200, answer.text
    return answer.json()


def keys(answer: dict[str, Any]) -> list[str]:
    return [e["record_key"] for e in answer["entries"]]


def stored(site: Site, source: str, as_of: date | None = None, **options: Any) -> Any:
    with get_engine(site.url).connect() as conn:
        return records_as_of(conn, source, get_source(source).list_ids, as_of, **options)


class Tags(HTMLParser):
    """Every start tag of a page with its attributes, and the page's text."""

    def __init__(self, page: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.feed(page)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    handle_startendtag = handle_starttag

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    def of(self, tag: str) -> list[dict[str, str | None]]:
        return [attrs for name, attrs in self.tags if name == tag]

    def hrefs(self) -> list[str]:
        return [a["href"] or "" for a in self.of("a") if "href" in a]


def row_of(page: str, row_id: str) -> str:
    found = re.search(rf'<tr id="{re.escape(row_id)}"[^>]*>(.*?)</tr>', page, re.S)
    assert found, f"no row {row_id}"
    return found.group(1)


def crawl(client: TestClient, starts: list[str], limit: int = 800) -> Iterator[tuple[str, Any]]:
    """Every page and API answer reachable from ``starts`` through the app's own links (and,
    from JSON, through the entity ids it names), each once."""
    seen: set[str] = set()
    todo = list(starts)
    while todo and len(seen) < limit:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        answer = client.get(path)
        yield path, answer
        kind = answer.headers.get("content-type", "")
        if "attachment" in answer.headers.get("content-disposition", ""):
            continue
        if "sort=" in path:  # a sorted list: its own entries, its links those of the unsorted
            continue
        if kind.startswith("text/html"):
            for href in Tags(answer.text).hrefs():
                if href.startswith("/") and not href.startswith("/static/"):
                    todo.append(href.split("#")[0])
        elif kind.startswith("application/json") and path.startswith("/api/"):
            for entity in re.findall(r'"entity_id":"([^"]+)"', answer.text):
                todo += [f"/entities/{entity}", f"/api/entities/{entity}"]
    assert len(seen) < limit, "the crawl did not finish"


def assert_html_headers(answer: Any, path: str) -> None:
    policy = answer.headers.get("content-security-policy", "")
    assert "default-src 'none'" in policy and "script-src" not in policy, path
    assert "frame-ancestors 'none'" in policy, path
    assert answer.headers.get("x-content-type-options") == "nosniff", path
    assert answer.headers.get("x-frame-options") == "DENY", path
    assert answer.headers.get("referrer-policy") == "no-referrer", path


def assert_inert(page: str, path: str) -> None:
    """No script element, no event handler attribute, no link that is not the app's own or
    an http(s) URL."""
    tags = Tags(page)
    assert not tags.of("script"), path
    for name, attrs in tags.tags:
        assert not [a for a in attrs if a.startswith("on")], (path, name, attrs)
    for href in tags.hrefs():
        assert href.startswith(("/", "?", "http://", "https://")), (path, href)


# -- the start page and languages ---------------------------------------------------------------


def test_index_lists_sources_and_lists_with_counts_and_last_healthy_run(
    client: TestClient, site: Site
) -> None:
    everything, vouches, _ = stored(site, "xmtravel", include_removed=True)
    page = client.get("/", params={"lang": "en"})
    assert page.status_code == 200
    for source in ("xmtravel", "mct_tourism", "creditchina", "gsxt"):
        assert f'id="source-{source}"' in page.text
        assert get_source(source).name_en in page.text
    for list_id in (WARNING, GOOD):
        row = row_of(page.text, f"list-{list_id}")
        assert f'href="/lists/{list_id}"' in row
        for status in ("active", "expired", "removed"):
            expected = sum(1 for r in everything if r["list"] == list_id and r["status"] == status)
            assert f'count-{status}">{expected}<' in row, (list_id, status)
        assert f"{site.second_run}</span> · {site.day2.isoformat()}" in row and "healthy" in row
    assert vouches[WARNING].run_id == site.second_run
    never = row_of(page.text, "list-creditchina.sxbzxr")
    assert "count-active" not in never and "no healthy run yet" in never
    xm = page.text[page.text.index('id="source-xmtravel"') :]
    assert re.search(
        rf"Latest run:\s*<span[^>]*>{site.second_run}</span> · ", xm[: xm.index("</p>")]
    )

    sources = {s["id"]: s for s in client.get("/api/sources").json()}
    lists = {lst["id"]: lst for lst in sources["xmtravel"]["lists"]}
    removed = sum(1 for r in everything if r["list"] == WARNING and r["status"] == "removed")
    assert lists[WARNING]["counts"]["removed"] == removed > 0
    vouch = lists[WARNING]["last_healthy_run"]
    assert datetime.fromisoformat(vouch.pop("at")) == vouches[WARNING].at
    assert vouch == {
        "run_id": site.second_run,
        "seq": vouches[WARNING].seq,
        "date": site.day2.isoformat(),
        "run_state": "healthy",
        "list_health": "healthy",
    }
    assert sources["xmtravel"]["latest_run"]["run_id"] == site.second_run
    assert sources["creditchina"]["latest_run"] is None
    assert all(lst["counts"] is None for lst in sources["creditchina"]["lists"])


def test_language_labels_differ_and_the_choice_sticks(site: Site) -> None:
    app = create_app(database_url=site.url, snapshots_dir=site.snapshots)
    browser = TestClient(app)
    default = browser.get("/")
    assert '<html lang="zh">' in default.text and LABELS["zh"]["sources_title"] in default.text
    assert "set-cookie" not in default.headers

    english = browser.get("/", params={"lang": "en"})
    assert '<html lang="en">' in english.text
    assert LABELS["en"]["sources_title"] in english.text
    assert LABELS["zh"]["sources_title"] not in english.text
    assert get_source("xmtravel").name_en in english.text
    assert "lang=en" in english.headers["set-cookie"]
    assert 'href="/?lang=zh"' in english.text  # the switch to the other language

    # The cookie carries the choice to every later page, until another choice.
    later = browser.get(f"/lists/{WARNING}")
    assert '<html lang="en">' in later.text and LABELS["en"]["search"] in later.text
    assert browser.get("/", params={"lang": "fr"}).text == english.text
    chinese = browser.get("/snapshots", params={"lang": "zh"})
    assert '<html lang="zh">' in chinese.text and LABELS["zh"]["snapshots_title"] in chinese.text
    assert browser.get("/").text == default.text

    # Scraped values are never translated: a list shows the same names in both languages.
    zh_names = set(
        re.findall(r'class="entity"[^>]*>([^<]+)<', browser.get(f"/lists/{WARNING}").text)
    )
    en_page = browser.get(f"/lists/{WARNING}", params={"lang": "en"}).text
    assert zh_names and zh_names == set(re.findall(r'class="entity"[^>]*>([^<]+)<', en_page))


# -- a list: search, filters, a past date, pages ------------------------------------------------


def test_search_by_name_uscc_and_case_number_folds_their_spellings(client: TestClient) -> None:
    every = entries(client, WARNING)
    by_case = {e["case_number"]: e for e in every["entries"]}
    assert "厦文旅罚〔2025〕300号" in by_case  # listed on day 2 with full-width brackets
    huli = {e["record_key"] for e in every["entries"] if e["entity_id"] == HULI}
    queries = {
        # name fragments, in simplified and traditional characters
        "鹭江观光旅游股份有限公司湖里": huli,
        "廈門鷺江觀光旅遊股份有限公司湖裡": huli,
        # a case number written with other brackets, half-width or full-width
        "厦文旅罚(2025)300号": {by_case["厦文旅罚〔2025〕300号"]["record_key"]},
        "厦文旅罚[2025]300號": {by_case["厦文旅罚〔2025〕300号"]["record_key"]},
        # a USCC, in lower case and in full-width digits
        JIAHE_USCC.lower(): {e["record_key"] for e in every["entries"] if e["uscc"] == JIAHE_USCC},
        # a code that fails its checksum is found as published (uscc_raw)
        "９１３５０２１２ＭＡ７Ｌ９Ｆ０Ｍ９０": {
            e["record_key"] for e in every["entries"] if e["uscc_raw"] == "91350212MA7L9F0M90"
        },
    }
    for query, expected in queries.items():
        found = entries(client, WARNING, q=query)
        assert expected and set(keys(found)) == expected, query
        assert found["total"] == len(expected) and found["filters"]["q"] == query
    assert {e["uscc"] for e in entries(client, WARNING, q=JIAHE_USCC)["entries"]} == {JIAHE_USCC}
    assert entries(client, WARNING, q="绝不存在的名字")["total"] == 0

    page = client.get(f"/lists/{WARNING}", params={"q": "厦文旅罚(2025)300号", "lang": "en"})
    assert page.status_code == 200 and "厦门鹭江观光旅游股份有限公司湖里分公司" in page.text
    assert "厦门嘉禾酒店有限公司" not in page.text and "1 entries" in page.text
    assert len(huli) == 2 and len(re.findall(r'class="entity"', page.text)) == 1
    assert 'value="厦文旅罚(2025)300号"' in page.text  # the form keeps the query


def test_status_filter_shows_the_entries_delisted_on_day_two(
    client: TestClient, site: Site
) -> None:
    now = entries(client, WARNING)
    assert {e["status"] for e in now["entries"]} == {"active", "expired"}
    removed = entries(client, WARNING, status="removed")
    assert removed["total"] == len(removed["entries"]) > 0
    assert {e["status"] for e in removed["entries"]} == {"removed"}
    events = Event.__table__
    with get_engine(site.url).connect() as conn:
        delisted = set(
            conn.execute(
                select(events.c.record_key).where(
                    events.c.list == WARNING,
                    events.c.event == "delisted",
                    events.c.run_id == site.second_run,
                )
            ).scalars()
        )
    assert set(keys(removed)) == delisted
    assert not delisted & set(keys(now))
    every = entries(client, WARNING, status="all")
    assert sorted(keys(every)) == sorted(keys(now) + keys(removed))
    for status in ("active", "expired"):
        only = entries(client, WARNING, status=status)
        assert set(keys(only)) == {e["record_key"] for e in now["entries"] if e["status"] == status}
    # Nothing had been delisted on day 1; what day 2 removed was then on the list.
    assert entries(client, WARNING, status="removed", as_of=site.day1.isoformat())["total"] == 0
    assert delisted <= set(keys(entries(client, WARNING, as_of=site.day1.isoformat())))

    page = client.get(f"/lists/{WARNING}", params={"status": "removed", "lang": "en"})
    names = re.findall(r'class="entity"[^>]*>([^<]+)<', page.text)
    assert sorted(names) == sorted(e["entity_name"] for e in removed["entries"])
    assert 'class="status removed"' in page.text and 'class="status active"' not in page.text
    assert '<option value="removed" selected>' in page.text


def test_decision_date_range_is_inclusive(client: TestClient) -> None:
    every = entries(client, WARNING, status="all")["entries"]
    decided = sorted({e["decided_on"] for e in every if e["decided_on"]})
    low, high = decided[2], decided[-3]
    expected = {
        e["record_key"] for e in every if e["decided_on"] and low <= e["decided_on"] <= high
    }
    ranged = entries(client, WARNING, status="all", **{"from": low, "to": high})
    assert set(keys(ranged)) == expected and 0 < len(expected) < len(every)
    assert ranged["filters"]["decided_from"] == low and ranged["filters"]["decided_to"] == high
    assert {e["decided_on"] for e in ranged["entries"]} >= {low, high}  # both bounds included
    only_from = entries(client, WARNING, status="all", **{"from": high})
    assert set(keys(only_from)) == {
        e["record_key"] for e in every if (e["decided_on"] or "") >= high
    }
    assert entries(client, WARNING, **{"from": high, "to": low})["total"] == 0
    page = client.get(f"/lists/{WARNING}", params={"status": "all", "from": low, "to": high})
    assert len(re.findall(r'class="entity"', page.text)) == len(expected)
    # Empty fields, as a GET form sends them, are no filter.
    blank = client.get(
        f"/lists/{WARNING}", params={"q": "", "status": "", "from": "", "to": "", "as_of": ""}
    )
    assert blank.status_code == 200
    assert len(re.findall(r'class="entity"', blank.text)) == entries(client, WARNING)["total"]


def test_as_of_day_one_is_the_list_day_one_showed(client: TestClient, site: Site) -> None:
    then = entries(client, WARNING, as_of=site.day1.isoformat())
    expected, vouches, _ = stored(site, "xmtravel", site.day1)
    expected = [r for r in expected if r["list"] == WARNING]
    assert then["entries"] == jsonable_encoder(expected)
    assert then["run"]["run_id"] == vouches[WARNING].run_id == site.first_run
    now = entries(client, WARNING)
    added = set(keys(now)) - set(keys(then))
    assert added and all(
        e["first_seen"].startswith(site.day2.isoformat())
        for e in now["entries"]
        if e["record_key"] in added
    )
    # Day 2 and any later date answer with the day-2 run; before the first run, nothing.
    later = entries(client, WARNING, as_of=(site.day2 + timedelta(days=30)).isoformat())
    assert keys(later) == keys(now) and later["run"]["run_id"] == site.second_run
    before = entries(client, WARNING, as_of=(site.day1 - timedelta(days=1)).isoformat())
    assert before["run"] is None and before["total"] == 0 and before["entries"] == []

    page = client.get(f"/lists/{WARNING}", params={"as_of": site.day1.isoformat(), "lang": "en"})
    assert f"The list as it stood on {site.day1.isoformat()}" in page.text
    assert f"as shown by run {site.first_run}" in page.text
    assert f"{len(expected)} entries" in page.text
    shown = re.findall(r'class="entity"[^>]*>([^<]+)<', page.text)
    assert sorted(shown) == sorted(html.escape(r["entity_name"], quote=True) for r in expected)
    empty = client.get(f"/lists/{WARNING}", params={"as_of": "2000-01-01", "lang": "en"})
    assert empty.status_code == 200 and "No healthy run on or before that date" in empty.text


def test_every_list_on_every_date_is_what_the_store_rebuilds(
    client: TestClient, site: Site
) -> None:
    """The API's entries are exactly ``records_as_of`` for each list, status and date: the
    day before the first run, each run's day, and now."""
    for source, (day1, day2) in site.days.items():
        for as_of in (day1 - timedelta(days=1), day1, day2, None):
            for status, include_removed in (("", False), ("all", True)):
                expected, vouches, _ = stored(site, source, as_of, include_removed=include_removed)
                for list_id in get_source(source).list_ids:
                    params = {"status": status, "as_of": as_of.isoformat() if as_of else ""}
                    answer = entries(client, list_id, **params)
                    mine = [r for r in expected if r["list"] == list_id]
                    assert answer["entries"] == jsonable_encoder(mine), (list_id, as_of, status)
                    assert answer["total"] == len(mine)
                    run = vouches[list_id].run_id if list_id in vouches else None
                    assert (answer["run"] or {}).get("run_id") == run, (list_id, as_of)
    removed = entries(client, BLACKLIST, status="removed")["entries"]
    assert (
        removed
        and entries(
            client, BLACKLIST, status="removed", as_of=site.days["mct_tourism"][0].isoformat()
        )["entries"]
        == []
    )


def test_pages_cover_the_list_once_and_links_keep_the_filters(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    every = entries(client, WARNING, status="all")
    pages = [entries(client, WARNING, status="all", per_page=7, page=n) for n in range(1, 6)]
    assert pages[0]["pages"] == -(-every["total"] // 7) == 4
    assert all(p["total"] == every["total"] for p in pages)
    assert [k for p in pages for k in keys(p)] == keys(every)
    assert [len(p["entries"]) for p in pages] == [7, 7, 7, every["total"] - 21, 0]
    assert client.get(f"/api/lists/{WARNING}/entries", params={"per_page": 501}).status_code == 422

    whole = client.get(f"/lists/{WARNING}", params={"status": "all"})
    assert 'rel="next"' not in whole.text and 'rel="prev"' not in whole.text  # one page

    monkeypatch.setattr("web.routes.lists.PER_PAGE", 4)  # HTML pages of 4 entries
    params = {"q": "厦门", "status": "all"}
    matching = keys(entries(client, WARNING, **params))
    assert len(matching) > 8
    second = client.get(f"/lists/{WARNING}", params={**params, "page": 2, "lang": "en"})
    assert f"{len(matching)} entries · page 2 of {-(-len(matching) // 4)}" in second.text
    links = {a.get("rel"): a["href"] or "" for a in Tags(second.text).of("a") if a.get("rel")}
    assert set(links) == {"prev", "next"}
    for rel, number in (("prev", 1), ("next", 3)):
        assert f"page={number}" in links[rel] and "status=all" in links[rel], rel
        assert "q=%E5%8E%A6%E9%97%A8" in links[rel], rel  # the query survives paging
    third = client.get(links["next"])
    shown = re.findall(r'class="entity" href="/entities/([^"]+)"', third.text)
    expected = entries(client, WARNING, **params, per_page=4, page=3)["entries"]
    assert shown == [e["entity_id"] for e in expected] and len(shown) == 4


def test_bad_input_gets_a_clear_answer_and_unknown_things_404(client: TestClient) -> None:
    bad = client.get(f"/lists/{WARNING}", params={"from": "yesterday", "lang": "en"})
    assert bad.status_code == 422 and bad.headers["content-type"].startswith("text/html")
    assert "Bad request" in bad.text and "YYYY-MM-DD" in bad.text and "yesterday" in bad.text
    assert_html_headers(bad, "422")
    for params in ({"as_of": "2025-02-30"}, {"to": "22/11/2025"}, {"status": "gone"}, {"page": 0}):
        assert client.get(f"/lists/{WARNING}", params=params).status_code == 422, params
        api = client.get(f"/api/lists/{WARNING}/entries", params=params)
        assert api.status_code == 422 and api.json()["detail"], params
    for path in ("/lists/nosuch.list", "/lists/xmtravel.nosuch", "/lists/xmtravel"):
        missing = client.get(path, params={"lang": "en"})
        assert missing.status_code == 404 and "Not found" in missing.text, path
    api = client.get("/api/lists/xmtravel.nosuch/entries")
    assert api.status_code == 404 and "xmtravel.nosuch" in api.json()["detail"]


# -- entities -----------------------------------------------------------------------------------


def test_entity_page_shows_entries_in_every_list_and_events_over_time(
    client: TestClient, site: Site
) -> None:
    answer = client.get(f"/api/entities/{JIAHE}").json()
    assert answer["entity_id"] == JIAHE and answer["entity_name"] == "厦门嘉禾酒店有限公司"
    assert {r["list"] for r in answer["records"]} == {WARNING, GOOD}
    assert all(set(r) == set(RECORD_FIELDS) for r in answer["records"])
    kinds = [(e["event"], e["run_id"]) for e in answer["events"]]
    assert ("modified", site.second_run) in kinds
    assert [e["at"] for e in answer["events"]] == sorted(e["at"] for e in answer["events"])
    assert all(set(e) == set(EVENT_FIELDS) for e in answer["events"])
    modified = next(e for e in answer["events"] if e["event"] == "modified")
    assert modified["changes"]

    page = client.get(f"/entities/{JIAHE}", params={"lang": "en"})
    assert page.status_code == 200 and "厦门嘉禾酒店有限公司" in page.text
    for list_id in (WARNING, GOOD):
        assert f'href="/lists/{list_id}"' in page.text
        assert get_source("xmtravel").list(list_id).name_en in page.text
    assert page.text.count('class="event ') == len(answer["events"])
    assert 'class="event modified"' in page.text and "Changes (old → new)" in page.text
    for name in modified["changes"]:
        assert f'<span class="field">{FIELDS["en"][name]}</span>' in page.text, name
    raw = {a["href"] for a in Tags(page.text).of("a") if a.get("class") == "raw-link"}
    assert {f"/raw/{r['raw_sha256']}" for r in answer["records"]} <= raw

    # A delisted entry stays in the entity's history, with its listing and delisting.
    huli = client.get(f"/api/entities/{HULI}").json()
    statuses = sorted(r["status"] for r in huli["records"])
    assert statuses == ["active", "expired", "removed"]
    events = [(e["event"], e["record_key"]) for e in huli["events"]]
    removed = next(r["record_key"] for r in huli["records"] if r["status"] == "removed")
    assert ("listed", removed) in events and ("delisted", removed) in events
    assert events.index(("listed", removed)) < events.index(("delisted", removed))
    huli_page = client.get(f"/entities/{HULI}", params={"lang": "en"}).text
    assert "absent from consecutive healthy runs" in huli_page  # the delisting's cause

    for path in ("/entities/no-such-entity", "/api/entities/no-such-entity"):
        assert client.get(path).status_code == 404, path


# -- snapshots ----------------------------------------------------------------------------------


def test_snapshots_page_manifest_and_downloads_that_verify(client: TestClient, site: Site) -> None:
    page = client.get("/snapshots", params={"lang": "en"})
    assert page.status_code == 200
    assert 'id="snapshot-xm-csv"' in page.text and 'id="snapshot-all-redacted"' in page.text
    manifest = client.get(f"/snapshots/xm-csv/{MANIFEST}")
    assert manifest.status_code == 200 and manifest.headers["content-type"] == "application/json"
    assert manifest.json() == json.loads((site.snapshots / "xm-csv" / MANIFEST).read_text("utf-8"))
    files = manifest.json()["files"]
    assert {f["path"] for f in files} >= {"xmtravel.warning.csv", "xmtravel.good.csv"}
    links = {a["href"] for a in Tags(page.text).of("a") if a.get("class") == "download"}
    for item in files:
        assert f"/snapshots/xm-csv/{item['path']}" in links
        assert item["sha256"] in page.text
        body = client.get(f"/snapshots/xm-csv/{item['path']}")
        assert body.status_code == 200
        assert body.headers["content-disposition"].startswith("attachment")
        assert "sandbox" in body.headers["content-security-policy"]
        assert hashlib.sha256(body.content).hexdigest() == item["sha256"]
        assert len(body.content) == item["bytes"]
    warning_rows = next(f["rows"] for f in files if f["path"] == "xmtravel.warning.csv")
    assert warning_rows == entries(client, WARNING)["total"]

    listed = {s["name"]: s for s in client.get("/api/snapshots").json()}
    assert set(listed) == {"xm-csv", "all-redacted"}
    xm = listed["xm-csv"]
    assert xm["downloadable"] and xm["manifest"] == manifest.json() and xm["error"] is None
    assert xm["manifest_url"] == f"/snapshots/xm-csv/{MANIFEST}"
    assert [f["url"] for f in xm["files"]] == [f"/snapshots/xm-csv/{f['path']}" for f in files]
    assert listed["all-redacted"]["manifest"]["redacted"] is True


def test_snapshot_paths_cannot_leave_the_snapshots(site: Site, tmp_path: Path) -> None:
    """Traversal by name or file, symlinks out of the directory, files the manifest does not
    name, and a manifest that is not one."""
    root = tmp_path / "snapshots"
    (root / "good").mkdir(parents=True)
    secret = tmp_path / "secret.txt"
    secret.write_text("not for download", encoding="utf-8")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("outside", encoding="utf-8")
    forged = {"files": [{"path": "secret.txt"}, {"path": "link.txt"}, {"path": "../secret.txt"}]}
    for folder in (root / "good", outside):
        (folder / MANIFEST).write_text(json.dumps(forged), encoding="utf-8")
    (root / "good" / "link.txt").symlink_to(secret)
    (root / "good" / "unlisted.txt").write_text("here but not in the manifest", encoding="utf-8")
    (root / "escape").symlink_to(outside, target_is_directory=True)
    (root / "broken").mkdir()
    (root / "broken" / MANIFEST).write_text("{not json", encoding="utf-8")
    client = TestClient(create_app(database_url=site.url, snapshots_dir=root))

    for path in (
        "/snapshots/good/link.txt",  # named, but a symlink out of the snapshot
        "/snapshots/good/secret.txt",  # named, absent
        "/snapshots/good/unlisted.txt",  # present, not named
        "/snapshots/good/..%2Fsecret.txt",
        "/snapshots/good/%2E%2E%2Fsecret.txt",
        "/snapshots/escape/secret.txt",  # a snapshot that is a symlink out of the directory
        f"/snapshots/escape/{MANIFEST}",
        f"/snapshots/%2E%2E/{MANIFEST}",
        f"/snapshots/..%2Fsnapshots%2Fgood/{MANIFEST}",
        "/snapshots/broken/anything.csv",
        f"/snapshots/nosuch/{MANIFEST}",
    ):
        answer = client.get(path)
        assert answer.status_code == 404, path
        assert b"not for download" not in answer.content and b"outside" not in answer.content
    assert client.get(f"/snapshots/good/{MANIFEST}").json() == forged

    listed = {s["name"]: s for s in client.get("/api/snapshots").json()}
    assert listed["broken"]["error"] and listed["broken"]["downloadable"] is False
    page = client.get("/snapshots", params={"lang": "en"})
    assert page.status_code == 200 and "unreadable manifest" in page.text
    empty = TestClient(create_app(database_url=site.url, snapshots_dir=tmp_path / "none"))
    assert empty.get("/api/snapshots").json() == []
    assert "No snapshots found." in empty.get("/snapshots", params={"lang": "en"}).text


# -- the Chinese UI: times, errors, the API page, snapshots, list kinds ---------------------------


def test_times_are_beijing_time_with_the_zone_named(client: TestClient, site: Site) -> None:
    [row] = [r for r in entries(client, WARNING)["entries"] if r["uscc"] == JIAHE_USCC]
    first_seen = datetime.fromisoformat(row["first_seen"]).astimezone(SHANGHAI)
    shown = first_seen.strftime("%Y-%m-%d %H:%M")
    stamp = f'<time datetime="{first_seen.isoformat()}">'
    for lang, zone in (("zh", "北京时间"), ("en", "UTC+8")):
        page = client.get(f"/entities/{JIAHE}", params={"lang": lang}).text
        assert f"{stamp}{shown} {zone}</time>" in page, lang
        # Every instant of the page is one of these, none a bare ISO stamp.
        text = re.sub(r"<time [^>]*>.*?</time>", "", page)
        assert not re.search(r"\d{4}-\d\d-\d\dT\d\d:\d\d", html.unescape(text)), lang
    index = client.get("/", params={"lang": "zh"}).text
    xm = index[index.index('id="source-xmtravel"') :]
    assert re.search(r"<time [^>]*>\d{4}-\d\d-\d\d \d\d:\d\d 北京时间</time>", xm)


def test_error_pages_speak_the_readers_language(client: TestClient) -> None:
    zh = client.get(f"/lists/{WARNING}", params={"from": "yesterday", "lang": "zh"})
    assert zh.status_code == 422
    assert f"<h1>{LABELS['zh']['bad_request']}</h1>" in zh.text
    assert LABELS["zh"]["ui_error_hint_422"] in html.unescape(zh.text)
    # The route's English detail is kept, folded away and marked as English.
    folded = re.search(r'<details class="error-detail" lang="en">(.*?)</details>', zh.text, re.S)
    assert folded and "yesterday" in html.unescape(folded.group(1))
    main = zh.text[zh.text.index("<main>") :]
    assert "yesterday" not in html.unescape(main.replace(folded.group(0), ""))
    en = client.get(f"/lists/{WARNING}", params={"from": "yesterday", "lang": "en"})
    assert '<p class="error-detail">' in en.text and "<details" not in en.text
    for path, status, title in (
        ("/lists/xmtravel.nosuch", 404, "not_found"),
        ("/entities/nobody", 404, "not_found"),
        ("/lists/a%00b", 400, "bad_request"),
    ):
        page = client.get(path, params={"lang": "zh"})
        assert page.status_code == status, path
        assert f"<h1>{LABELS['zh'][title]}</h1>" in page.text, path
        assert LABELS["zh"][f"ui_error_hint_{status}"] in page.text, path
        assert LABELS["zh"]["ui_error_status"].format(status=status) in page.text, path
    refused = client.post("/", params={"lang": "zh"})
    assert refused.status_code == 405 and LABELS["zh"]["ui_error_method"] in refused.text


def test_the_api_page_describes_every_operation_in_chinese(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    page = client.get("/api", params={"lang": "zh"}).text
    assert 'lang="en"' not in page[page.index("<main>") :]  # no English fallback
    assert schema["info"]["description"].splitlines()[0] not in page
    translator = Translator("zh")
    sections = re.findall(r'<section class="endpoint">(.*?)</section>', page, re.S)
    operations = [(m, p, op) for p, ops in schema["paths"].items() for m, op in ops.items()]
    assert len(sections) == len(operations) >= 7
    for section, (method, path, op) in zip(sections, operations, strict=True):
        summary, known = translator.operation(method, path, op.get("summary"))
        assert known and summary != op.get("summary"), path
        assert html.unescape(re.sub(r"</?code>", "`", section)).count(summary) == 1, path
        for parameter in op.get("parameters", []):
            described, found = translator.parameter(
                parameter["name"], parameter.get("description"), method, path
            )
            assert found and described != parameter.get("description"), (path, parameter)
    # The same words name different dates on different routes.
    assert (
        translator.parameter("from", None, "get", "/api/events")[0]
        != (translator.parameter("from", None, "get", "/api/lists/{list_id}/entries")[0])
    )
    english = client.get("/api", params={"lang": "en"}).text
    assert schema["info"]["summary"] in html.unescape(english)


def test_snapshots_page_has_no_english_in_chinese(client: TestClient, tmp_path: Path) -> None:
    page = client.get("/snapshots", params={"lang": "zh"}).text
    xm = page[page.index('id="snapshot-xm-csv"') :]
    assert f"<dd>{LABELS['zh']['ui_no']}</dd>" in xm[: xm.index("</dl>")]
    redacted = page[page.index('id="snapshot-all-redacted"') :]
    assert f"<dd>{LABELS['zh']['ui_yes']}</dd>" in redacted[: redacted.index("</dl>")]
    assert "<code>manifest.json</code>" in page
    assert 'data-label="SHA-256"' in page and 'class="files cards"' in page


def test_honours_are_styled_apart_from_blacklists(client: TestClient) -> None:
    index = client.get("/", params={"lang": "zh"}).text
    for list_id in (GOOD, WARNING, BLACKLIST):
        source, _ = list_id.split(".")
        kind = next(lst.list_kind for lst in get_source(source).lists if lst.id == list_id)
        row = re.search(
            rf'<tr id="list-{re.escape(list_id)}" class="kind-(\w+)">(.*?)</tr>', index, re.S
        )
        assert row and row.group(1) == kind, list_id
        badge = f'<span class="kind {kind}">{word("list_kind", kind, "zh")}</span>'
        assert badge in row.group(2), list_id
    assert {
        lst: next(x.list_kind for x in get_source(lst.split(".")[0]).lists if x.id == lst)
        for lst in (GOOD, BLACKLIST)
    } == {GOOD: "good", BLACKLIST: "blacklist"}
    entity = client.get(f"/entities/{JIAHE}", params={"lang": "zh"}).text
    listings = re.findall(r'<tr class="listing (\w+) kind-(\w+)">', entity)
    assert {kind for _, kind in listings} == {"good", "warning"}
    css = (Path(__file__).resolve().parents[1] / "web" / "static" / "style.css").read_text()
    honours = re.search(r"\.kind\.redlist, \.kind\.good \{ color: ([^;]+);", css)
    black = re.search(r"\.kind\.blacklist \{ color: ([^;]+);", css)
    assert honours and black and honours.group(1) != black.group(1)


# -- the JSON API and its description ------------------------------------------------------------


def test_api_shapes_and_their_description(client: TestClient) -> None:
    sources = client.get("/api/sources").json()
    assert [s["id"] for s in sources] == sorted(s["id"] for s in sources)
    xm = next(s for s in sources if s["id"] == "xmtravel")
    assert set(xm) == {
        "id",
        "name_zh",
        "name_en",
        "jurisdiction",
        "base_url",
        "latest_run",
        "lists",
    }
    assert [lst["id"] for lst in xm["lists"]] == list(get_source("xmtravel").list_ids)
    assert xm["lists"][0]["url"] == f"/lists/{xm['lists'][0]['id']}"

    page = entries(client, WARNING, q="厦门", per_page=3, page=2)
    assert set(page) == {
        "list", "filters", "run", "total", "page", "per_page", "pages", "redacted", "entries",
    }  # fmt: skip
    assert page["page"] == 2 and page["per_page"] == 3 and page["redacted"] is False
    assert page["list"]["id"] == WARNING and page["filters"]["q"] == "厦门"
    assert all(set(e) == set(RECORD_FIELDS) for e in page["entries"])

    entity = client.get(f"/api/entities/{HULI}").json()
    assert set(entity) == {
        "entity_id",
        "entity_name",
        "entity_type",
        "redacted",
        "records",
        "events",
        "listings",
    }
    assert client.get("/api/entities/nope").json() == {"detail": "no such entity"}

    schema = client.get("/openapi.json").json()
    paths = schema["paths"]
    for path in (
        "/api/sources",
        "/api/lists/{list_id}/entries",
        "/api/entities/{entity_id}",
        "/api/snapshots",
        "/raw/{sha}/body",
        "/snapshots/{name}/{file}",
        "/feeds/{subscription_id}.atom",
    ):
        assert path in paths and paths[path]["get"]["summary"], path
    assert not [p for p in paths if p in ("/", "/lists/{list_id}", "/raw/{sha}")]
    parameters = {p["name"] for p in paths["/api/lists/{list_id}/entries"]["get"]["parameters"]}
    assert parameters == {
        "list_id", "q", "status", "from", "to", "as_of", "sort", "dir", "page", "per_page",
    }  # fmt: skip
    answer = paths["/api/lists/{list_id}/entries"]["get"]["responses"]["200"]
    assert answer["content"]["application/json"]["schema"]["$ref"].endswith("/EntriesPage")
    assert {"EntriesPage", "SourceSummary", "EntityAnswer", "SnapshotInfo"} <= set(
        schema["components"]["schemas"]
    )

    described = client.get("/api", params={"lang": "en"})
    assert described.status_code == 200 and 'href="/openapi.json"' in described.text
    for path, operations in paths.items():
        assert f"GET {path}" in html.unescape(described.text), path
        for parameter in operations["get"].get("parameters", []):
            assert f'<th class="code">{parameter["name"]}</th>' in described.text
    # No Swagger UI or ReDoc: they would load scripts from a CDN.
    assert client.get("/docs").status_code == 404 and client.get("/redoc").status_code == 404


# -- archived responses -------------------------------------------------------------------------


def test_archived_response_is_shown_as_received_under_a_banner(
    client: TestClient, site: Site
) -> None:
    record = next(e for e in entries(client, WARNING)["entries"] if e["uscc"] == JIAHE_USCC)
    sha = record["raw_sha256"]
    with get_engine(site.url).connect() as conn:
        archived = get_response(conn, sha)
    for lang in ("en", "zh"):
        page = client.get(f"/raw/{sha}", params={"lang": lang})
        assert page.status_code == 200
        assert LABELS[lang]["raw_banner"] in html.unescape(page.text)
        assert page.headers["content-security-policy"] == RAW_CSP
        assert_html_headers(page, f"/raw/{sha}")
    banner = page.text[page.text.index('id="archive-banner"') :]
    assert archived.url in html.unescape(banner) and sha in banner
    [frame] = Tags(page.text).of("iframe")
    assert frame["sandbox"] == ""  # no scripts, no forms, no same-origin access
    # The body in the portal's charset (GBK), decoded, is what the frame shows.
    assert record["entity_name"] in (frame["srcdoc"] or "")
    source = client.get(f"/raw/{sha[:12]}", params={"view": "source"})
    assert source.status_code == 200 and 'id="archived-source"' in source.text
    assert not Tags(source.text).of("iframe") and record["entity_name"] in source.text

    body = client.get(f"/raw/{sha}/body")
    assert body.status_code == 200 and body.content == archived.body
    assert hashlib.sha256(body.content).hexdigest() == sha
    assert body.headers["content-disposition"] == f'attachment; filename="{sha}.bin"'
    assert body.headers["content-security-policy"] == "default-src 'none'; sandbox"

    attachment = next(
        e
        for e in entries(client, BLACKLIST, status="all")["entries"]
        if e["source_url"].endswith(".xlsx")
    )
    binary = client.get(f"/raw/{attachment['raw_sha256']}", params={"lang": "en"})
    assert binary.status_code == 200 and "Binary content" in binary.text
    assert not Tags(binary.text).of("iframe")
    download = client.get(f"/raw/{attachment['raw_sha256']}/body")
    assert download.content[:2] == b"PK"  # the xlsx, byte for byte
    assert hashlib.sha256(download.content).hexdigest() == attachment["raw_sha256"]

    for missing in ("zzzzzz", "abc", "0" * 64, sha + "0"):
        assert client.get(f"/raw/{missing}").status_code == 404, missing
        assert client.get(f"/raw/{missing}/body").status_code == 404, missing


def test_a_hostile_archived_page_stays_inert(client: TestClient, site: Site) -> None:
    for view in ("page", "source"):
        page = client.get(f"/raw/{site.hostile_sha}", params={"view": view})
        assert page.status_code == 200
        policy = page.headers["content-security-policy"]
        assert "script-src" not in policy and "default-src 'none'" in policy
        assert "'unsafe-eval'" not in policy and "connect-src" not in policy
        assert "<script" not in page.text.lower() and "<img" not in page.text.lower()
        assert_inert(page.text, view)
        # The archived URL is a javascript: URL: shown as text, never a link.
        assert HOSTILE_RAW_URL in html.unescape(page.text)
        assert not [h for h in Tags(page.text).hrefs() if "javascript" in h.lower()]
        assert "&lt;script&gt;alert(&#39;header&#39;)&lt;/script&gt;" in page.text
    frames = Tags(client.get(f"/raw/{site.hostile_sha}").text).of("iframe")
    assert len(frames) == 1 and frames[0]["sandbox"] == ""
    assert frames[0]["srcdoc"] == HOSTILE_BODY.decode()  # escaped in the attribute, intact
    assert client.get(f"/raw/{site.hostile_sha}/body").content == HOSTILE_BODY


# -- feeds --------------------------------------------------------------------------------------


def test_a_subscription_feed_is_atom_with_its_alerts(client: TestClient) -> None:
    answer = client.get("/feeds/jiahe.atom")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("application/atom+xml")
    feed = feedparser.parse(answer.content)
    assert not feed.bozo, feed.bozo_exception
    assert feed.feed.id == "urn:creditwatch:subscription:jiahe"
    [entry] = feed.entries  # day 2 modified 厦门嘉禾酒店有限公司; day 1 was the baseline
    assert "厦门嘉禾酒店有限公司" in entry.title and "modified" in entry.title.lower()
    assert client.get("/feeds/nobody.atom").status_code == 404
    assert client.get("/feeds/jiahe.rss").status_code == 404


# -- redaction ----------------------------------------------------------------------------------


def person_secrets(site: Site) -> tuple[list[dict[str, Any]], set[str]]:
    """The persons of both sources and what must never be shown of them while redacting:
    full names, masked ID numbers, keys that spell them out and real entity ids; and the
    legal representatives' names (persons too, one of them also listed as a tour guide)."""
    people: list[dict[str, Any]] = []
    representatives: set[str] = set()
    for source in ("xmtravel", "mct_tourism"):
        records, _, _ = stored(site, source, include_removed=True)
        people += [r for r in records if r["entity_type"] == "person"]
        representatives |= {r["legal_representative"] for r in records if r["legal_representative"]}
    secrets = {p["id_number_masked"] for p in people if p["id_number_masked"]}
    secrets |= {p["entity_id"] for p in people}
    secrets |= {p["record_key"] for p in people if p["entity_name"] in p["record_key"]}
    secrets |= {p["entity_name"] for p in people} | representatives
    assert len(people) >= 10 and len(representatives) >= 8
    assert {p["entity_name"] for p in people} & representatives  # the guide who is both
    return people, secrets


def test_a_redacting_server_never_shows_a_persons_full_name(
    site: Site, redacting: TestClient
) -> None:
    people, secrets = person_secrets(site)
    starts = ["/", "/api/sources", "/snapshots", "/api/snapshots", "/api"]
    for list_id in (WARNING, GOOD, BLACKLIST):
        starts += [f"/lists/{list_id}?status=all", f"/api/lists/{list_id}/entries?status=all"]
        starts.append(f"/lists/{list_id}?as_of={site.day1.isoformat()}&status=all")
    visited: dict[int, list[str]] = {}
    for path, answer in crawl(redacting, starts):
        visited.setdefault(answer.status_code, []).append(path)
        shown = answer.content.decode("utf-8", "replace")
        leaked = sorted(secret for secret in secrets if secret in shown)
        assert not leaked, (path, leaked)
    assert not set(visited) - {200, 403, 404}, visited
    pseudonymous = [p for p in visited[200] if p.startswith("/entities/redacted:")]
    assert len({p.split("?")[0] for p in pseudonymous}) >= len({p["entity_id"] for p in people})
    assert len(visited[200]) > 100  # the crawl reached the lists, entities and snapshots

    # Entries: names shortened, masked ID numbers dropped, keys pseudonymous.
    shown = entries(redacting, BLACKLIST, status="all")
    assert shown["redacted"] is True
    assert shown["total"] == sum(1 for p in people if p["list"] == BLACKLIST)
    for entry in shown["entries"]:
        assert entry["id_number_masked"] is None and entry["entity_name_key"] is None
        assert entry["entity_id"].startswith("redacted:")
        assert entry["record_key"].startswith("redacted:")
    assert {e["entity_name"] for e in shown["entries"]} == {
        short_name(p["entity_name"]) for p in people if p["list"] == BLACKLIST
    }
    companies = entries(redacting, WARNING, q=JIAHE_USCC)["entries"]
    assert companies and companies[0]["entity_name"] == "厦门嘉禾酒店有限公司"  # unchanged

    # A person's entity answers only at its pseudonym.
    person = next(p for p in people if p["list"] == GOOD and p["status"] == "active")
    for prefix in ("/entities/", "/api/entities/"):
        assert redacting.get(prefix + person["entity_id"]).status_code == 404
    alias = pseudonym(person["entity_id"])
    answer = redacting.get(f"/api/entities/{alias}").json()
    assert answer["entity_id"] == alias and answer["entity_type"] == "person"
    assert answer["entity_name"] == short_name(person["entity_name"]) and answer["redacted"]
    assert {r["list"] for r in answer["records"]} == {WARNING, GOOD}  # a guide on both lists
    assert all(r["id_number_masked"] is None for r in answer["records"])
    assert redacting.get(f"/api/entities/redacted:{'0' * 16}").status_code == 404
    company_alias = pseudonym(JIAHE)  # only persons have pseudonyms
    assert redacting.get(f"/api/entities/{company_alias}").status_code == 404
    assert redacting.get(f"/api/entities/{JIAHE}").status_code == 200

    # Searching by a full name finds nothing: search runs over what is shown.
    for p in people:
        if p["entity_name"] in secrets:
            assert entries(redacting, p["list"], q=p["entity_name"], status="all")["total"] == 0


def test_a_redacting_server_withholds_raw_pages_and_unredacted_snapshots(
    site: Site, redacting: TestClient
) -> None:
    _, secrets = person_secrets(site)
    index = redacting.get("/", params={"lang": "en"})
    assert 'id="redaction-notice"' in index.text
    record = entries(redacting, BLACKLIST, status="all")["entries"][0]
    for path in (f"/raw/{record['raw_sha256']}", f"/raw/{record['raw_sha256']}/body"):
        refused = redacting.get(path, params={"lang": "en"})
        assert refused.status_code == 403, path
        assert not [secret for secret in secrets if secret in refused.text], path
    assert redacting.get(f"/raw/{site.hostile_sha}").status_code == 403
    entity = redacting.get(f"/entities/{record['entity_id']}", params={"lang": "en"}).text
    assert "/raw/" not in entity and "(withheld while redacting)" in entity

    offered = {s["name"]: s for s in redacting.get("/api/snapshots").json()}
    assert not offered["xm-csv"]["downloadable"]
    assert all(f["url"] is None for f in offered["xm-csv"]["files"])
    for item in offered["xm-csv"]["files"]:
        assert redacting.get(f"/snapshots/xm-csv/{item['path']}").status_code == 403
    page = redacting.get("/snapshots", params={"lang": "en"}).text
    assert "Unredacted snapshots are not offered while redacting." in page
    assert 'href="/snapshots/xm-csv/xmtravel.warning.csv"' not in page
    assert offered["all-redacted"]["downloadable"]
    for item in offered["all-redacted"]["files"]:
        assert item["url"] == f"/snapshots/all-redacted/{item['path']}"
        body = redacting.get(item["url"])
        assert body.status_code == 200
        assert hashlib.sha256(body.content).hexdigest() == item["sha256"]
        text = body.content.decode("utf-8")
        assert not [secret for secret in secrets if secret in text], item["path"]


# -- security headers and scraped values --------------------------------------------------------


def test_every_html_page_is_script_free_under_a_strict_policy(client: TestClient) -> None:
    starts = [
        "/",
        "/snapshots",
        "/api",
        f"/lists/{WARNING}?status=all",
        f"/lists/{GOOD}?status=all",
    ]
    starts += ["/nowhere", f"/lists/{WARNING}?from=bad", f"/lists/{BLACKLIST}?status=all"]
    pages = 0
    for path, answer in crawl(client, starts):
        if "attachment" in answer.headers.get("content-disposition", ""):
            assert "sandbox" in answer.headers["content-security-policy"], path
            continue
        assert answer.headers["x-content-type-options"] == "nosniff", path
        if answer.headers["content-type"].startswith("text/html"):
            pages += 1
            assert_html_headers(answer, path)
            if not path.startswith("/raw/"):
                assert answer.headers["content-security-policy"] == CSP, path
            assert_inert(answer.text, path)
    assert pages > 60
    assert client.get("/static/style.css").headers["x-content-type-options"] == "nosniff"


def test_hostile_scraped_values_are_escaped_and_never_linked(
    client: TestClient, site: Site
) -> None:
    assert http_url("javascript:alert(1)") is None
    assert http_url(" JavaScript:alert(1)") is None
    assert http_url("data:text/html,<script>alert(1)</script>") is None
    assert http_url("vbscript:msgbox(1)") is None
    assert http_url("java\tscript:alert(1)") is None
    assert http_url("//example.org/protocol-relative") is None
    assert http_url(None) is None
    assert http_url("https://example.org/a?b=1") == "https://example.org/a?b=1"
    assert http_url("HTTP://example.org/") == "HTTP://example.org/"

    [poisoned] = entries(client, GOOD, q=HOSTILE_USCC)["entries"]
    assert poisoned["entity_name"] == HOSTILE_NAME and poisoned["source_url"] == HOSTILE_URL
    for path in (
        f"/lists/{GOOD}",
        f"/lists/{GOOD}?q={HOSTILE_USCC}",
        f"/entities/{poisoned['entity_id']}",
    ):
        page = client.get(path)
        assert page.status_code == 200, path
        assert str(escape(HOSTILE_NAME)) in page.text, path
        assert_inert(page.text, path)
        assert "<script" not in page.text.lower(), path
        images = Tags(page.text).of("img")  # only the app's own charts, never a scraped one
        assert all(
            i.get("class") == "chart" and (i.get("src") or "").startswith("/charts/")
            for i in images
        ), path
        assert not [h for h in Tags(page.text).hrefs() if "javascript" in h.lower()], path
    entity = client.get(f"/entities/{poisoned['entity_id']}").text
    start = entity.index('id="records"')
    entry_rows = entity[start : entity.index("</table>", start)]
    assert not [a for a in Tags(entry_rows).of("a") if a.get("class") == "source-link"]
    assert HOSTILE_URL in html.unescape(entry_rows)  # shown as text, not a link

    # Paths echo into error pages and the language switch: escaped there too.
    for path in ("/lists/<script>alert(1)</script>", '/entities/"><img src=x onerror=alert(1)>'):
        answer = client.get(path)
        assert answer.status_code == 404, path
        assert_inert(answer.text, path)
        assert "<script" not in answer.text and "<img" not in answer.text, path


# -- PostgreSQL ---------------------------------------------------------------------------------


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_the_app_reads_postgresql_too(db_url: str, tmp_path: Path) -> None:
    first = replay(db_url, FIXTURES / "xmtravel" / "xmtravel-day1.yaml", delist_after=1)
    replay(db_url, FIXTURES / "xmtravel" / "xmtravel-day2.yaml", delist_after=1)
    day1 = run_date(run_row(db_url, first).started_at)
    client = TestClient(create_app(database_url=db_url, snapshots_dir=tmp_path))
    with get_engine(db_url).connect() as conn:
        expected, _, _ = records_as_of(conn, "xmtravel", [WARNING], None)
        everything, _, _ = records_as_of(conn, "xmtravel", [WARNING], None, include_removed=True)
        then, _, _ = records_as_of(conn, "xmtravel", [WARNING], day1)
    assert entries(client, WARNING)["entries"] == jsonable_encoder(expected)
    # Removed entries merged into key order: two result streams open on one connection.
    every = entries(client, WARNING, status="all")["entries"]
    assert every == jsonable_encoder(everything) and len(everything) > len(expected)
    assert entries(client, WARNING, as_of=day1.isoformat())["entries"] == jsonable_encoder(then)
    found = entries(client, WARNING, q="厦文旅执法罚字(2025)第65号")
    assert [e["uscc"] for e in found["entries"]] == [JIAHE_USCC]
    index = client.get("/", params={"lang": "en"})
    assert index.status_code == 200 and 'count-active">' in row_of(index.text, f"list-{WARNING}")
    assert client.get(f"/entities/{JIAHE}").status_code == 200
    sha = expected[0]["raw_sha256"]
    with get_engine(db_url).connect() as conn:
        assert client.get(f"/raw/{sha}/body").content == get_response(conn, sha).body
    # The pseudonym of a person is resolved by a hash computed in PostgreSQL.
    person = next(r for r in expected if r["entity_type"] == "person")
    redacting = TestClient(create_app(database_url=db_url, snapshots_dir=tmp_path, redact=True))
    alias = redacting.get(f"/api/entities/{pseudonym(person['entity_id'])}")
    assert alias.status_code == 200
    assert alias.json()["entity_name"] == short_name(person["entity_name"])
