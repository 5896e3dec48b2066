"""The web app in a real browser: `creditwatch serve` on 127.0.0.1, headless Chromium with
JavaScript off. Search a list, open an entity, download a snapshot file and check it against
its manifest; a screenshot of every page goes to test-artifacts/web/."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from crawlers.browser import CHROMIUM_ARGS
from export.snapshots import MANIFEST, write_snapshot
from storage.asof import export_records
from storage.engine import get_engine
from tests.cassette_support import chromium_executable, playwright_browser_available
from tests.helpers import FIXTURES, replay

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts" / "web"
_AVAILABLE, _WHY_NOT = playwright_browser_available()
pytestmark = [pytest.mark.browser, pytest.mark.skipif(not _AVAILABLE, reason=_WHY_NOT)]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """The Xiamen portal's two days in SQLite, a CSV snapshot, and the server's base URL."""
    root = tmp_path_factory.mktemp("served")
    url = f"sqlite:///{root / 'creditwatch.sqlite'}"
    for day in (1, 2):
        replay(url, FIXTURES / "xmtravel" / f"xmtravel-day{day}.yaml", delist_after=1)
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
        yield base, url
    finally:
        server.terminate()
        server.wait(timeout=20)
        log.close()


def shot(page: object, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)  # type: ignore[attr-defined]
    assert path.stat().st_size > 1000
    return path


def test_search_open_entity_download_snapshot(served: tuple[str, str], tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    base, url = served
    with get_engine(url).connect() as conn:
        current, _ = export_records(conn, "xmtravel", ["xmtravel.warning"])
    target = next(r for r in current if r["uscc"])

    options = {"headless": True, "args": CHROMIUM_ARGS, "timeout": 30_000}
    if chromium_executable():
        options["executable_path"] = chromium_executable()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(**options)
        context = browser.new_context(java_script_enabled=False, accept_downloads=True)
        page = context.new_page()
        page.goto(base + "/?lang=en")
        assert page.locator('a[href="/lists/xmtravel.warning"]').count() >= 1
        shot(page, "1-index")

        page.click('a[href="/lists/xmtravel.warning"]')
        page.fill('input[name="q"]', target["entity_name"])
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
        manifest = json.loads(httpx.get(base + manifest_href, timeout=10).text)
        entry = next(f for f in manifest["files"] if f["path"] == download.suggested_filename)
        assert hashlib.sha256(saved.read_bytes()).hexdigest() == entry["sha256"]
        assert saved.stat().st_size == entry["bytes"]
        browser.close()
    assert sorted(p.name for p in ARTIFACTS.glob("*.png")) >= [
        "1-index.png",
        "2-list-search.png",
        "3-entity.png",
        "4-snapshots.png",
    ]
