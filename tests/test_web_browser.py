"""The web app in a real browser: `creditwatch serve` on 127.0.0.1 over demo-like data (two
replayed days of Xiamen's lists, the national tourism blacklist and Beijing's red list),
headless Chromium with JavaScript off, as on a desktop (1280×800) and a phone (390×844).

Every page is checked for what a reader sees: no horizontal overflow at either width, no
English word in the Chinese UI outside scraped values and codes, text contrast of at least
4.5:1, honours styled apart from blacklists; then the flows: search a list, open an entity,
download a snapshot file and check it against its manifest, and (when their routes are
there) the changes page, the global search and a list's chart.

Screenshots: ``docs/screenshots/<page>-<desktop|mobile>.png`` are rewritten only with
``UPDATE_SCREENSHOTS=1``; otherwise they go to test-artifacts/web/ (and are still taken)."""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from core.catalogue import word
from core.registry import get_source, load_registry
from crawlers.browser import CHROMIUM_ARGS
from export.snapshots import MANIFEST, write_snapshot
from storage.asof import export_records
from storage.engine import get_engine
from storage.models import Event
from tests.cassette_support import chromium_executable, playwright_browser_available
from tests.helpers import FIXTURES, replay

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts" / "web"
SCREENSHOTS = ROOT / "docs" / "screenshots"
UPDATE = os.environ.get("UPDATE_SCREENSHOTS") == "1"
_AVAILABLE, _WHY_NOT = playwright_browser_available()
pytestmark = [pytest.mark.browser, pytest.mark.skipif(not _AVAILABLE, reason=_WHY_NOT)]

VIEWPORTS = {"desktop": (1280, 800), "mobile": (390, 844)}
WARNING = "xmtravel.warning"
GOOD = "xmtravel.good"
BLACKLIST = "mct_tourism.blacklist"
REDLIST_SOURCE = "beijing_redlist"  # a city's honours list
JIAHE = "uscc-91350213MA028DE74Q"  # 厦门嘉禾酒店有限公司: on both Xiamen lists
JIAHE_USCC = "91350213MA028DE74Q"
# ASCII words the Chinese UI may show outside scraped values and codes: names of formats,
# standards and the software, the language switch's own name (and the registry's source ids,
# which run ids start with).
ALLOWED_WORDS = {
    "creditwatch", "JSON", "API", "OpenAPI", "USCC", "Atom", "CSV", "JSONL", "Parquet",
    "SHA", "GET", "UTC", "HTTP", "English", "ID",
}  # fmt: skip
# What is not the UI's own text: scraped values (in <bdi>), codes, ids, file names.
NOT_UI = "bdi, code, .code, small.id, pre, time, script, style, .visually-hidden"

# In the page (JavaScript is off for the page's own scripts; Playwright's evaluation still
# runs): the UI's own words, and every text's contrast against its effective background.
UI_WORDS_JS = """(skip) => {
  const words = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const parent = node.parentElement;
    if (!parent || parent.closest(skip)) continue;
    if (!parent.getClientRects().length) continue;  // not rendered (a closed <details>)
    for (const w of node.textContent.match(/[A-Za-z][A-Za-z_'-]*[A-Za-z]/g) || []) words.push(w);
  }
  return words;
}"""
CONTRAST_JS = """() => {
  const rgb = (s) => (s.match(/[0-9.]+/g) || []).map(Number);
  const lum = ([r, g, b]) => {
    const c = [r, g, b].map((v) => {
      v /= 255;
      return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4;
    });
    return 0.2126 * c[0] + 0.7152 * c[1] + 0.0722 * c[2];
  };
  const background = (el) => {
    for (; el; el = el.parentElement) {
      const c = rgb(getComputedStyle(el).backgroundColor);
      if (c.length === 3 || (c.length === 4 && c[3] > 0)) return c.slice(0, 3);
    }
    return [255, 255, 255];
  };
  const worst = [];
  const seen = new Set();
  for (const el of document.body.querySelectorAll("*")) {
    if (!el.getClientRects().length || el.closest(".visually-hidden, iframe")) continue;
    const own = [...el.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim());
    if (!own) continue;
    const style = getComputedStyle(el);
    const key = style.color + "/" + el.className + "/" + el.tagName;
    if (seen.has(key)) continue;
    seen.add(key);
    const [a, b] = [lum(rgb(style.color)), lum(background(el))].sort((x, y) => y - x);
    const ratio = (a + 0.05) / (b + 0.05);
    if (ratio < 4.5) worst.push([el.tagName + "." + el.className, style.color, ratio.toFixed(2)]);
  }
  return worst;
}"""
OVERFLOW_JS = """() => {
  const wide = [...document.body.querySelectorAll("*")].filter(
    (el) => el.getBoundingClientRect().right > innerWidth + 1 && !el.closest("table")
  ).slice(0, 5).map((el) => el.tagName + "." + el.className);
  return [document.documentElement.scrollWidth, innerWidth, wide];
}"""


@dataclass(frozen=True)
class Served:
    base: str
    url: str
    root: Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """Two days of Xiamen's lists (a city: warnings and honours), of the national tourism
    blacklist and of Beijing's red list in SQLite, a CSV snapshot, and the server."""
    root = tmp_path_factory.mktemp("served")
    url = f"sqlite:///{root / 'creditwatch.sqlite'}"
    for source in ("xmtravel", "mct_tourism", REDLIST_SOURCE):
        for day in (1, 2):  # in turn: the conductor migrates the database in-process
            replay(url, FIXTURES / source / f"{source}-day{day}.yaml", 1, source)
    with get_engine(url).connect() as conn:
        write_snapshot(conn, root / "snapshots" / "xmtravel-csv", sources=["xmtravel"], fmt="csv")
    get_engine(url).dispose()
    port = free_port()
    log = (root / "serve.log").open("wb")
    server = subprocess.Popen(
        [sys.executable, "-m", "pipeline.cli", "serve", "--host", "127.0.0.1",
         "--port", str(port), "--snapshots", str(root / "snapshots")],
        env={**os.environ, "DATABASE_URL": url, "CREDITWATCH_DATA_DIR": str(root)},
        stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(base + "/", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail("creditwatch serve did not start:\n" + (root / "serve.log").read_text())
            time.sleep(0.3)
        yield Served(base, url, root)
    finally:
        server.terminate()
        server.wait(timeout=20)
        log.close()


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    options: dict[str, Any] = {"headless": True, "args": CHROMIUM_ARGS, "timeout": 30_000}
    if chromium_executable():
        options["executable_path"] = chromium_executable()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(**options)
        yield browser
        browser.close()


def delivered(served: Served) -> set[str]:
    """Which of the changes page, the global search and list charts the running app has
    (other parts of the app, checked here once they are there)."""
    pages = {
        "changes": "/changes",
        "search": "/search?q=x",
        "charts": f"/charts/lists/{WARNING}.svg",
    }
    return {
        name
        for name, path in pages.items()
        if httpx.get(served.base + path, timeout=10).status_code != 404
    }


def shot(page: Any, name: str, committed: bool = False) -> Path:
    """A full-page screenshot: a committed one (docs/screenshots) is rewritten only with
    UPDATE_SCREENSHOTS=1; the rest, and those otherwise, go to test-artifacts/web/."""
    folder = SCREENSHOTS if UPDATE and committed else ARTIFACTS
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 1000
    return path


def check_page(page: Any, name: str, width: str) -> None:
    """What every page must be at every width: no sideways scrolling, no English in the
    Chinese UI, readable contrast; then its screenshot."""
    scroll, inner, wide = page.evaluate(OVERFLOW_JS)
    assert scroll <= inner, f"{name} at {width}: {scroll}px wide in {inner}px ({wide})"
    if page.evaluate("document.documentElement.lang") == "zh":
        english = set(page.evaluate(UI_WORDS_JS, NOT_UI)) - ALLOWED_WORDS - set(load_registry())
        assert not english, f"{name} at {width}: English in the Chinese UI: {sorted(english)}"
    low = page.evaluate(CONTRAST_JS)
    assert not low, f"{name} at {width}: contrast under 4.5:1: {low}"
    shot(page, f"{name}-{width}", committed=True)


def visit(page: Any, served: Served, path: str, status: int = 200) -> None:
    answer = page.goto(served.base + path)
    assert answer is not None and answer.status == status, (path, answer and answer.status)


def delisted_on_day_two(served: Served) -> dict[str, Any]:
    """A Xiamen entry delisted by the second run, from the stored events."""
    events = Event.__table__
    with get_engine(served.url).connect() as conn:
        row = conn.execute(
            select(events.c.entity_name, events.c.entity_id, events.c.list)
            .where(events.c.event == "delisted", events.c.list == WARNING)
            .order_by(events.c.id)
        ).first()
    assert row is not None, "the Xiamen replay delists nothing on day 2"
    return dict(row._mapping)


@pytest.mark.parametrize("width", list(VIEWPORTS))
def test_pages_fit_speak_chinese_and_style_honours_apart(
    served: Served, chromium: Any, width: str
) -> None:
    w, h = VIEWPORTS[width]
    context = chromium.new_context(
        java_script_enabled=False, viewport={"width": w, "height": h}, locale="zh-CN"
    )
    page = context.new_page()

    visit(page, served, "/?lang=zh")
    assert page.locator("html").get_attribute("lang") == "zh"
    # Honours and blacklists: badges of their own, coloured apart.
    good = page.locator(f'tr[id="list-{GOOD}"] .kind.good')
    black = page.locator(f'tr[id="list-{BLACKLIST}"] .kind.blacklist')
    red = page.locator("tr.kind-redlist .kind.redlist").first
    assert good.inner_text() == word("list_kind", "good", "zh")
    assert black.inner_text() == word("list_kind", "blacklist", "zh")
    colours = {
        badge.evaluate("el => getComputedStyle(el).backgroundColor") for badge in (good, black, red)
    }
    assert len(colours) == 2  # honours (good, redlist) alike, the blacklist apart
    assert good.evaluate("el => getComputedStyle(el).backgroundColor") != black.evaluate(
        "el => getComputedStyle(el).backgroundColor"
    )
    assert "北京时间" in page.locator("#source-xmtravel .meta").inner_text()
    check_page(page, "index", width)

    visit(page, served, f"/lists/{WARNING}")
    with get_engine(served.url).connect() as conn:
        current, _ = export_records(conn, "xmtravel", [WARNING])
    rows = page.locator("#entries tbody tr")
    assert rows.count() == min(50, len(current)) > 0
    check_page(page, "list", width)

    visit(page, served, f"/entities/{JIAHE}")
    assert page.locator("#entity-name").inner_text() == "厦门嘉禾酒店有限公司"
    listings = page.locator("#listings tbody tr")
    kinds = {listings.nth(i).get_attribute("class").split()[-1] for i in range(listings.count())}
    assert kinds == {"kind-good", "kind-warning"}
    first_cell = page.locator("#listings tbody tr td[data-label]").first
    label = first_cell.evaluate("el => getComputedStyle(el, '::before').content")
    header_hidden = page.locator("#listings thead").evaluate(
        "el => el.getBoundingClientRect().width"
    )
    if width == "mobile":  # a card: the column's label before the value, no header row
        assert label == json.dumps(first_cell.get_attribute("data-label"), ensure_ascii=False)
        assert header_hidden <= 1
    else:
        assert label in ("none", "normal") and header_hidden > 300
    check_page(page, "entity", width)

    visit(page, served, "/snapshots")
    assert "否" in page.locator("#snapshot-xmtravel-csv dl").inner_text()  # not redacted
    check_page(page, "snapshots", width)

    visit(page, served, "/api")
    assert page.locator("section.endpoint").count() >= 7
    assert page.locator('section.endpoint [lang="en"]').count() == 0  # every route described
    check_page(page, "api", width)

    visit(page, served, "/lists/xmtravel.nosuch", 404)
    assert page.locator("h1").inner_text() == "未找到"
    assert page.locator("details.error-detail").get_attribute("open") is None
    check_page(page, "error", width)
    visit(page, served, f"/lists/{WARNING}?from=yesterday", 422)
    assert "年-月-日" in page.locator(".error-hint").inner_text()
    check_page(page, "error-422", width)

    present = delivered(served)
    if "changes" in present:
        delisted = delisted_on_day_two(served)
        visit(page, served, "/changes")
        assert delisted["entity_name"] in page.locator("main").inner_text()
        check_page(page, "changes", width)
    if "search" in present:
        visit(page, served, f"/search?q={JIAHE_USCC}")
        if "/entities/" not in page.url:  # a results page: the entity is its first hit
            page.locator(f'a[href="/entities/{JIAHE}"]').first.click()
            page.wait_for_load_state()
        assert page.url.endswith(f"/entities/{JIAHE}")
        visit(page, served, "/search?q=厦门")
        check_page(page, "search", width)
    if "charts" in present:
        visit(page, served, f"/lists/{WARNING}")
        images = page.locator('main img[src^="/charts/"]')
        assert images.count() >= 1, "a chart route but no chart on the list page"
        for i in range(images.count()):
            assert images.nth(i).evaluate("img => img.complete && img.naturalWidth") > 0
    context.close()


def test_search_open_entity_download_snapshot(
    served: Served, chromium: Any, tmp_path: Path
) -> None:
    with get_engine(served.url).connect() as conn:
        current, _ = export_records(conn, "xmtravel", [WARNING])
    target = next(r for r in current if r["uscc"])

    context = chromium.new_context(java_script_enabled=False, accept_downloads=True)
    page = context.new_page()
    page.goto(served.base + "/?lang=en")
    assert page.locator(f'a[href="/lists/{WARNING}"]').count() >= 1
    assert "UTC+8" in page.locator("#source-xmtravel .meta").inner_text()
    shot(page, "1-index")

    page.click(f'a[href="/lists/{WARNING}"]')
    page.fill('form.search input[name="q"]', target["entity_name"])
    page.click('form.search button[type="submit"]')
    page.wait_for_load_state()
    rows = page.locator("#entries tbody tr")
    assert rows.count() >= 1
    assert target["entity_name"] in rows.first.inner_text()
    assert "q=" in page.url
    shot(page, "2-list-search")

    rows.first.locator("a.entity").click()
    page.wait_for_load_state()
    assert page.locator("#entity-name").inner_text() == target["entity_name"]
    assert target["case_number"] in page.content()
    shot(page, "3-entity")

    page.click('a[href="/snapshots"]')
    page.wait_for_load_state()
    shot(page, "4-snapshots")
    link = page.locator('a[href$=".csv"]').first
    with page.expect_download() as info:
        link.click()
    download = info.value
    saved = tmp_path / download.suggested_filename
    download.save_as(saved)
    manifest_href = page.locator(f'a[href$="/{MANIFEST}"]').first.get_attribute("href")
    assert manifest_href
    manifest = json.loads(httpx.get(served.base + manifest_href, timeout=10).text)
    entry = next(f for f in manifest["files"] if f["path"] == download.suggested_filename)
    assert hashlib.sha256(saved.read_bytes()).hexdigest() == entry["sha256"]
    assert saved.stat().st_size == entry["bytes"]
    context.close()


def test_the_red_list_source_is_a_city_honours_list() -> None:
    """The demo's third source is what the page checks take it for."""
    source = get_source(REDLIST_SOURCE)
    assert {lst.list_kind for lst in source.lists} == {"redlist"}
    assert re.search("北京", source.name_zh)
