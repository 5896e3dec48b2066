"""The fetch-fault matrix: live-mode crawls through the fake portal (tests/faults/portal.py),
one fault at a time, on eight families: Xiamen's own spider, ``html_list``, ``json_api``,
``announcements`` (where the broken page is the newest notice), the two that fetch
through Chromium: ``creditsearch`` (信用山东, every list call signed and fetched by the
portal's own page) and ``creditchina`` (Credit China in watch mode, the API called from
inside the portal page, where the broken call is one watched subject's 行政处罚 search), and
two bespoke spiders: ``ccgp`` (a search form posted page by page to one URL, where the broken
page is the post of page 2, named by its form field) and ``gsxt`` (paged JSON whose rows are
held until every page has answered, then one entry per company).

Every test starts from day 1 replayed (a template database copied per test), then crawls day 2
live with one page broken. A fault that persists must leave the list unhealthy with the outcome
named, raise no ``delisted`` event and invent nothing: every entry is as day 1 or as an
undisturbed day 2 left it. A transient one (one 503, one reset, a slow body) must be absorbed:
healthy, with exactly the entries of an undisturbed live day 2.

Chromium reaches the fake portal as Scrapy does, through ``https_proxy`` (the product's
``launch_options`` reads it); only the test accepts the portal's test-CA certificates
(``--ignore-certificate-errors`` in ``CW_BROWSER_ARGS``). The browser families name every
fault as the others do; what differs is who retries: Chromium itself asks again after a
hang-up or a reset before any answer, so the portal may count more tries. A refusal of the
whole session on Credit China (WAF challenge, captcha, 429) stops the run's calls and bears
on every list, as that spider is built to do; those cases check that every list names it.

``CW_FAULT_FAMILIES`` (comma-separated: ``xmtravel,html_list,json_api,announcements,
creditsearch,creditchina,ccgp,gsxt``) narrows the families.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from crawlers.creditchina_api import SESSION_OUTCOMES
from pipeline.run import CrawlSpec, crawl
from storage.engine import get_engine
from storage.models import Event, PendingDelisting, Record
from tests.faults import portal as fp
from tests.faults.portal import Action, FakePortal, Fault
from tests.faults.tally import tally
from tests.helpers import FIXTURES, list_health, run_row
from tests.replay_cache import Replay, ReplayCache

TIMEOUT = 2.0
# Live politeness, shortened: no delay, a small timeout, and the backoff still in the path.
LIVE = {
    "DOWNLOAD_DELAY": "0",
    "AUTOTHROTTLE_ENABLED": "False",
    "CW_RETRY_BACKOFF": "0.05",
    "DOWNLOAD_TIMEOUT": str(TIMEOUT),
}
TEN_MB = 10 * 1024 * 1024
# The browser families: Chromium accepts the fake portal's test-CA certificates (a test-only
# argument: the product never weakens TLS), its in-page calls get the same short time limit,
# and no pause between them.
BROWSER = (
    ("CW_BROWSER_ARGS", "--ignore-certificate-errors"),
    ("CW_API_TIMEOUT", str(TIMEOUT)),
    ("CW_API_MIN_INTERVAL", "0"),
)


@dataclass(frozen=True)
class Family:
    name: str
    source: str
    list_id: str
    page: str  # a fragment of the URL (or posted form) naming one list page past the first
    charset_swap: str  # an encoding the page's text is re-served in against its declaration
    # The list's health when its broken page never comes: ``degraded`` where the page is one
    # of several of the list; ``failed`` where it is the notice that holds the list's entries.
    lasting: str = "degraded"
    settings: tuple[tuple[str, str], ...] = ()  # the family's own crawl settings (BROWSER)
    watchlist: Path | None = None  # watch mode: the subjects watched on both days
    # Outcomes by which the portal refuses the whole session: they bear on every list and
    # stop the run's calls (Credit China), so no other list is healthy either.
    session: frozenset[str] = frozenset()

    def cassette(self, day: int) -> Path:
        return FIXTURES / self.source / f"{self.source}-day{day}.yaml"


FAMILIES = {
    f.name: f
    for f in (
        Family("xmtravel", "xmtravel", "xmtravel.warning", "xygs-main.html?pageNo=2", "utf-8"),
        Family("html_list", "tianjin_xygs", "tianjin_xygs.serious_illegal", "pageNo=2", "gbk"),
        Family("json_api", "shenzhen_punish", "shenzhen_punish.penalties", "pageIndex=2", "gbk"),
        Family(
            "announcements", "mct_tourism", "mct_tourism.blacklist", "t20261125_", "gbk", "failed"
        ),
        Family(
            "creditsearch",
            "shandong_blacklist",
            "shandong_blacklist.blacklist",
            "&page=2&",
            "gbk",
            settings=BROWSER,
        ),
        Family(
            "creditchina",
            "creditchina",
            "creditchina.watch_xzcf",
            # 行政处罚 records of the second watched subject (徐州…), one call of many
            "type=%E8%A1%8C%E6%94%BF%E5%A4%84%E7%BD%9A&entityType=1&keyword=%E5%BE%90%E5%B7%9E",
            "gbk",
            settings=BROWSER,
            watchlist=FIXTURES / "creditchina" / "watchlist.txt",
            session=SESSION_OUTCOMES,
        ),
        # CCGP's list pages are posts of one search form to one URL: page 2 is named by its
        # form field (the portal matches posted bodies too); its rows' detail pages never come.
        Family("ccgp", "ccgp", "ccgp.serious_violations", "&gp=2", "gbk"),
        Family("gsxt", "gsxt", "gsxt.serious_illegal", "illInfo.html?start=5", "gbk"),
    )
}
CHOSEN = [
    name.strip()
    for name in os.environ.get("CW_FAULT_FAMILIES", ",".join(FAMILIES)).split(",")
    if name.strip()
]


@dataclass(frozen=True)
class Case:
    name: str
    make: Callable[[Family], Action]
    times: int | None  # None: the page is broken on every try
    expected: dict[str, str]  # family name (or "*") → "health: outcomes"
    most: int | None = None  # the most requests the broken page may see (None: no bound)

    def expect(self, family: Family) -> str | None:
        expected = self.expected.get(family.name, self.expected.get("*"))
        if expected is None or not expected.startswith("degraded:"):
            return expected
        return expected.replace("degraded", family.lasting, 1)


HEALTHY = {"*": "healthy"}
CASES = [
    Case("5xx burst", lambda f: fp.status(503), None, {"*": "degraded: http_error"}),
    Case("one 503, then the page", lambda f: fp.status(503), 1, HEALTHY),
    Case("no answer past the timeout", lambda f: fp.stall(TIMEOUT + 1.5), None,
         {"*": "degraded: timeout"}),
    Case("one stall, then the page", lambda f: fp.stall(TIMEOUT + 1.5), 1, HEALTHY),
    Case("slow body within the timeout", lambda f: fp.slow_body(TIMEOUT / 3), None, HEALTHY),
    Case("connection reset mid-body", lambda f: fp.reset_mid_body(), None,
         {"*": "degraded: http_error"}),
    Case("one reset mid-body, then the page", lambda f: fp.reset_mid_body(), 1, HEALTHY),
    Case("hang-up without an answer", lambda f: fp.hang_up(), None, {"*": "degraded: http_error"}),
    Case("truncated page", lambda f: fp.truncated(), None, {"*": "degraded: malformed"}),
    Case("wrong charset", lambda f: fp.recoded(f.charset_swap), None,
         {"*": "degraded: malformed"}),
    Case("invalid bytes in the declared charset", lambda f: fp.invalid_bytes(), None,
         {"*": "degraded: malformed"}),
    Case("10 MB body", lambda f: fp.padded(TEN_MB), 1, HEALTHY),
    # Asked once: Scrapy drops the redirect to a page already requested; Chromium follows
    # 20 redirects (21 requests), and an in-page call is not asked again after a loop.
    Case("redirect loop", lambda f: fp.redirect_loop(), None, {"*": "degraded: http_error"},
         most=21),
    Case("412 WAF challenge", lambda f: fp.waf_challenge(), None,
         {"*": "degraded: waf_challenge"}),
    Case("WAF challenge served as 200", lambda f: fp.waf_challenge(200), None,
         {"*": "degraded: waf_challenge"}),
    Case("captcha page", lambda f: fp.captcha_page(), None, {"*": "degraded: captcha_required"}),
    Case("empty body", lambda f: fp.empty_body(), None, {"*": "degraded: empty"}),
    Case("429 too many requests", lambda f: fp.status(429), None,
         {"*": "degraded: rate_limited"}),
    Case("404 on a list page", lambda f: fp.status(404), None, {"*": "degraded: http_error"}),
]  # fmt: skip


Entries = dict[tuple[str, str], tuple[str, str]]


def entries(url: str, source: str) -> Entries:
    """Every entry the database holds for ``source``: (list, key) → (status, content hash)."""
    table = Record.__table__
    with get_engine(url).connect() as conn:
        rows = conn.execute(select(table).where(table.c.source == source)).all()
    return {(r.list, r.record_key): (r.status, r.content_hash) for r in rows}


def disappeared(url: str, run_id: str, lists: set[str]) -> list[Any]:
    """The run's ``delisted`` events by absence on ``lists``."""
    table = Event.__table__
    with get_engine(url).connect() as conn:
        return conn.execute(
            select(table).where(
                table.c.run_id == run_id, table.c.event == "delisted",
                table.c.cause == "disappeared", table.c.list.in_(lists),
            )
        ).all()  # fmt: skip


def shown(health: Any) -> str:
    """A list's health as read back: ``health: outcomes`` (its fetches' outcomes, else the
    checks it broke)."""
    found = [f for f in health.findings or () if not f.get("note")]
    named = sorted({f["outcome"] for f in found if f.get("outcome")})
    named = named or sorted({f["check"] for f in found})
    return f"{health.health}: {', '.join(named)}" if named else health.health


@dataclass
class Reference:
    day1: Entries
    day2: Entries  # day 1 replayed, then day 2 crawled live with nothing broken


_references: dict[str, Reference] = {}


_watched_day1: dict[str, Path] = {}


def day1(replay_cache: ReplayCache, url: str, family: Family) -> None:
    if family.watchlist is None:
        replay_cache.into(url, Replay(family.cassette(1), family.source, delist_after=1))
        return
    # A watch-mode day 1 (the replay cache knows no watchlist): replayed once, then copied.
    target = Path(url.removeprefix("sqlite:///"))
    if family.name not in _watched_day1:
        template = target.with_name(f"day1-{family.name}-template.sqlite")
        spec = CrawlSpec(
            family.source,
            mode="replay",
            cassette=family.cassette(1),
            delist_after=1,
            watchlist=str(family.watchlist),
        )
        crawl(spec, url=f"sqlite:///{template}")
        get_engine(f"sqlite:///{template}").dispose()
        _watched_day1[family.name] = template
    source, copy = sqlite3.connect(_watched_day1[family.name]), sqlite3.connect(target)
    try:
        source.backup(copy)
    finally:
        source.close()
        copy.close()


def live(url: str, family: Family) -> str:
    spec = CrawlSpec(
        family.source,
        mode="live",
        delist_after=1,
        settings={**LIVE, **dict(family.settings)},
        watchlist=str(family.watchlist) if family.watchlist else None,
    )
    return crawl(spec, url=url)


def reference(
    family: Family, portal: FakePortal, replay_cache: ReplayCache, folder: Path
) -> Reference:
    """What an undisturbed live day 2 leaves (crawled once per family and module)."""
    if family.name not in _references:
        url = f"sqlite:///{folder / f'reference-{family.name}.sqlite'}"
        day1(replay_cache, url, family)
        before = entries(url, family.source)
        portal.serve(family.cassette(2))
        run_id = live(url, family)
        assert run_row(url, run_id).state == "healthy", run_row(url, run_id).summary
        _references[family.name] = Reference(before, entries(url, family.source))
    return _references[family.name]


def lost_and_invented(got: Entries, ref: Reference, unhealthy: set[str]) -> tuple[int, int]:
    """Entries lost (missing, or removed where the list could prove no absence) and invented
    (unknown to both days, or holding values neither day had), against the references.

    A list in ``unhealthy`` may be as day 1 left it, or as day 2 did for the entries it read
    (an entry new on day 2 whose page never came is not there yet, not lost); every other list
    must be exactly as the undisturbed day 2."""
    lost = invented = 0
    for key in ref.day1.keys() | ref.day2.keys() | got.keys():
        state, was, now = got.get(key), ref.day1.get(key), ref.day2.get(key)
        if key[0] not in unhealthy:
            lost += state is None or (now is not None and state != now)
            invented += now is None and state is not None
            continue
        if state is None and was is None:
            continue  # new on day 2, on the page that never came: the next run reads it
        removed_anew = state is not None and state[0] == "removed" and state != now
        if state is None or (removed_anew and (was is None or was[0] != "removed")):
            lost += 1  # gone, or removed where the undisturbed day 2 did not remove it
        elif state not in (was, now) and state[1] not in {s[1] for s in (was, now) if s}:
            invented += 1
    return lost, invented


@pytest.fixture(
    params=[
        pytest.param(
            name, marks=pytest.mark.browser if FAMILIES[name].settings else pytest.mark.replay
        )
        for name in CHOSEN
    ]
)
def family(request: pytest.FixtureRequest) -> Family:
    return FAMILIES[request.param]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_fault(
    case: Case,
    family: Family,
    fake_portal: FakePortal,
    replay_cache: ReplayCache,
    tmp_path_factory: pytest.TempPathFactory,
    tmp_path: Path,
    netguard: Path,
) -> None:
    expected = case.expect(family)
    assert expected is not None
    ref = reference(family, fake_portal, replay_cache, tmp_path_factory.getbasetemp())
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    day1(replay_cache, url, family)
    fake_portal.serve(family.cassette(2))
    fake_portal.inject(Fault(family.page, case.make(family), case.times))
    run_id = live(url, family)
    assert fake_portal.fired() >= 1, f"the fault never hit {family.page}"

    health = list_health(url, run_id)
    seen = shown(health[family.list_id])
    unhealthy = {name for name, h in health.items() if h.health != "healthy"}
    lost, invented = lost_and_invented(entries(url, family.source), ref, unhealthy)
    delisted = disappeared(url, run_id, unhealthy)
    tally(
        "fault",
        f"{case.name} ({family.name})",
        expected=expected,
        seen=seen,
        tried=fake_portal.fired(),
        lost=lost + len(delisted),
        invented=invented,
    )
    assert seen == expected, health[family.list_id].findings
    assert case.most is None or fake_portal.fired() <= case.most, fake_portal.fired()
    assert (lost, invented, delisted) == (0, 0, [])
    others = {name: shown(h) for name, h in health.items() if name != family.list_id}
    outcome = expected.partition(": ")[2]
    if outcome in family.session:
        assert all(outcome in seen.split(": ")[-1].split(", ") for seen in others.values()), others
        assert run_row(url, run_id).state != "healthy"
    else:
        assert set(others.values()) <= {"healthy"}, others
        assert run_row(url, run_id).state == expected.split(":")[0]
    assert netguard.read_text() == "", "a crawl reached past the fake portal"


@pytest.mark.replay
def test_a_list_that_halves_overnight_is_held(
    fake_portal: FakePortal, replay_cache: ReplayCache, tmp_path: Path, netguard: Path
) -> None:
    """Xiamen's warnings lose half their active entries in one healthy-looking live run: the
    mass-delisting guard holds them (``pending``), no ``delisted`` event, nothing else moves."""
    from tests.test_pending import HALF, portal_day

    family = FAMILIES["xmtravel"]
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    day1(replay_cache, url, family)
    before = entries(url, family.source)
    fake_portal.serve(portal_day(tmp_path, "half", 2, HALF))
    run_id = live(url, family)

    table = PendingDelisting.__table__
    with get_engine(url).connect() as conn:
        held = conn.execute(select(table).where(table.c.run_id == run_id)).all()
    delisted = disappeared(url, run_id, {family.list_id})
    after = entries(url, family.source)
    removed = [k for k, (state, _) in after.items() if state == "removed"]
    invented = [k for k in after if k not in before]
    health = list_health(url, run_id)[family.list_id].health
    held_cases = {row.record_key for row in held}
    seen = f"{health}, {'held' if held else 'not held'}, {len(delisted)} delisted"
    tally(
        "fault",
        f"a list that halves overnight ({family.name})",
        expected="healthy, held, 0 delisted",
        seen=seen,
        lost=len(removed),
        invented=len(invented),
    )
    assert seen == "healthy, held, 0 delisted"
    assert len(held_cases) == len(held) >= 10
    assert (removed, invented) == ([], [])
    assert netguard.read_text() == ""
