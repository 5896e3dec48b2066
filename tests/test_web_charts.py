"""Charts: a list's size and changes per run (``storage.history``, on SQLite and PostgreSQL)
equal what the runs stored; the SVG images parse, run nothing and draw one mark per number;
the entity timeline ends an interval at its delisting; the list and entity pages embed the
images with their numbers as a table; a redacting server shows persons only by pseudonym."""

from __future__ import annotations

import json
import sqlite3
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event, select, update

from core.registry import get_source
from storage.asof import Vouch, run_date
from storage.browse import status_counts
from storage.engine import get_engine
from storage.history import Interval, Mark, TimelineRow, entity_timeline, list_history
from storage.models import Event, Record, RunList
from tests.helpers import FIXTURES, replay
from tests.test_web import BLACKLIST, GOOD, HULI, WARNING, Site, build_site
from web.app import create_app
from web.charts import ListLabels, TimelineLabels, list_chart, timeline_chart
from web.i18n import LABELS

pytestmark = pytest.mark.replay

SVG = "{http://www.w3.org/2000/svg}"
HULI_DELISTED = "厦文旅罚[2023]125号"  # the branch's entry gone on day 2 (events-day2.json)
HOSTILE = '<script>alert(1)</script>"\x01\u202e<img onerror=alert(2)>'


def truth(day: int) -> Counter[str]:
    """Entries per list that the Xiamen portal published on ``day`` (the fixture's truth)."""
    rows = json.loads((FIXTURES / "xmtravel" / f"truth-day{day}.json").read_text("utf-8"))
    return Counter(row["list"] for row in rows)


def day2_events() -> Counter[tuple[str, str]]:
    rows = json.loads((FIXTURES / "xmtravel" / "events-day2.json").read_text("utf-8"))
    return Counter((row["list"], row["event"]) for row in rows)


# -- storage: per-run history on both databases -------------------------------------------------


@pytest.fixture
def two_days(db_url: str) -> tuple[str, list[str], list[str]]:
    xiamen = [
        replay(db_url, FIXTURES / "xmtravel" / f"xmtravel-day{day}.yaml", delist_after=1)
        for day in (1, 2)
    ]
    tourism = [
        replay(db_url, FIXTURES / "mct_tourism" / f"mct_tourism-day{day}.yaml", 1, "mct_tourism")
        for day in (1, 2)
    ]
    return db_url, xiamen, tourism


def test_list_history_is_what_each_run_stored(two_days: tuple[str, list[str], list[str]]) -> None:
    url, xiamen, tourism = two_days
    engine = get_engine(url)
    statements: list[str] = []
    with engine.connect() as conn:
        for source, runs in (("xmtravel", xiamen), ("mct_tourism", tourism)):
            for lst in get_source(source).lists:
                listener = _count(statements)
                event.listen(conn, "before_cursor_execute", listener)
                points = list_history(conn, source, lst)
                event.remove(conn, "before_cursor_execute", listener)
                # Set-based: the same few statements, whatever the number of runs.
                assert len(statements) <= 4, statements
                statements.clear()
                assert [p.run_id for p in points] == runs
                for p in points:  # the sizes the list pages show for that run
                    vouch = Vouch(lst.id, p.run_id, p.seq, p.at, p.run_state, p.health)
                    counts = status_counts(conn, lst, vouch)
                    assert (p.active, p.expired) == (counts["active"], counts["expired"]), p
                    stored = Counter(
                        "baseline" if row.baseline else row.event
                        for row in conn.execute(
                            select(Event.__table__).where(
                                Event.__table__.c.list == lst.id,
                                Event.__table__.c.run_id == p.run_id,
                            )
                        )
                    )
                    assert stored == +Counter(
                        baseline=p.baseline,
                        listed=p.listed,
                        delisted=p.delisted,
                        relisted=p.relisted,
                        modified=p.modified,
                    )

        # The Xiamen lists against the portal's own truth and the day-2 events.
        expected = day2_events()
        for lst_id, day1, day2 in (
            (WARNING, truth(1)[WARNING], truth(2)[WARNING]),
            (GOOD, truth(1)[GOOD], truth(2)[GOOD]),
        ):
            lst = next(x for x in get_source("xmtravel").lists if x.id == lst_id)
            first, second = list_history(conn, "xmtravel", lst)
            assert first.active + first.expired == day1 and second.active + second.expired == day2
            assert first.baseline == first.active > 0  # no baseline event for expired entries
            assert first.listed == first.delisted == first.modified == 0
            assert second.listed == expected[(lst_id, "listed")] > 0
            assert second.delisted == expected[(lst_id, "delisted")] > 0
            assert second.modified == expected[(lst_id, "modified")]
            assert second.baseline == second.relisted == 0
            assert second.active == first.active + second.listed - second.delisted
        assert (WARNING, "modified") in expected
        warning = next(x for x in get_source("xmtravel").lists if x.id == WARNING)
        assert [p.run_id for p in list_history(conn, "xmtravel", warning, runs=1)] == xiamen[1:]

        # The announcement list delisted entries on day 2: they leave its active count.
        blacklist = get_source("mct_tourism").lists[0]
        first, second = list_history(conn, "mct_tourism", blacklist)
        assert second.delisted > 0 and first.active == first.baseline
        assert second.active + second.expired == first.active + second.listed - sum(
            1
            for row in conn.execute(
                select(Event.__table__.c.cause).where(
                    Event.__table__.c.run_id == second.run_id,
                    Event.__table__.c.event == "delisted",
                )
            )
            if row.cause != "expired"
        )

    # An unhealthy run is kept and marked: it vouches for nothing.
    with engine.begin() as conn:
        conn.execute(
            update(RunList.__table__)
            .where(RunList.__table__.c.run_id == xiamen[1], RunList.__table__.c.list == WARNING)
            .values(health="degraded")
        )
    with engine.connect() as conn:
        first, second = list_history(conn, "xmtravel", warning)
    assert first.healthy and not second.healthy and second.health == "degraded"
    assert second.active == first.active + second.listed - second.delisted


def _count(statements: list[str]) -> Any:
    def listener(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    return listener


# -- the timeline, from events ------------------------------------------------------------------


def test_entity_timeline_opens_at_listings_and_closes_at_delistings() -> None:
    day = datetime(2025, 11, 20, 2, tzinfo=UTC)
    at = [day + timedelta(days=n) for n in range(5)]
    record = {"list": "a.b", "record_key": "k", "case_number": "案1", "status": "active"}
    record |= {"first_seen": at[0].isoformat(), "last_seen": at[4].isoformat()}
    events = [
        {"list": "a.b", "record_key": "k", "event": kind, "at": at[n].isoformat(), "cause": cause}
        for kind, n, cause in (
            ("listed", 0, None),
            ("modified", 1, None),
            ("delisted", 2, "expired"),
            ("relisted", 3, None),
            ("listed", 4, None),  # of another entry: not this row's
        )
    ]
    events[-1]["record_key"] = "other"
    [row] = entity_timeline([record], events)
    assert row.intervals == [Interval(at[0], at[2], "expired"), Interval(at[3], None)]
    assert row.marks == [
        Mark("modified", at[1]),
        Mark("delisted", at[2], "expired"),
        Mark("relisted", at[3]),
    ]
    # No event: on the list since first seen while active; an expired one draws no bar.
    [quiet, old] = entity_timeline(
        [{**record, "record_key": "q"}, {**record, "record_key": "o", "status": "expired"}], []
    )
    assert quiet.intervals == [Interval(at[0], None)] and old.intervals == []


# -- the images ---------------------------------------------------------------------------------


def parse(svg: str | bytes) -> ET.Element:
    """The image as XML, checked inert: no script element, no event attribute, no link."""
    root = ET.fromstring(svg)
    assert root.tag == f"{SVG}svg" and root.get("viewBox", "").startswith("0 0 480 ")
    assert root.get("width") is None  # scales to its box
    for element in root.iter():
        assert element.tag.removeprefix(SVG) not in ("script", "foreignObject", "a", "image")
        for name in element.attrib:
            assert not name.lower().startswith("on") and "href" not in name, (element.tag, name)
    text = svg if isinstance(svg, str) else svg.decode()
    assert "<script" not in text.lower() and "style" not in text
    return root


def of_class(root: ET.Element, *classes: str) -> list[ET.Element]:
    return [e for e in root.iter() if set(classes) <= set((e.get("class") or "").split())]


def texts(root: ET.Element) -> list[str]:
    return ["".join(e.itertext()) for e in root.iter(f"{SVG}text")]


LIST_LABELS = ListLabels("t", "size", "up", "down", "sick", "none")
TIMELINE_LABELS = TimelineLabels("t", "on", "off", "again", "changed", "more", "none")


def test_hostile_text_is_escaped_and_the_image_stays_inert() -> None:
    day = datetime(2025, 11, 20, 2, tzinfo=UTC)
    row = TimelineRow(
        list_id="x.y",
        record_key=HOSTILE,
        label=HOSTILE,
        status="active",
        intervals=[Interval(day, None)],
        marks=[Mark("modified", day + timedelta(days=2))],
    )
    svg = timeline_chart(
        [row], {"x.y": HOSTILE}, day + timedelta(days=3), TimelineLabels(HOSTILE, *"abcdef")
    )
    root = parse(svg)
    shown = " ".join(texts(root))
    assert "<script>" in shown and "alert(1)" in root.findtext(f"{SVG}title", "")
    assert "\x01" not in svg and "\u202e" not in svg and "\\u202e" in shown
    assert len(of_class(root, "interval", "open")) == 1 and len(of_class(root, "mark")) == 1
    empty = parse(list_chart([], ListLabels(HOSTILE, *"abcde")))
    assert of_class(empty, "point") == [] and "<script>" in " ".join(texts(empty))


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Site:
    return build_site(tmp_path_factory.mktemp("charts"))


@pytest.fixture(scope="module")
def client(site: Site) -> TestClient:
    return TestClient(create_app(database_url=site.url, snapshots_dir=site.snapshots))


@pytest.fixture(scope="module")
def redacting(site: Site) -> TestClient:
    app = create_app(database_url=site.url, snapshots_dir=site.snapshots, redact=True)
    return TestClient(app)


def history(site: Site, list_id: str) -> list[Any]:
    source = list_id.split(".")[0]
    lst = next(x for x in get_source(source).lists if x.id == list_id)
    with get_engine(site.url).connect() as conn:
        return list_history(conn, source, lst)


def image(client: TestClient, url: str, **params: Any) -> ET.Element:
    answer = client.get(url, params=params)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "image/svg+xml"
    policy = answer.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "script-src" not in policy and "sandbox" in policy
    return parse(answer.content)


@pytest.mark.parametrize("list_id", [WARNING, GOOD, BLACKLIST])
def test_list_chart_draws_a_point_per_run_and_a_bar_per_change(
    client: TestClient, site: Site, list_id: str
) -> None:
    points = history(site, list_id)
    assert len(points) == 2
    root = image(client, f"/charts/lists/{list_id}.svg", lang="en")
    assert len(of_class(root, "point", "healthy")) == len(points)
    assert of_class(root, "point", "unhealthy") == []
    assert len(of_class(root, "size-line")) == 1
    assert len(of_class(root, "bar", "up")) == sum(1 for p in points if p.added)
    assert len(of_class(root, "bar", "down")) == sum(1 for p in points if p.delisted) == 1
    # bar labels are the counts; the dates are the runs' Beijing dates
    shown = texts(root)
    assert str(points[-1].delisted) in shown and str(points[-1].added) in shown
    assert {p.day.isoformat() for p in points} <= set(shown)
    assert LABELS["en"]["charts_size"] in shown and LABELS["en"]["charts_unhealthy"] in shown
    # the newest point sits higher than an older smaller list (y grows downwards)
    ys = [float(c.get("cy", 0)) for c in of_class(root, "point")]
    assert (ys[1] < ys[0]) == (points[1].active > points[0].active)
    chinese = image(client, f"/charts/lists/{list_id}.svg", lang="zh")
    assert LABELS["zh"]["charts_size"] in texts(chinese)
    one = image(client, f"/charts/lists/{list_id}.svg", runs=1)
    assert len(of_class(one, "point")) == 1


def test_list_chart_marks_unhealthy_runs_and_refuses_bad_input(
    client: TestClient, site: Site, tmp_path: Path
) -> None:
    for runs in ("0", "201", "x"):
        assert client.get(f"/charts/lists/{WARNING}.svg", params={"runs": runs}).status_code == 422
    assert client.get("/charts/lists/xmtravel.nosuch.svg").status_code == 404
    assert client.get("/charts/lists/nosuch.svg").status_code == 404
    assert client.get("/charts/entities/uscc-nosuch.svg").status_code == 404
    # A copy of the database whose second Xiamen run was degraded for the warnings.
    copy = tmp_path / "copy.sqlite"
    with sqlite3.connect(site.url.removeprefix("sqlite:///")) as src, sqlite3.connect(copy) as to:
        src.backup(to)  # the whole database, its write-ahead log included
    url = f"sqlite:///{copy}"
    with get_engine(url).begin() as conn:
        conn.execute(
            update(RunList.__table__)
            .where(RunList.__table__.c.run_id == site.second_run)
            .values(health="degraded")
        )
    degraded = TestClient(create_app(database_url=url, snapshots_dir=site.snapshots))
    root = image(degraded, f"/charts/lists/{WARNING}.svg")
    assert len(of_class(root, "point", "unhealthy")) == 1 == len(of_class(root, "point", "healthy"))
    assert of_class(root, "size-line") == []  # one healthy run: no line to draw
    assert [b.get("fill") for b in of_class(root, "bar", "unhealthy")] == ["#9e9e9e"] * 2
    page = degraded.get(f"/lists/{WARNING}", params={"lang": "en"}).text
    first, second = history(site, WARNING)
    alt = LABELS["en"]["charts_list_alt"].format(
        n=first.active, date=site.day1, up=second.added, down=second.delisted, last=site.day2
    )
    assert f'alt="{alt}"' in page


def test_entity_timeline_ends_the_delisted_entry_on_day_two(client: TestClient, site: Site) -> None:
    answer = client.get(f"/api/entities/{HULI}").json()
    rows = entity_timeline(answer["records"], answer["events"])
    [gone] = [r for r in rows if r.label == HULI_DELISTED]
    [interval] = gone.intervals
    assert interval.end is not None and interval.cause == "disappeared"
    assert (run_date(interval.start), run_date(interval.end)) == (site.day1, site.day2)
    assert [m.event for m in gone.marks] == ["delisted"]
    root = image(client, f"/charts/entities/{HULI}.svg", lang="en")
    drawn = sum(len(r.intervals) for r in rows)
    assert len(of_class(root, "interval")) == drawn >= 2
    assert len(of_class(root, "interval", "closed")) == 1
    assert len(of_class(root, "mark", "delisted")) == 1
    assert HULI_DELISTED in texts(root)


class Page(HTMLParser):
    """The images of a page and the rows of its chart tables."""

    WANTED = ("list-history", "timeline-table")

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.images: list[dict[str, str | None]] = []
        self.tables: dict[str, list[list[str]]] = {}
        self.table: str | None = None
        self.details = 0
        self.cell = False
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "img":
            self.images.append(found)
        elif tag == "details":
            self.details += 1
        elif tag == "table" and found.get("id") in self.WANTED:
            self.table = found["id"]
            self.tables[self.table or ""] = []
        elif tag == "tr" and self.table:
            self.tables[self.table].append([])
        elif tag == "td" and self.table:
            self.tables[self.table][-1].append("")
            self.cell = True

    def handle_endtag(self, tag: str) -> None:
        if tag == "table":
            self.table = None
        elif tag == "td" and self.table and self.cell:
            cells = self.tables[self.table][-1]
            cells[-1] = " ".join(cells[-1].split())
            self.cell = False

    def handle_data(self, data: str) -> None:
        if self.table and self.cell:
            self.tables[self.table][-1][-1] += data


def test_list_page_embeds_the_chart_with_its_numbers_as_a_table(
    client: TestClient, site: Site
) -> None:
    points = history(site, WARNING)
    last = points[-1]
    for lang in ("en", "zh"):
        page = Page(client.get(f"/lists/{WARNING}", params={"lang": lang}).text)
        [img] = [i for i in page.images if i.get("id") == "list-chart"]
        assert img["src"] == f"/charts/lists/{WARNING}.svg?lang={lang}&runs=30"
        assert img["alt"] == LABELS[lang]["charts_list_alt"].format(
            n=last.active, date=last.day, up=last.added, down=last.delisted, last=last.day
        )
        assert client.get(img["src"] or "").status_code == 200
        rows = [r for r in page.tables["list-history"] if r]
        assert [r[1] for r in rows] == [p.run_id for p in reversed(points)]
        for row, p in zip(rows, reversed(points), strict=True):
            assert [int(c) for c in row[3:5]] == [p.active, p.expired]
            assert int(row[5].split()[0]) == p.listed
            assert [int(c) for c in row[6:]] == [p.relisted, p.delisted, p.modified]
        assert page.details >= 1


def test_entity_page_embeds_the_timeline_with_its_periods_as_a_table(
    client: TestClient, site: Site
) -> None:
    answer = client.get(f"/api/entities/{HULI}").json()
    page = Page(client.get(f"/entities/{HULI}", params={"lang": "en"}).text)
    [img] = [i for i in page.images if i.get("id") == "timeline-chart"]
    assert img["src"] == f"/charts/entities/{HULI}.svg?lang=en"
    assert img["alt"] == LABELS["en"]["charts_timeline_alt"].format(n=len(answer["records"]))
    rows = [r for r in page.tables["timeline-table"] if r]
    assert len(rows) == len(answer["records"])
    [gone] = [r for r in rows if HULI_DELISTED in r[1]]
    period = gone[2]
    assert period.index(str(site.day1)) < period.index("→") < period.index(str(site.day2))
    assert LABELS["en"]["charts_still"] not in period and "delisted" in gone[3]
    assert sum(LABELS["en"]["charts_still"] in r[2] for r in rows) == sum(
        1 for r in answer["records"] if r["status"] == "active"
    )


def persons(site: Site) -> Iterator[tuple[str, str]]:
    with get_engine(site.url).connect() as conn:
        for data in conn.execute(select(Record.__table__.c.data)).scalars():
            if data.get("entity_type") == "person":
                yield data["entity_id"], data["entity_name"]


def test_a_redacting_server_charts_persons_only_by_pseudonym(
    redacting: TestClient, site: Site
) -> None:
    from core.redact import pseudonym

    people = dict(persons(site))
    assert len(people) >= 3
    for real, name in people.items():
        assert redacting.get(f"/charts/entities/{real}.svg").status_code == 404
        root = image(redacting, f"/charts/entities/{pseudonym(real)}.svg", lang="en")
        svg = ET.tostring(root, encoding="unicode")
        assert name not in svg and real not in svg
        assert of_class(root, "interval")
        page = redacting.get(f"/entities/{pseudonym(real)}").text
        assert f"/charts/entities/{pseudonym(real)}.svg" in page and name not in page
