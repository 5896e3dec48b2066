"""The changes page, ``/api/events`` and ``/changes.atom`` on two replayed days of the Xiamen
portal and of the tourism blacklist (persons), on SQLite and PostgreSQL: day 2's events with
their kinds, causes and entities; each filter narrowing to exactly the events it names (checked
against the event log read back by ``storage.events``); baseline listings hidden by default;
Beijing date boundaries; paging; 422 for unknown values; feeds that parse, link every entry
to its entity page under the configured base URL, and stay well-formed for hostile names;
and a redacting server that shows no person."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from html.parser import HTMLParser
from typing import Any
from urllib.parse import parse_qs, urlsplit

import feedparser
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from core.clock import SHANGHAI
from core.redact import pseudonym
from core.registry import get_source
from storage.engine import get_engine
from storage.events import query_events
from storage.models import Event, Record
from tests.conftest import FIXTURES
from tests.replay_cache import Replay, Replayed
from tests.test_web import GOOD, HULI, JIAHE, WARNING
from web.app import create_app
from web.i18n import FIELDS, LABELS

pytestmark = pytest.mark.replay

BLACKLIST = "mct_tourism.blacklist"
DAYS = (
    Replay(FIXTURES / "xmtravel" / "xmtravel-day1.yaml", delist_after=1),
    Replay(FIXTURES / "xmtravel" / "xmtravel-day2.yaml", delist_after=1),
    Replay(FIXTURES / "mct_tourism" / "mct_tourism-day1.yaml", "mct_tourism", 1),
    Replay(FIXTURES / "mct_tourism" / "mct_tourism-day2.yaml", "mct_tourism", 1),
)
MASKED_ID = re.compile(r"[0-9]{2,}[*＊]{2,}[0-9]*[0-9Xx]")
EVENTS = Event.__table__
COPIED = ("source", "list", "record_key", "entity_id", "entity_name", "run_id")


@dataclass(frozen=True)
class Demo:
    url: str
    runs: list[str]
    client: TestClient

    def log(self) -> list[dict[str, Any]]:
        """Every event as the event log reads back: the reference the pages are held to."""
        with get_engine(self.url).connect() as conn:
            return list(query_events(conn))

    def api(self, **params: Any) -> dict[str, Any]:
        answer = self.client.get("/api/events", params={"per_page": 500, **params})
        assert answer.status_code == 200, answer.text
        return answer.json()


@pytest.fixture
def demo(db_url: str, replayed: Replayed) -> Demo:
    runs = replayed(db_url, *DAYS)
    return Demo(db_url, runs, TestClient(create_app(database_url=db_url)))


def beijing_day(event: dict[str, Any]) -> date:
    return datetime.fromisoformat(event["at"]).astimezone(SHANGHAI).date()


def ids(events: list[dict[str, Any]]) -> set[str]:
    return {e["event_id"] for e in events}


def newest_first(events: list[dict[str, Any]]) -> list[str]:
    return [e["event_id"] for e in events]


class Links(HTMLParser):
    """Every ``<a href>`` of a page, the ``<option>`` texts by select name, and the text."""

    def __init__(self, page: str) -> None:
        super().__init__(convert_charrefs=True)
        self.hrefs: list[str] = []
        self.options: dict[str, list[tuple[str, str]]] = {}
        self._select: str | None = None
        self._option: str | None = None
        self.text: list[str] = []
        self.feed(page)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "a" and a.get("href"):
            self.hrefs.append(str(a["href"]))
        if tag == "select":
            self._select = a.get("name")
            self.options[str(self._select)] = []
        if tag == "option":
            self._option = a.get("value") or ""

    def handle_endtag(self, tag: str) -> None:
        if tag == "select":
            self._select = None

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if self._select and self._option is not None and data.strip():
            self.options[self._select].append((self._option, data.strip()))
            self._option = None


# -- what the page and the API show -------------------------------------------------------------


def test_day_two_events_with_their_kinds_causes_and_entities(demo: Demo) -> None:
    """The API answers the event log's non-baseline events, newest first, in the schema's
    shape; Xiamen's day 2 is there as replayed: 嘉禾 modified (its fine), 湖里 delisted from
    one entry by absence and listed on another."""
    log = demo.log()
    answer = demo.api(source="xmtravel")
    expected = [e for e in log if e["source"] == "xmtravel" and not e["baseline"]]
    assert ids(answer["events"]) == ids(expected) and answer["total"] == len(expected) >= 5
    assert {e["run_id"] for e in answer["events"]} == {demo.runs[1]}  # day 2 only
    by_id = {e["event_id"]: e for e in log}
    assert all(by_id[e["event_id"]] == e for e in answer["events"])  # SCHEMA shape, as stored
    kinds = {(e["entity_id"], e["event"], e["list"], e["cause"]) for e in answer["events"]}
    assert (JIAHE, "modified", WARNING, None) in kinds
    assert {(HULI, "delisted", WARNING, "disappeared"), (HULI, "listed", WARNING, None)} <= kinds
    [modified] = [e for e in answer["events"] if e["event"] == "modified"]
    assert modified["entity_id"] == JIAHE and modified["changes"]["fine_yuan"] == [10000, 50000]
    ats = [e["at"] for e in demo.api()["events"]]
    assert ats == sorted(ats, reverse=True)  # newest first: the blacklist's later day leads


def test_the_page_shows_each_change_with_its_links_in_words(demo: Demo) -> None:
    answer = demo.client.get("/changes", params={"source": "xmtravel", "lang": "en"})
    assert answer.status_code == 200
    page = Links(answer.text)
    events = demo.api(source="xmtravel")["events"]
    for e in events:
        assert f'id="event-{e["event_id"]}"' in answer.text
        assert f"/entities/{e['entity_id']}" in page.hrefs
        assert f"/lists/{e['list']}" in page.hrefs
        evidence = e["evidence"]
        pages = evidence.get("list_pages", [])
        shas = [evidence.get("raw_sha256"), *(p["raw_sha256"] for p in pages)]
        urls = [evidence.get("source_url"), *(p["url"] for p in pages)]
        assert {f"/raw/{sha}" for sha in shas if sha} <= set(page.hrefs)
        assert {u for u in urls if u} <= set(page.hrefs)  # the portal's http URLs
    text = " ".join("".join(page.text).split())
    en = LABELS["en"]
    assert "absent from consecutive healthy runs of the list" in text  # the cause in words
    assert f"{FIELDS['en']['fine_yuan']}: 10000 → 50000" in text
    assert "10:00" in text and "02:00" not in text  # Beijing time (the runs ran at 02:00 UTC)
    assert en["changes_results"].format(n=len(events)) in text
    # Select boxes name sources, lists, kinds and causes in the reader's language, never ids.
    assert ("xmtravel", "Xiamen Tourism Credit Information Platform") in page.options["source"]
    assert (GOOD, "Good conduct (honours)") in page.options["list"]
    assert ("delisted", "delisted") in page.options["event"]
    assert ("disappeared", "absent from consecutive healthy runs of the list") in page.options[
        "cause"
    ]
    zh = Links(demo.client.get("/changes", params={"lang": "zh"}).text)
    assert ("xmtravel", get_source("xmtravel").name_zh) in zh.options["source"]
    assert all(label != value for value, label in zh.options["list"])
    assert ("delisted", "移出") in zh.options["event"]
    # Its feed, with the same filters, is linked from the page.
    assert "/changes.atom?source=xmtravel&lang=en" in page.hrefs


def test_no_matching_change_says_so(demo: Demo) -> None:
    answer = demo.client.get(
        "/changes", params={"list": GOOD, "cause": "published_removal", "lang": "en"}
    )
    assert answer.status_code == 200
    assert LABELS["en"]["changes_none"] in answer.text and 'id="changes"' not in answer.text
    assert demo.api(list=GOOD, cause="published_removal")["total"] == 0


# -- filters ------------------------------------------------------------------------------------


# Each filter, and the events it must keep (the fields it names, equal).
FILTERS: list[dict[str, str]] = [
    {"source": "mct_tourism"},
    {"list": GOOD},
    {"list": WARNING, "event": "listed"},
    {"event": "delisted"},
    {"event": "modified"},
    {"cause": "disappeared"},
    {"cause": "published_removal"},
    {"cause": "expired"},
    {"source": "xmtravel", "event": "delisted"},
]


def test_each_filter_narrows_to_exactly_its_events(demo: Demo) -> None:
    log = [e for e in demo.log() if not e["baseline"]]
    everything = demo.api()
    assert ids(everything["events"]) == ids(log)
    for params in FILTERS:
        expected = [e for e in log if all(e[name] == value for name, value in params.items())]
        answer = demo.api(**params)
        assert expected and len(expected) < len(log), params  # each one narrows
        assert ids(answer["events"]) == ids(expected), params
        assert answer["total"] == len(expected), params
        assert {k: v for k, v in answer["filters"].items() if v} == params, params
        page = demo.client.get("/changes", params=params)
        assert page.status_code == 200
        shown = set(re.findall(r'id="event-([0-9a-f]+)"', page.text))
        assert shown == ids(expected), params
    # A source and a list of another source: nothing, not an error.
    assert demo.api(source="mct_tourism", list=GOOD)["total"] == 0


def test_dates_are_beijing_dates_inclusive(demo: Demo) -> None:
    """An event at 16:30 UTC belongs to the next Beijing day; the last second of a Beijing
    day is in it, its midnight is not."""
    log = demo.log()
    day1 = beijing_day(next(e for e in log if e["run_id"] == demo.runs[0]))
    day2 = beijing_day(next(e for e in log if e["run_id"] == demo.runs[1]))
    day3 = date.fromordinal(day2.toordinal() + 1)
    assert (day2 - day1).days == 1
    late = datetime.combine(day1, time(16, 30), UTC)  # day 2, 00:30 in Beijing
    last = datetime.combine(day2, time(15, 59, 59), UTC)  # day 2, 23:59:59 in Beijing
    midnight = datetime.combine(day2, time(16), UTC)  # day 3, 00:00 in Beijing
    moved = {
        (JIAHE, "modified"): late,
        (HULI, "listed"): last,
        (HULI, "delisted"): midnight,
    }
    kinds = {}
    with get_engine(demo.url).begin() as conn:
        for (entity, kind), at in moved.items():
            [event_id] = [
                e["event_id"]
                for e in log
                if (e["entity_id"], e["event"], e["run_id"]) == (entity, kind, demo.runs[1])
            ]
            kinds[kind] = event_id
            conn.execute(update(EVENTS).where(EVENTS.c.event_id == event_id).values(at=at))
    log = [e for e in demo.log() if not e["baseline"] and e["source"] == "xmtravel"]
    assert {e["at"] for e in log if e["event_id"] in kinds.values()} == {
        at.isoformat() for at in moved.values()
    }

    def between(since: date | None, until: date | None) -> set[str]:
        return {
            e["event_id"]
            for e in log
            if (since is None or beijing_day(e) >= since)
            and (until is None or beijing_day(e) <= until)
        }

    def asked(since: date | None, until: date | None) -> set[str]:
        params = {
            "from": since.isoformat() if since else "",
            "to": until.isoformat() if until else "",
        }
        return ids(demo.api(source="xmtravel", **params)["events"])

    for since, until in [(day2, day2), (day1, day1), (None, day1), (day2, None), (day3, None)]:
        assert asked(since, until) == between(since, until), (since, until)
    assert {kinds["modified"], kinds["listed"]} <= asked(day2, day2)
    assert kinds["delisted"] not in asked(day2, day2) and kinds["delisted"] in asked(day3, day3)
    assert not set(kinds.values()) & asked(None, day1)
    assert asked(day3, None) == {kinds["delisted"]}
    # Newest first still: the moved delisting (day 3) leads, the moved modification trails.
    order = newest_first(demo.api(source="xmtravel")["events"])
    assert order[0] == kinds["delisted"] and order[-1] == kinds["modified"]
    # The page shows the Beijing time of the late one: 00:30 on day 2.
    page = demo.client.get("/changes", params={"event": "modified", "from": day2.isoformat()})
    assert f"{day2.isoformat()} 00:30" in page.text


def test_baseline_listings_are_hidden_unless_asked_for(demo: Demo) -> None:
    log = demo.log()
    baseline = [e for e in log if e["baseline"]]
    assert baseline and all(e["event"] == "listed" for e in baseline)
    hidden = demo.api()
    assert hidden["baseline_hidden"] == len(baseline) and not ids(hidden["events"]) & ids(baseline)
    shown = demo.api(baseline=1)
    assert ids(shown["events"]) == ids(log) and shown["baseline_hidden"] == 0
    assert shown["filters"]["baseline"] is True
    good = demo.api(list=GOOD, baseline="1")
    assert ids(good["events"]) == ids([e for e in log if e["list"] == GOOD])
    page = demo.client.get("/changes", params={"lang": "en", "source": "xmtravel"})
    note = LABELS["en"]["changes_baseline_hidden"].format(
        n=len([e for e in baseline if e["source"] == "xmtravel"])
    )
    assert note in page.text
    show = [h for h in Links(page.text).hrefs if "baseline=1" in h]
    assert len(show) == 1 and parse_qs(urlsplit(show[0]).query)["source"] == ["xmtravel"]
    with_baseline = demo.client.get(show[0].replace("&amp;", "&"))
    rows = set(re.findall(r'id="event-([0-9a-f]+)"', with_baseline.text))
    assert rows == ids([e for e in log if e["source"] == "xmtravel"])
    assert LABELS["en"]["changes_baseline_shown"] in with_baseline.text
    assert "(baseline)" in with_baseline.text
    for off in ("0", "", "false"):
        assert demo.api(baseline=off)["total"] == hidden["total"]


def test_paging_walks_every_event_once_newest_first(demo: Demo) -> None:
    everything = demo.api(baseline=1)
    total = everything["total"]
    walked: list[str] = []
    pages = (total + 6) // 7
    for page in range(1, pages + 1):
        answer = demo.api(baseline=1, page=page, per_page=7)
        assert answer["pages"] == pages and answer["total"] == total
        walked += newest_first(answer["events"])
    assert walked == newest_first(everything["events"]) and len(set(walked)) == total
    beyond = demo.api(baseline=1, page=pages + 1, per_page=7)
    assert beyond["events"] == [] and beyond["total"] == total
    # The page pages by 50: the baseline-inclusive log (over 50 events?) or one page.
    first = demo.client.get("/changes", params={"baseline": 1, "lang": "en"})
    assert LABELS["en"]["page_of"].format(page=1, pages=max(1, -(-total // 50))) in first.text
    for bad in ({"page": 0}, {"per_page": 0}, {"per_page": 501}, {"page": "x"}):
        assert demo.client.get("/api/events", params=bad).status_code == 422, bad


def test_paging_links_keep_the_filters(demo: Demo) -> None:
    """Fifty rows a page: a database with more events than that pages, links keeping filters."""
    template = next(e for e in demo.log() if e["source"] == "xmtravel")
    with get_engine(demo.url).begin() as conn:
        conn.execute(
            EVENTS.insert(),
            [
                {
                    **{k: template[k] for k in COPIED},
                    "event_id": f"extra-{i:03d}",
                    "event": "relisted",
                    "baseline": False,
                    "at": datetime(2025, 11, 23, 2, 0, i, tzinfo=UTC),
                }
                for i in range(55)
            ],
        )
    first = demo.client.get("/changes", params={"event": "relisted", "lang": "en"})
    links = Links(first.text).hrefs
    [next_page] = [h for h in links if "page=2" in h]
    assert parse_qs(urlsplit(next_page).query) == {
        "event": ["relisted"],
        "lang": ["en"],
        "page": ["2"],
    }
    rows = re.findall(r'id="event-(extra-\d+)"', first.text)
    assert rows == [f"extra-{i:03d}" for i in range(54, 4, -1)]
    second = demo.client.get(next_page)
    assert re.findall(r'id="event-(extra-\d+)"', second.text) == [
        f"extra-{i:03d}" for i in range(4, -1, -1)
    ]
    assert 'rel="prev"' in second.text and 'rel="next"' not in second.text


@pytest.mark.parametrize("path", ["/changes", "/api/events", "/changes.atom"])
def test_unknown_values_are_422_with_a_clear_message(demo: Demo, path: str) -> None:
    asked = {
        "source": "nosuch",
        "list": "xmtravel.nosuch",
        "event": "deleted",
        "cause": "vanished",
        "from": "2025-02-30",
        "to": "yesterday",
        "baseline": "maybe",
    }
    for name, value in asked.items():
        answer = demo.client.get(path, params={name: value})
        assert answer.status_code == 422, (path, name)
        shown = answer.text if path != "/api/events" else str(answer.json()["detail"])
        assert value in shown and (name in shown or name in ("from", "to")), (path, name, shown)
    backwards = demo.client.get(path, params={"from": "2025-11-22", "to": "2025-11-21"})
    assert backwards.status_code == 422


# -- the feed -----------------------------------------------------------------------------------


def test_the_feed_parses_and_links_every_entry_to_its_entity(
    demo: Demo, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CREDITWATCH_BASE_URL", "https://watch.example.org/cw/")
    answer = demo.client.get("/changes.atom", params={"source": "xmtravel", "lang": "en"})
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("application/atom+xml")
    feed = feedparser.parse(answer.content)
    assert feed.bozo == 0, feed.get("bozo_exception")
    events = demo.api(source="xmtravel")["events"]
    assert [e.id for e in feed.entries] == [
        f"urn:creditwatch:event:{e['event_id']}" for e in events
    ]
    assert len({e.id for e in feed.entries}) == len(events) >= 5
    for entry, event in zip(feed.entries, events, strict=True):
        assert entry.link == f"https://watch.example.org/cw/entities/{event['entity_id']}"
        assert entry.updated_parsed[:6] == datetime.fromisoformat(event["at"]).utctimetuple()[:6]
        assert entry.title.startswith(event["event"] + ": ")  # English kind words
        assert (event["entity_name"] or "") in entry.title
    links = {link.rel: link.href for link in feed.feed.links}
    assert links["self"] == "https://watch.example.org/cw/changes.atom?source=xmtravel&lang=en"
    assert links["alternate"] == "https://watch.example.org/cw/changes?source=xmtravel&lang=en"
    # The reader's language from the cookie; entry ids and links the same.
    demo.client.cookies.set("lang", "zh")
    zh = feedparser.parse(demo.client.get("/changes.atom", params={"source": "xmtravel"}).content)
    demo.client.cookies.clear()
    assert [e.id for e in zh.entries] == [e.id for e in feed.entries]
    assert all(
        e.title.split("：")[0] in ("列入", "移出", "信息更正", "重新列入") for e in zh.entries
    )
    # Without the variable: the request's own base URL.
    monkeypatch.delenv("CREDITWATCH_BASE_URL")
    plain = feedparser.parse(demo.client.get("/changes.atom").content)
    assert plain.bozo == 0 and plain.entries
    assert all(e.link.startswith("http://testserver/entities/") for e in plain.entries)


def test_the_feed_is_capped_newest_first(demo: Demo, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("web.routes.changes.FEED_MAX_ENTRIES", 4)
    feed = feedparser.parse(demo.client.get("/changes.atom", params={"baseline": 1}).content)
    newest = newest_first(demo.api(baseline=1, per_page=4)["events"])
    assert [e.id.rsplit(":", 1)[1] for e in feed.entries] == newest and len(newest) == 4


def test_hostile_names_leave_the_feed_well_formed(demo: Demo) -> None:
    hostile = '\x01厦门\x0b<恶意>&"旅行社\x1f\u202eevil\x85\ufffe]]>'
    with get_engine(demo.url).begin() as conn:
        conn.execute(update(EVENTS).where(EVENTS.c.entity_id == JIAHE).values(entity_name=hostile))
    answer = demo.client.get("/changes.atom", params={"source": "xmtravel"})
    feed = feedparser.parse(answer.content)
    assert feed.bozo == 0, feed.get("bozo_exception")
    titles = [e.title for e in feed.entries if e.link.endswith(f"/entities/{JIAHE}")]
    assert titles and all('厦门<恶意>&"旅行社\\u202eevil]]>' in t for t in titles)
    assert not re.search("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u202e]", answer.text)
    page = demo.client.get("/changes", params={"source": "xmtravel"})
    assert page.status_code == 200 and "<恶意>" not in page.text


# -- redaction ----------------------------------------------------------------------------------


def test_a_redacting_server_shows_no_person_on_the_page_api_or_feed(demo: Demo) -> None:
    with get_engine(demo.url).connect() as conn:
        rows = conn.execute(select(Record.__table__.c.data)).scalars().all()
    secrets: set[str] = set()
    persons: set[str] = set()
    for data in rows:
        representatives = re.split(r"[、,，;；/\s]+", data.get("legal_representative") or "")
        secrets |= {name for name in representatives if len(name) > 1}
        if data["entity_type"] == "person":
            persons.add(data["entity_id"])
            secrets |= {data["entity_name"], data["entity_id"], data["record_key"]}
            secrets |= {data["id_number_masked"] or ""}
    secrets.discard("")
    log = demo.log()
    person_events = [e for e in log if e["entity_id"] in persons]
    assert {"王立新", "谢美玲"} <= secrets and person_events  # persons changed, in both sources
    assert any(e["entity_name"] in secrets for e in log if not e["baseline"])
    redacting = TestClient(create_app(database_url=demo.url, redact=True))
    asked = [
        "/changes",
        "/changes?baseline=1&lang=en",
        "/api/events?baseline=1&per_page=500",
        "/changes.atom?baseline=1",
        f"/changes.atom?list={BLACKLIST}",
    ]
    for url in asked:
        answer = redacting.get(url)
        assert answer.status_code == 200, url
        leaks = sorted(s for s in secrets if s in answer.text) + MASKED_ID.findall(answer.text)
        assert not leaks, (url, leaks)
    # Persons link to their pseudonymous entity page, which answers; companies as they are.
    api = redacting.get("/api/events", params={"baseline": 1, "per_page": 500}).json()
    assert api["redacted"] is True and api["total"] == len(log)
    linked = {e["entity_id"] for e in api["events"]}
    assert {pseudonym(p) for p in persons if any(e["entity_id"] == p for e in log)} <= linked
    assert JIAHE in linked
    page = Links(redacting.get("/changes", params={"baseline": 1}).text)
    for person in {e["entity_id"] for e in person_events}:
        href = f"/entities/{pseudonym(person)}"
        assert href in page.hrefs
    blacklisted = next(e for e in person_events if e["list"] == BLACKLIST)
    assert redacting.get(f"/entities/{pseudonym(blacklisted['entity_id'])}").status_code == 200
    feed = feedparser.parse(redacting.get("/changes.atom", params={"list": BLACKLIST}).content)
    assert feed.bozo == 0 and feed.entries
    assert all("/entities/redacted:" in e.link for e in feed.entries)
    assert any("王**" in e.title for e in feed.entries)
