"""``creditwatch probe creditchina``: which outcome each step of a Credit China session gets today.

A diagnostic for maintainers with network access: it opens the portal page in Chromium as the
spider does, waits for the site's scripts, then makes one call of each kind from inside the
page (the first page of every list, and for ``--keyword`` the subject search, details and one
page of each watched record type), at the registry's minimum interval. It prints one line per
step and stores nothing. Whether the site's scripts still clear the live WAF cannot be shown
offline: against the live site this is untested here. ``--replay CASSETTE`` runs the same steps
against a cassette, which is how it is tested.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.outcomes import outcome_for_status
from core.registry import get_source
from crawlers.browser import environment_proxy, fetch_in_page, launch_options, unreachable
from crawlers.creditchina_api import (
    DETAILS_PARAMS,
    RECORDS_PARAMS,
    RECORDS_SORT,
    SEARCH_PARAMS,
    SEARCH_SUBJECT,
    SUBJECT_DETAILS,
    SUBJECT_RECORDS,
    VOLATILE_PARAMS,
    api_url,
    classify,
    list_data,
    subject_hits,
)

SOURCE = "creditchina"


@dataclass(frozen=True)
class Step:
    step: str
    url: str
    outcome: str
    status: int | None = None
    detail: str | None = None
    seconds: float = 0.0

    def line(self) -> str:
        status = "—" if self.status is None else str(self.status)
        detail = f"  {self.detail}" if self.detail else ""
        took = f"{self.seconds:6.2f}s"
        return f"{self.step:<28} {self.outcome:<17} {status:>4} {took}  {self.url}{detail}"


class Prober:
    """Runs the steps in one page, spacing the API calls by the registry's interval."""

    def __init__(self, page: Any, conf: dict[str, Any], interval: float) -> None:
        self.page = page
        self.conf = conf
        self.interval = interval
        self.last: float | None = None
        self.steps: list[Step] = []

    async def call(self, name: str, url: str) -> Any:
        """One in-page call as a step; returns the envelope's data when ok."""
        if self.interval and self.last is not None:
            await asyncio.sleep(max(0.0, self.last + self.interval - time.monotonic()))
        self.last = started = time.monotonic()
        got = await fetch_in_page(self.page, url, volatile=VOLATILE_PARAMS)
        took = time.monotonic() - started
        if got.status is None:
            self.steps.append(Step(name, got.url, "http_error", None, got.error, took))
            return None
        reply = classify(got.status, got.body)
        detail = reply.detail
        if reply.outcome == "ok":
            try:
                found = list_data(reply.data)
                detail = f"total {found.total}, {len(found.rows)} rows"
            except ValueError:
                detail = None
        self.steps.append(Step(name, got.url, reply.outcome, got.status, detail, took))
        return reply.data if reply.outcome == "ok" else None


async def run_probe(
    keyword: str | None = None, cassette: Path | None = None, timeout_s: float = 20.0
) -> list[Step]:
    """Every step's outcome; stops after the portal page when that already fails."""
    from playwright.async_api import async_playwright

    source = get_source(SOURCE)
    conf = source.raw
    session = conf["session"]
    portal, base = session["portal_url"], session["api_base"]
    if cassette is None:
        problem = unreachable(
            [portal, base], float(session.get("connect_timeout", 5.0)), environment_proxy()
        )
        if problem:
            return [Step("reach hosts", portal, "http_error", None, problem)]
    interval = 0.0 if cassette else float(session.get("min_interval", 10.0))
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(**launch_options())
        try:
            page = await browser.new_page()
            if cassette is not None:
                from crawlers.browser import route_through_cassette
                from crawlers.cassette import CassetteBridge

                bridge = CassetteBridge.open(
                    cassette,
                    mode="replay",
                    filter_query_parameters=source.filter_query_parameters,
                    allow_playback_repeats=False,  # a challenge, then the page it reloads into
                )
                await route_through_cassette(page, bridge)
            prober = Prober(page, conf, interval)
            if not await portal_step(
                prober, portal, timeout_s, 2.0 if cassette else float(session["challenge_wait"])
            ):
                return prober.steps
            for raw in conf["lists"]:
                api = raw.get("api")
                if api:
                    params = {
                        **api.get("params", {}),
                        "page": 1,
                        "pageSize": api.get("page_size", 10),
                    }
                    await prober.call(f"list {raw['id']}", api_url(base, api["endpoint"], params))
            if keyword:
                await watch_steps(prober, base, keyword, conf)
            return prober.steps
        finally:
            await browser.close()


async def portal_step(prober: Prober, portal: str, timeout_s: float, challenge_wait: float) -> bool:
    """The portal page; a 412 challenge counts as cleared once a reload answers below 400."""
    page = prober.page
    statuses: list[int] = []

    def on_response(response: Any) -> None:
        if response.request.is_navigation_request() and response.frame == page.main_frame:
            statuses.append(response.status)

    page.on("response", on_response)
    started = time.monotonic()
    try:
        response = await page.goto(portal, wait_until="load", timeout=timeout_s * 1000)
    except Exception as exc:
        outcome = "timeout" if "Timeout" in type(exc).__name__ else "http_error"
        detail = f"{type(exc).__name__}: {exc}"
        prober.steps.append(Step("portal page", portal, outcome, None, detail))
        return False
    status = response.status if response else None
    outcome, detail = "ok", None
    if status == 412:
        outcome, detail = "waf_challenge", f"challenge did not clear within {challenge_wait:g} s"
        deadline = time.monotonic() + challenge_wait
        while time.monotonic() < deadline:
            await asyncio.sleep(0.25)
            if statuses and statuses[-1] < 400:
                outcome, detail = "ok", "challenge cleared by the site's scripts"
                break
    elif status is None or status >= 400:
        outcome = outcome_for_status(status or 599)
    cookies = sorted(c["name"] for c in await page.context.cookies())
    detail = "; ".join(
        part for part in (detail, f"cookies: {', '.join(cookies) or 'none'}") if part
    )
    prober.steps.append(
        Step("portal page", portal, outcome, status, detail, time.monotonic() - started)
    )
    return outcome == "ok"


async def watch_steps(prober: Prober, base: str, keyword: str, conf: dict[str, Any]) -> None:
    search = {"keyword": keyword, **SEARCH_PARAMS, "page": 1, "pageSize": 10}
    data = await prober.call("subject search", api_url(base, SEARCH_SUBJECT, search))
    try:
        hits = subject_hits(data) if data is not None else []
    except ValueError:
        hits = []
    if not hits:
        return
    hit = hits[0]
    details = {
        "keyword": hit.name,
        **DETAILS_PARAMS,
        "entityType": hit.entity_type,
        "uuid": hit.uuid,
        "tyshxydm": hit.code or "",
    }
    await prober.call("subject details", api_url(base, SUBJECT_DETAILS, details))
    size = conf.get("watch", {}).get("page_size", 10)
    for raw in conf["lists"]:
        if "watch" in raw:
            params = {
                **RECORDS_PARAMS,
                "type": raw["watch"]["type"],
                "entityType": hit.entity_type,
                "keyword": hit.name,
                "tyshxydm": hit.code or "",
                "page": 1,
                "pageSize": size,
                **RECORDS_SORT,
            }
            await prober.call(
                f"records {raw['watch']['type']}", api_url(base, SUBJECT_RECORDS, params)
            )


def probe(keyword: str | None = None, cassette: Path | None = None) -> list[Step]:
    return asyncio.run(run_probe(keyword=keyword, cassette=cassette))
