"""In-page calls get what the middlewares they bypass give a Scrapy download
(crawlers.spiders.inpage): a transient failure is asked again, and an answer that holds no
data is named for what it is. Replayed on 信用山东's model, whose list calls the page makes.

The live side (through the fake portal: one 503, one stall, a 10 MB body, a challenge, a
captcha or an empty body in place of a page) is in tests/faults/test_fetch_faults.py."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
from scrapy.settings import Settings

from crawlers.browser import PageFetch
from crawlers.spiders.creditsearch import CreditSearchSpider
from crawlers.spiders.inpage import REDIRECT_LOOP
from pipeline.run import CrawlSpec, crawl
from tests.helpers import FIXTURES, fetches, list_health, load_cassette, save_cassette
from tests.test_conformance import everything

pytestmark = pytest.mark.browser

SOURCE = "shandong_blacklist"
LIST = f"{SOURCE}.blacklist"
DAY1 = FIXTURES / SOURCE / f"{SOURCE}-day1.yaml"
PAGE_2 = "&page=2&"


def with_page_2(tmp_path: Path, *answers: dict[str, Any]) -> Path:
    """Day 1 with page 2 answered by ``answers`` in turn (each a vcrpy response)."""
    data = load_cassette(DAY1)
    kept: list[dict[str, Any]] = []
    for item in data["interactions"]:
        if PAGE_2 not in item["request"]["uri"]:
            kept.append(item)
            continue
        kept += [{"request": item["request"], "response": answer} for answer in answers]
    return save_cassette({**data, "interactions": kept}, tmp_path / "day1-page2.yaml")


def page_2(answer: dict[str, Any] | None = None, **changes: Any) -> dict[str, Any]:
    data = load_cassette(DAY1)
    (item,) = [i for i in data["interactions"] if PAGE_2 in i["request"]["uri"]]
    return {**copy.deepcopy(item["response"]), **changes} if answer is None else answer


UNAVAILABLE = page_2(
    status={"code": 503, "message": "Service Unavailable"},
    headers={"Content-Type": ["text/html"]},
    body={"string": "<html><body>busy</body></html>"},
)


def replay(tmp_path: Path, cassette: Path) -> tuple[str, str]:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    spec = CrawlSpec(SOURCE, mode="replay", cassette=cassette, delist_after=1)
    return url, crawl(spec, url=url)


def test_one_503_then_the_page_is_asked_again_and_healthy(tmp_path: Path, netguard: Path) -> None:
    url, run = replay(tmp_path, with_page_2(tmp_path, UNAVAILABLE, page_2()))
    health = list_health(url, run)[LIST]
    assert health.health == "healthy", health.findings
    names = {row["entity_name"] for row in everything(url, SOURCE)}
    assert names == {row["entity_name"] for row in everything_of_day1(tmp_path)}
    assert len(names) == 10  # all three pages read
    assert netguard.read_text() == ""


def test_a_lasting_503_is_the_portals_answer_not_a_cassette_miss(
    tmp_path: Path, netguard: Path
) -> None:
    """The retry finds no further recorded answer: the recorded 503 is what the run files."""
    url, run = replay(tmp_path, with_page_2(tmp_path, UNAVAILABLE))
    health = list_health(url, run)[LIST]
    assert health.health == "degraded", health.findings
    (failed,) = [f for f in fetches(url, run) if f.outcome != "ok"]
    assert (failed.outcome, failed.status, failed.detail) == ("http_error", 503, "HTTP 503")
    assert netguard.read_text() == ""


@pytest.mark.parametrize(
    ("answer", "outcome"),
    [
        (page_2(body={"string": ""}), "empty"),
        (
            page_2(
                headers={"Content-Type": ["text/html; charset=utf-8"]},
                body={"string": "<html><head><script>$_ts={};$_ts.nsd=1;</script></head></html>"},
            ),
            "waf_challenge",
        ),
    ],
    ids=["empty body", "challenge page"],
)
def test_a_page_without_data_is_named_not_malformed(
    tmp_path: Path, netguard: Path, answer: dict[str, Any], outcome: str
) -> None:
    url, run = replay(tmp_path, with_page_2(tmp_path, answer))
    health = list_health(url, run)[LIST]
    assert health.health == "degraded"
    assert [f.outcome for f in fetches(url, run) if f.outcome != "ok"] == [outcome]
    assert netguard.read_text() == ""


@pytest.mark.parametrize(
    ("got", "asked_again"),
    [
        (PageFetch("u", "GET", error=f"{REDIRECT_LOOP} (TypeError: Failed to fetch)"), False),
        (
            PageFetch("u", "GET", error="net::ERR_CONNECTION_RESET (TypeError: Failed to fetch)"),
            True,
        ),
        (PageFetch("u", "GET", status=503), True),
        (PageFetch("u", "POST", error="net::ERR_CONNECTION_RESET"), False),
    ],
    ids=["redirect loop", "reset", "503", "POST"],
)
def test_a_redirect_loop_is_not_asked_again(got: PageFetch, asked_again: bool) -> None:
    """Chromium followed the loop 20 times already (as Scrapy's plain path, no second try);
    a call with no answer otherwise is asked again. (A replay cannot show the loop: Chromium
    follows a redirect past the cassette's route; the live matrix counts the tries.)"""
    spider = CreditSearchSpider(name="shandong_blacklist")
    spider.settings = Settings({"RETRY_HTTP_CODES": [503]})
    assert spider.transient(got) is asked_again


def everything_of_day1(tmp_path: Path) -> list[Any]:
    url = f"sqlite:///{tmp_path / 'reference.sqlite'}"
    crawl(CrawlSpec(SOURCE, mode="replay", cassette=DAY1, delist_after=1), url=url)
    return everything(url, SOURCE)
