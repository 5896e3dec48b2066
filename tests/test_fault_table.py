"""The fault table: every fetch outcome of SCHEMA.md's run-health vocabulary, produced by a
replay on top of a healthy day 1, gives the expected run state and list health, and changes
nothing: no event at all (so no `delisted`), every entry's status, content and absence counter
as day 1 left them.

The second run replays day 1 again with one fault, so a healthy list has nothing to report and
anything raised would be the fault's doing. Xiamen produces most outcomes (the page edits of
tests/test_run_health.py, plus a timeout injected in the crawl's process, since no cassette
can hold one); the session refusals only Credit China has come from
tests/test_creditchina_faults.py.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from crawlers import settings as crawl_settings
from pipeline.run import CrawlSpec, crawl
from storage.engine import get_engine
from storage.models import Record
from tests.creditchina_support import CC_DAY1, needs_chromium, replay_cc
from tests.helpers import (
    DAY1,
    events,
    interaction,
    list_health,
    load_cassette,
    run_row,
    save_cassette,
)
from tests.test_creditchina_faults import captcha_page, day1_copy, session_rejected
from tests.test_run_health import BASE, PAGE2, answer_500, drift_layout, strip_rows

ROOT = Path(__file__).resolve().parent.parent
WARNING, GOOD = "xmtravel.warning", "xmtravel.good"
PAGE1 = "xygs-main.html"
HONOURS = "lhxx-main.html"


class TimeoutInjector:
    """Downloader middleware for the crawl's own process: requests to the URLs in the
    ``CW_TEST_TIMEOUT`` setting time out (after Scrapy's retries), before the cassette could
    answer them."""

    def __init__(self, urls: list[str]) -> None:
        self.urls = set(urls)

    @classmethod
    def from_crawler(cls, crawler: Any) -> TimeoutInjector:
        return cls(crawler.settings.getlist("CW_TEST_TIMEOUT"))

    def process_request(self, request: Any, spider: Any = None) -> None:
        if request.url in self.urls:
            from twisted.internet.error import TimeoutError

            raise TimeoutError(f"Getting {request.url} took longer than 60.0 seconds.")


# --- Xiamen faults: each edits the cassette (or the crawl) and returns the page it hit -------
def times_out(data: dict[str, Any]) -> str:
    return BASE + PAGE2  # see TimeoutInjector; the cassette is left as it is


def answer_412(data: dict[str, Any]) -> str:
    response = interaction(data, PAGE1)["response"]
    response["status"] = {"code": 412, "message": "Precondition Failed"}
    response["body"] = {"string": "<html><script>/* challenge */</script></html>"}
    return BASE + PAGE1


def answer_403(data: dict[str, Any]) -> str:
    response = interaction(data, HONOURS)["response"]
    response["status"] = {"code": 403, "message": "Forbidden"}
    response["body"] = {"string": "<html><body>403 Forbidden</body></html>"}
    return BASE + HONOURS


def row_without_link(data: dict[str, Any]) -> str:
    """A list row whose 主体名称 is not a link: the page cannot be read as promised."""
    response = interaction(data, PAGE2)["response"]
    html = response["body"]["string"].decode("gbk")
    row = re.findall(r"<tr><td>\d+</td>.*?</tr>", html)[0]
    html = html.replace(row, re.sub(r"<a [^>]*>(.*?)</a>", r"\1", row))
    response["body"]["string"] = html.encode("gbk")
    return BASE + PAGE2


@dataclass(frozen=True)
class Fault:
    damage: Callable[[dict[str, Any]], str]
    run_state: str
    lists: dict[str, str]  # list → health
    source: str = "xmtravel"
    settings: dict[str, str] = field(default_factory=dict)


def injected_timeout(url: str) -> dict[str, str]:
    middlewares = {
        **crawl_settings.DOWNLOADER_MIDDLEWARES,
        f"{__name__}.TimeoutInjector": 940,  # before the cassette answers (950)
    }
    return {"DOWNLOADER_MIDDLEWARES": json.dumps(middlewares), "CW_TEST_TIMEOUT": url}


CC_LISTS = (
    "creditchina.sxbzxr",
    "creditchina.xzfj",
    "creditchina.xzhc",
    "creditchina.zdsswf",
    "creditchina.watch_xzcf",
    "creditchina.watch_xzxk",
    "creditchina.watch_sxcj",
)
EVERY_CC_LIST_FAILED = dict.fromkeys(CC_LISTS, "failed")

# outcome → what produces it, and the verdict it must get. A list whose own pages fail can
# still hold entries (the subjects' profile pages link to them): degraded, not failed.
FAULTS: dict[str, Fault] = {
    "http_error": Fault(answer_500, "degraded", {WARNING: "degraded", GOOD: "healthy"}),
    "timeout": Fault(
        times_out,
        "degraded",
        {WARNING: "degraded", GOOD: "healthy"},
        settings=injected_timeout(BASE + PAGE2),
    ),
    "waf_challenge": Fault(answer_412, "degraded", {WARNING: "degraded", GOOD: "healthy"}),
    "session_rejected": Fault(session_rejected, "failed", EVERY_CC_LIST_FAILED, "creditchina"),
    "captcha_required": Fault(captcha_page, "failed", EVERY_CC_LIST_FAILED, "creditchina"),
    "rate_limited": Fault(answer_403, "degraded", {WARNING: "healthy", GOOD: "degraded"}),
    "empty": Fault(strip_rows, "degraded", {WARNING: "degraded", GOOD: "healthy"}),
    "malformed": Fault(row_without_link, "degraded", {WARNING: "degraded", GOOD: "healthy"}),
    "layout_drift": Fault(drift_layout, "degraded", {WARNING: "degraded", GOOD: "healthy"}),
}


def test_the_table_covers_every_outcome() -> None:
    from core.outcomes import OUTCOMES

    assert sorted(FAULTS) == sorted(set(OUTCOMES) - {"ok"})


def records_state(url: str) -> dict[tuple[str, str], tuple[str, str, int]]:
    table = Record.__table__
    with get_engine(url).connect() as conn:
        return {
            (r.list, r.record_key): (r.status, r.content_hash, r.absent_runs)
            for r in conn.execute(select(table))
        }


@pytest.fixture(scope="module")
def day1_databases(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """Per source, a SQLite database holding the healthy day-1 run, made once when first
    asked for (a fault's database is a copy)."""
    made: dict[str, Path] = {}

    def get(source: str) -> Path:
        if source not in made:
            path = tmp_path_factory.mktemp(f"{source}-day1") / "creditwatch.sqlite"
            url = f"sqlite:///{path}"
            if source == "creditchina":
                run_id = replay_cc(url, CC_DAY1)
            else:
                run_id = crawl(
                    CrawlSpec(source=source, mode="replay", cassette=DAY1, delist_after=1),
                    url=url,
                )
            health = {h.health for h in list_health(url, run_id).values()}
            # Credit China's tax list is capped by the portal: read in part by design, it is
            # healthy (partial), no longer degraded on every run.
            assert health == {"healthy"}
            made[source] = path
        return made[source]

    return get


def params() -> list[Any]:
    return [
        pytest.param(
            outcome, marks=needs_chromium if fault.source == "creditchina" else pytest.mark.replay
        )
        for outcome, fault in FAULTS.items()
    ]


@pytest.mark.parametrize("outcome", params())
def test_fault_gives_its_verdict_and_changes_nothing(
    outcome: str,
    day1_databases: Callable[[str], Path],
    tmp_path: Path,
    netguard: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fault = FAULTS[outcome]
    cassette_day1 = CC_DAY1 if fault.source == "creditchina" else DAY1
    data = load_cassette(cassette_day1)
    url_hit = fault.damage(data)
    cassette = save_cassette(data, tmp_path / "day1-damaged.yaml")
    db_url = day1_copy(day1_databases(fault.source), tmp_path)
    before = records_state(db_url)
    assert before
    if fault.settings:  # the crawl's process must find TimeoutInjector
        monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), os.environ["PYTHONPATH"]]))

    if fault.source == "creditchina":
        run_id = replay_cc(db_url, cassette)
    else:
        spec = CrawlSpec(
            source=fault.source,
            mode="replay",
            cassette=cassette,
            delist_after=1,
            settings=fault.settings,
        )
        run_id = crawl(spec, url=db_url)

    run = run_row(db_url, run_id)
    health = list_health(db_url, run_id)
    assert run.state == fault.run_state
    assert {name: h.health for name, h in health.items()} == fault.lists
    # The outcome is on record, at the page it hit, on the lists it made unhealthy.
    assert run.summary["outcomes"][outcome]["count"] >= 1
    for name, verdict in fault.lists.items():
        if verdict != "healthy":
            named = [f for f in health[name].findings if f.get("outcome") == outcome]
            assert named and url_hit in named[0]["urls"], health[name].findings
    # Nothing changed: no event, no status, content or absence counter moved.
    assert events(db_url, run_id) == []
    assert records_state(db_url) == before
    assert netguard.read_text() == ""
