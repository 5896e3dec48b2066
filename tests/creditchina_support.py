"""Shared pieces of the Credit China tests: the model's fixtures and replaying them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pipeline.run import CrawlSpec, crawl
from tests.helpers import FIXTURES, interaction

CC = FIXTURES / "creditchina"
CC_DAY1 = CC / "creditchina-day1.yaml"
CC_DAY2 = CC / "creditchina-day2.yaml"
WATCHLIST = CC / "watchlist.txt"
API = "https://public.creditchina.gov.cn/private-api/"
PORTAL = "https://www.creditchina.gov.cn/xinyongxinxi/index.html"
LISTS = (
    "creditchina.sxbzxr",
    "creditchina.xzfj",
    "creditchina.xzhc",
    "creditchina.zdsswf",
    "creditchina.watch_xzcf",
    "creditchina.watch_xzxk",
    "creditchina.watch_sxcj",
)

# The browser layer: tests/conftest.py skips these tests when no Chromium can be launched.
needs_chromium = pytest.mark.browser


def replay_cc(
    url: str,
    cassette: Path,
    *,
    delist_after: int = 1,
    watchlist: Path | None = WATCHLIST,
    **options: Any,
) -> str:
    return crawl(
        CrawlSpec(
            source="creditchina",
            mode="replay",
            cassette=cassette,
            delist_after=delist_after,
            watchlist=str(watchlist) if watchlist else None,
            **options,
        ),
        url=url,
    )


def cc_truth(name: str) -> Any:
    return json.loads((CC / name).read_text(encoding="utf-8"))


def api_interaction(data: dict[str, Any], endpoint: str, *parts: str) -> dict[str, Any]:
    """The one interaction of ``endpoint`` whose URI contains every ``parts``."""
    matches = [
        i
        for i in data["interactions"]
        if i["request"]["uri"].startswith(API + endpoint + "?")
        and all(part in i["request"]["uri"] for part in parts)
    ]
    assert len(matches) == 1, f"{len(matches)} interactions of {endpoint} with {parts}"
    return matches[0]


def portal_interaction(data: dict[str, Any]) -> dict[str, Any]:
    return interaction(data, "/xinyongxinxi/index.html")


def answer(target: dict[str, Any], status: int, body: str | bytes, content_type: str) -> None:
    """Make ``target`` answer with this status and body (headers kept, length fixed)."""
    response = target["response"]
    response["status"] = {"code": status, "message": ""}
    response["body"] = {"string": body}
    size = len(body.encode("utf-8") if isinstance(body, str) else body)
    response["headers"]["Content-Length"] = [str(size)]
    response["headers"]["Content-Type"] = [content_type]
