"""The web app against hostile use: a redacting server walked route by route (every route the
app declares, so a route added later is walked too) must show no natural person's full name,
no masked ID number and no legal representative's name; NUL and other odd input on every
parameter of every route gets a 4xx through the one error handler, with the security headers
and no traceback; and bidi controls in scraped names (U+202E …) cannot reorder the page."""

from __future__ import annotations

import html
import itertools
import json
import re
from collections.abc import Iterator, Sequence
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from sqlalchemy import select, update
from starlette.routing import Mount
from typer.testing import CliRunner

from core.redact import pseudonym, redact_entity, redact_event, redact_record
from core.registry import get_source, load_registry
from export.snapshots import MANIFEST, write_snapshot
from pipeline.cli import app as cli_app
from storage.archive import RESPONSES
from storage.engine import get_engine
from storage.models import Event, Record, SubscriptionRow
from tests.helpers import FIXTURES, replay, rewrite_record
from tests.test_web import BLACKLIST, GOOD, JIAHE, JIAHE_USCC, WARNING, Site, build_site
from web.app import CSP, create_app

pytestmark = pytest.mark.replay

HERE = Path(__file__).resolve().parent
STATIC = HERE.parent / "web" / "static"
DEMO_LISTS = (WARNING, GOOD, BLACKLIST)  # the lists the fixtures fill
# A masked ID number as portals publish them: 3502**********1234, 350203********123X.
MASKED_ID = re.compile(r"[0-9]{2,}[*＊]{2,}[0-9]*[0-9Xx]")
BIDI = re.compile("[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
# A company's name with every kind of bidi control, some never closed: shown raw, "evil"
# would print reversed and drag the rest of its line along.
BIDI_ENTITY = "uscc-91350205MA7N301E8A"  # 厦门翔鹭观光旅游有限公司: on both Xiamen lists
BIDI_NAME = "\u202eevil\u202c厦门翔鹭\u2067观光\u200f旅游\u202d有限公司\u2066"
BIDI_OLD, BIDI_NEW = "\u202e旧的处罚", "新的处罚\u2067"

# Routes the redaction walk cannot fill from the demo data, each with why. None today: a
# route added without a filler for its parameters fails the walk until it is filled or listed.
UNFILLABLE: dict[str, str] = {}
# Routes a redacting server refuses outright, each with why (the walk checks every answer of
# theirs is that refusal).
REFUSED_WHILE_REDACTING = {
    "/raw/{sha}": "an archived response is the portal's page as received: full names and "
    "masked ID numbers anywhere in it, so it is refused (403), never rewritten",
    "/raw/{sha}/body": "the same bytes as a download: refused (403)",
}
# Odd values for any parameter, percent-encoded as sent: NUL alone, inside and before a file
# suffix; traversal; CR/LF; bidi override; UTF-8 that decodes to nothing (a lone surrogate,
# invalid bytes, an overlong dot); a lone percent sign; markup and SQL; numbers that are not.
ODD = (
    "%00",
    "a%00b",
    "%00.parquet",
    "%00%00%00",
    "..",
    "..%2fmanifest.json",
    "%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    "%0d%0aSet-Cookie:%20x=1",
    "%E2%80%AE",
    "%ED%A0%80",
    "%FF%FE",
    "%C0%AE",
    "%",
    "%25",
    "%3Cscript%3Ealert(1)%3C%2Fscript%3E",
    "'%20OR%201=1--",
    "-1",
    "0",
    "1e3",
    "NaN",
    "99999999999999999999999",
    "x" * 4000,
)


# -- the site -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Site:
    """The site of test_web.py, plus a company whose name carries bidi controls and an event
    whose change does (the Xiamen portal could publish either)."""
    built = build_site(tmp_path_factory.mktemp("hostile"))
    records, events = Record.__table__, Event.__table__
    with get_engine(built.url).begin() as conn:
        for row in conn.execute(
            select(records.c.id, records.c.data).where(records.c.entity_id == BIDI_ENTITY)
        ).all():
            rewrite_record(conn, row.id, {"entity_name": BIDI_NAME})
        changed = conn.execute(
            update(events)
            .where(events.c.entity_id == JIAHE, events.c.event == "modified")
            .values(changes={"measure": [BIDI_OLD, BIDI_NEW]})
        )
        assert changed.rowcount == 1
    return built


@pytest.fixture(scope="module")
def client(site: Site) -> TestClient:
    return TestClient(create_app(database_url=site.url, snapshots_dir=site.snapshots))


@pytest.fixture(scope="module")
def redacting(site: Site) -> TestClient:
    app = create_app(database_url=site.url, snapshots_dir=site.snapshots, redact=True)
    return TestClient(app)


# -- helpers ------------------------------------------------------------------------------------


def flat(routes: Sequence[Any]) -> Iterator[Any]:
    """Routes with the routers the app includes (without prefix) opened up."""
    for route in routes:
        included = getattr(route, "original_router", None)  # FastAPI's included router
        yield from flat(included.routes) if included is not None else (route,)


def routes(app: FastAPI) -> list[tuple[str, str, list[str], list[str]]]:
    """Every route of the app: (its path as declared, a URL template, its path parameters,
    its query parameters). Only GET routes exist: a route with another method needs a walk
    of its own, so it fails here until it gets one."""
    out: list[tuple[str, str, list[str], list[str]]] = []
    for route in flat(app.routes):
        if isinstance(route, Mount):  # /static: one path parameter, the file
            out.append((route.path, route.path + "/{path}", list(route.param_convertors), []))
            continue
        path = getattr(route, "path", "")
        methods = set(getattr(route, "methods", None) or ()) - {"HEAD"}
        assert methods == {"GET"}, f"{path} answers {methods}: walk it in this file"
        query = (
            [p.alias for p in route.dependant.query_params] if isinstance(route, APIRoute) else []
        )
        out.append((path, path, list(getattr(route, "param_convertors", {})), query))
    assert len(out) >= 14, out
    return out


def fill(template: str, values: dict[str, str]) -> str:
    return template.format(**{name: quote(value, safe="") for name, value in values.items()})


def assert_secure(answer: Any, where: str) -> None:
    """The headers of every answer; an error's policy is the strict page policy."""
    policy = answer.headers.get("content-security-policy", "")
    assert "default-src 'none'" in policy and "script-src" not in policy, where
    assert "frame-ancestors 'none'" in policy or "sandbox" in policy, where
    assert answer.headers.get("x-content-type-options") == "nosniff", where
    assert answer.headers.get("x-frame-options") == "DENY", where
    assert answer.headers.get("referrer-policy") == "no-referrer", where
    if answer.status_code >= 400:
        assert policy == CSP, where


def assert_no_traceback(answer: Any, where: str) -> None:
    text = answer.content.decode("utf-8", "replace")
    assert "Traceback" not in text and 'File "' not in text, where


def private(site: Site) -> tuple[set[str], set[str], dict[str, str]]:
    """What a redacting server must never show: natural persons' full names and every legal
    representative's name; the masked ID numbers (also found by pattern); persons' real
    entity ids and the record keys that spell a name or number. With the names alone, and
    every entity id with its list (the walk's fillers)."""
    names: set[str] = set()
    secrets: set[str] = set()
    entities: dict[str, str] = {}
    with get_engine(site.url).connect() as conn:
        rows = conn.execute(select(Record.__table__.c.data)).scalars().all()
    for data in rows:
        entities[data["entity_id"]] = data["list"]
        for name in re.split(r"[、,，;；/\s]+", data.get("legal_representative") or ""):
            if len(name) > 1:
                names.add(name)
        if data.get("entity_type") == "person":
            names.add(data["entity_name"])
            secrets |= {data["entity_id"], data["id_number_masked"] or ""}
            if data["entity_name"] in data["record_key"]:
                secrets.add(data["record_key"])
    secrets = (secrets | names) - {""}
    assert len(names) >= 20 and {"王立新", "林晓岚", "谢美玲"} <= names  # persons and reps
    return secrets, names, entities


class Texts(HTMLParser):
    """Every text node of a page with the elements it sits in."""

    VOID = frozenset({"meta", "link", "input", "img", "br", "hr", "source", "col", "wbr"})

    def __init__(self, page: str) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.nodes: list[tuple[str, tuple[str, ...]]] = []
        self.feed(page)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in self.stack:
            while self.stack.pop() != tag:
                pass

    def handle_data(self, data: str) -> None:
        self.nodes.append((data, tuple(self.stack)))

    def containing(self, text: str) -> list[tuple[str, ...]]:
        return [stack for data, stack in self.nodes if text in data]


# -- redaction on every route -------------------------------------------------------------------


def test_a_redacting_server_leaks_no_person_on_any_route(site: Site, redacting: TestClient) -> None:
    """Every route, every path parameter filled from the demo data (real and pseudonymous
    entity ids, every archived response, every snapshot file, every subscription), the list
    routes also searched (by every private name), filtered and dated, in both languages."""
    secrets, names, entities = private(site)
    with get_engine(site.url).connect() as conn:
        shas = sorted(set(conn.execute(select(RESPONSES.c.sha256)).scalars()))
        subscriptions = list(conn.execute(select(SubscriptionRow.__table__.c.id)).scalars())
    snapshot_files = {MANIFEST}
    for manifest in site.snapshots.glob(f"*/{MANIFEST}"):
        snapshot_files |= {f["path"] for f in json.loads(manifest.read_text("utf-8"))["files"]}
    fillers = {
        "list_id": sorted(lst.id for s in load_registry() for lst in get_source(s).lists),
        "entity_id": [*entities, *(pseudonym(e) for e in entities), "redacted:" + "0" * 16],
        "sha": shas,
        "name": sorted(p.name for p in site.snapshots.iterdir()),
        "file": sorted(snapshot_files),
        "subscription_id": [*subscriptions, "nobody"],
        "path": sorted(p.name for p in STATIC.iterdir()),
    }
    assert site.hostile_sha in shas and {"jiahe", "blacklist", "by-name"} <= set(subscriptions)
    days = [d.isoformat() for pair in site.days.values() for d in pair]
    queries: dict[str, list[str]] = {
        "q": [*sorted(names), "厦门", "王"],
        "status": ["all", "removed"],
        "as_of": days,
        "from": [days[0]],
        "to": [days[-1]],
        "page": ["2"],
        "per_page": ["500"],
        "view": ["source", "page"],
    }
    leaks: list[tuple[str, list[str]]] = []
    statuses: dict[str, dict[int, int]] = {}
    for declared, template, params, query in routes(redacting.app):  # type: ignore[arg-type]
        if declared in UNFILLABLE:
            continue
        assert set(params) <= set(fillers), f"{declared}: fill {params} or list it in UNFILLABLE"
        for combo in itertools.product(*(fillers[p] for p in params)):
            values = dict(zip(params, combo, strict=True))
            base = fill(template, values)
            asked: list[tuple[str, str | None]] = [(base, None), (base + "?lang=en", None)]
            if values.get("list_id", DEMO_LISTS[0]) in DEMO_LISTS:
                asked += [
                    (f"{base}?{name}={quote(v)}", v if name == "q" else None)
                    for name in query
                    for v in queries.get(name, [])
                ]
            for url, q in asked:
                answer = redacting.get(url)
                counts = statuses.setdefault(declared, {})
                counts[answer.status_code] = counts.get(answer.status_code, 0) + 1
                shown = answer.content.decode("utf-8", "replace")
                sent = unquote(url)  # what the client sent is no leak when echoed
                found = [s for s in secrets if s in shown and s not in sent]
                found += MASKED_ID.findall(shown)
                if found:
                    leaks.append((url, sorted(set(found))))
                if declared in REFUSED_WHILE_REDACTING:
                    assert answer.status_code == 403 and "redact" in shown, url
                if declared.startswith("/api/lists/") and q in names:
                    # search runs over what is shown: no private name finds anything
                    assert answer.json()["total"] == 0, url
    assert not leaks, leaks[:20]
    assert not [r for r, counts in statuses.items() if any(s >= 500 for s in counts)], statuses
    assert set(statuses) == {r[0] for r in routes(redacting.app)} - set(UNFILLABLE)  # type: ignore[arg-type]
    for declared, counts in statuses.items():
        if declared not in REFUSED_WHILE_REDACTING:  # each route showed something
            assert counts.get(200), (declared, counts)
    assert sum(sum(c.values()) for c in statuses.values()) > 800, statuses


def test_a_redacting_feed_shortens_names_and_drops_masked_ids(
    client: TestClient, redacting: TestClient
) -> None:
    """The same entries as unredacted, with the person shortened and the matched name too."""
    plain = client.get("/feeds/by-name.atom").text
    assert "王立新" in plain and "1101051982****4612" in plain  # the channels were told
    shown = redacting.get("/feeds/by-name.atom")
    assert shown.status_code == 200
    assert shown.headers["content-type"].startswith("application/atom+xml")
    assert "王立新" not in shown.text and not MASKED_ID.search(shown.text)
    assert "王**" in shown.text
    assert shown.text.count("<entry>") == plain.count("<entry>") == 2  # listed, delisted


def test_redaction_shortens_every_representative_and_drops_any_masked_id() -> None:
    """A company's legal representatives are persons: shortened in their field and wherever
    else the record, its events or the entity's other records name them; anything shaped like
    a masked ID number goes, whoever's record holds it. A company's keys stay."""
    company = {
        "entity_type": "company",
        "entity_name": "厦门王立新小吃店",
        "record_key": "91350203MA116W7K8T|案",
        "entity_id": "uscc-91350203MA116W7K8T",
        "legal_representative": "王立新、李四",
        "reason": "法定代表人王立新；经营者身份证 350203********123X",
        "extra": {"负责人": "李四", "证件": "3502**********1234", "n": 3},
    }
    shown = redact_record(company)
    assert shown == {
        **company,
        "entity_name": "厦门王**小吃店",
        "legal_representative": "王**、李*",
        "reason": "法定代表人王**；经营者身份证 ",
        "extra": {"负责人": "李*", "证件": "", "n": 3},
    }
    assert redact_record(shown) == shown  # redacting twice changes nothing
    event = {
        "event": "modified",
        "entity_name": "厦门王立新小吃店",
        "record_key": company["record_key"],
        "entity_id": company["entity_id"],
        "changes": {"legal_representative": ["王立新", "赵六"], "title": ["王立新", "赵六案"]},
    }
    assert redact_event(event, "company") == {
        **event,
        "entity_name": "厦门王**小吃店",
        "changes": {"legal_representative": ["王**", "赵*"], "title": ["王**", "赵*案"]},
    }
    # Only the event names the former representative: the entity's records lose it too.
    records, events = redact_entity([{**company, "title": "原法定代表人赵六"}], [event])
    assert records[0]["title"] == "原法定代表人赵*" and events[0]["changes"]["title"][1] == "赵*案"
    assert records[0]["entity_id"] == company["entity_id"]


# -- odd input, errors and their headers --------------------------------------------------------


@pytest.fixture
def small_site(db_url: str, tmp_path: Path) -> tuple[str, Path, str]:
    """Day 1 of the Xiamen portal with a subscription, and a redacted snapshot: a valid value
    for every parameter."""
    subscribe = ["watch", "add", "jiahe", "--uscc", JIAHE_USCC, "--channel", "feed:/dev/null"]
    added = CliRunner().invoke(cli_app, subscribe, env={"DATABASE_URL": db_url})
    assert added.exit_code == 0, added.output
    replay(db_url, FIXTURES / "xmtravel" / "xmtravel-day1.yaml", delist_after=1)
    snapshots = tmp_path / "snapshots"
    with get_engine(db_url).connect() as conn:
        write_snapshot(conn, snapshots / "red", sources=["xmtravel"], fmt="jsonl", redact=True)
        data = conn.execute(select(Record.__table__.c.data)).scalars().first()
    assert data is not None
    return db_url, snapshots, data["raw_sha256"]


def odd_requests(app: FastAPI, valid: dict[str, str]) -> Iterator[tuple[str, str]]:
    """(odd value, URL) for every odd value in every parameter of every route, path and
    query (``lang`` too, which every page reads), the other parameters valid."""
    for _, template, params, query in routes(app):
        base = fill(template, {p: valid[p] for p in params})
        for odd in ODD:
            for param in params:
                # the value goes in as sent: percent-encoded already
                marked = {p: valid[p] if p != param else "\x01" for p in params}
                yield odd, fill(template, marked).replace("%01", odd)
            for param in [*query, "lang"]:
                yield odd, f"{base}?{param}={odd}"


def test_nul_and_odd_input_on_every_parameter_get_a_4xx_with_the_headers(
    small_site: tuple[str, Path, str],
) -> None:
    """On SQLite and PostgreSQL (which refuses NUL in text), redacting or not."""
    url, snapshots, sha = small_site
    valid = {
        "list_id": WARNING,
        "entity_id": JIAHE,
        "sha": sha,
        "name": "red",
        "file": MANIFEST,
        "subscription_id": "jiahe",
        "path": "style.css",
    }
    for redact in (False, True):
        app = create_app(database_url=url, snapshots_dir=snapshots, redact=redact)
        client = TestClient(app, raise_server_exceptions=False)
        requests = 0
        for odd, path in odd_requests(app, valid):
            answer = client.get(path)
            requests += 1
            assert answer.status_code < 500, (redact, path, answer.status_code)
            if "%00" in odd:
                assert 400 <= answer.status_code < 500, (redact, path, answer.status_code)
            assert_secure(answer, path)
            assert_no_traceback(answer, path)
        assert requests > 500
        # The defect as reported: a NUL in a snapshot file name.
        answer = client.get("/snapshots/red/%00.parquet")
        assert answer.status_code == 400 and 'class="error-detail"' in answer.text


def test_every_error_goes_through_one_handler_with_the_security_headers(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    """404, 403, 405, 422 and an unexpected exception: the same error page (JSON under
    /api/), the same headers, and nothing of the exception shown."""
    client = TestClient(
        create_app(database_url=site.url, snapshots_dir=site.snapshots),
        raise_server_exceptions=False,
    )
    redacting = TestClient(
        create_app(database_url=site.url, snapshots_dir=site.snapshots, redact=True),
        raise_server_exceptions=False,
    )
    answers = {
        "404": client.get("/nowhere", params={"lang": "en"}),
        "404 static": client.get("/static/nosuch.css"),
        "404 feed": client.get("/feeds/nobody.atom"),
        "403": redacting.get(f"/raw/{site.hostile_sha}"),
        "405": client.post("/"),
        "422": client.get(f"/lists/{WARNING}", params={"page": "0"}),
        "422 date": client.get(f"/lists/{WARNING}", params={"as_of": "2025-02-30"}),
        "400 nul": client.get(f"/lists/{WARNING}", params={"as_of": "\x00"}),
    }

    def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("the secret detail of a failure")

    monkeypatch.setattr("web.routes.lists.load_registry", boom)
    answers["500"] = client.get("/", params={"lang": "en"})
    answers["500 api"] = client.get("/api/sources")
    answers["405 api"] = client.post("/api/sources")
    for what, answer in answers.items():
        assert str(answer.status_code) == what.split()[0], (what, answer.status_code)
        assert_secure(answer, what)
        assert_no_traceback(answer, what)
        assert "secret detail" not in answer.text, what
        if what.endswith("api"):
            assert answer.json()["detail"], what
        else:
            assert answer.headers["content-type"].startswith("text/html"), what
            assert 'class="error-detail"' in answer.text, what
    assert "Server error" in answers["500"].text
    assert "\x00" not in answers["400 nul"].text


# -- bidi controls in scraped names -------------------------------------------------------------


@pytest.mark.parametrize("redact", [False, True])
def test_bidi_controls_in_names_cannot_reorder_the_page(
    client: TestClient, redacting: TestClient, redact: bool
) -> None:
    """No page carries a raw bidi control (they are shown as their code, \\u202e), and a
    scraped name or changed value sits in a <bdi> that isolates it from the text around it.
    The JSON API keeps the stored text exactly."""
    browser = redacting if redact else client
    pages = {
        f"/lists/{WARNING}?status=all": ["evil"],
        f"/lists/{GOOD}?status=all": ["evil"],
        f"/entities/{BIDI_ENTITY}": ["evil"],
        f"/entities/{JIAHE}": ["旧的处罚", "新的处罚"],
        f"/lists/{WARNING}?q=%E2%80%AE": [],
        "/lists/%E2%80%AEnosuch": [],
        "/entities/%E2%80%AE%E2%81%A6x": [],
    }
    for path, values in pages.items():
        answer = browser.get(path, params={"lang": "en"})
        assert answer.status_code in (200, 404), path
        assert not BIDI.findall(answer.text), (path, sorted(set(BIDI.findall(answer.text))))
        texts = Texts(answer.text)
        for value in values:
            stacks = [s for s in texts.containing(value) if "title" not in s]
            assert stacks, (path, value)
            assert all("bdi" in stack for stack in stacks), (path, value, stacks)
    assert "\\u202eevil\\u202c" in html.unescape(browser.get(f"/entities/{BIDI_ENTITY}").text)
    api = browser.get(f"/api/lists/{WARNING}/entries", params={"q": "厦门翔鹭", "status": "all"})
    names = {e["entity_name"] for e in api.json()["entries"]}
    assert BIDI_NAME in names  # data, as stored
