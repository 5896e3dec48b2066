"""The live path, offline: a proxy on 127.0.0.1 plays the Xiamen portal, and a real
``record`` crawl goes through it; the cassette it writes then replays to the same records."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import vcr

from crawlers.cassette import vcr_options
from pipeline.run import CrawlSpec, crawl
from tests.helpers import DAY1, exported, list_health, load_cassette, replay, run_row

pytestmark = pytest.mark.replay

FAST = {"DOWNLOAD_DELAY": "0", "AUTOTHROTTLE_ENABLED": "False", "CW_RETRY_BACKOFF": "0"}


class PortalProxy(ThreadingHTTPServer):
    """An HTTP proxy that answers every absolute-URI request from a cassette."""

    def __init__(self, cassette: Path) -> None:
        self.pages: dict[str, dict[str, Any]] = {
            i["request"]["uri"]: i["response"] for i in load_cassette(cassette)["interactions"]
        }
        self.seen: list[tuple[str, str]] = []
        super().__init__(("127.0.0.1", 0), ProxyHandler)


class ProxyHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: PortalProxy

    def do_GET(self) -> None:
        self.server.seen.append((self.path, self.headers.get("User-Agent", "")))
        page = self.server.pages.get(self.path)
        if page is None:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = page["body"]["string"]
        body = body if isinstance(body, bytes) else body.encode("utf-8")
        self.send_response(page["status"]["code"])
        for name, values in page["headers"].items():
            if name.lower() != "content-length":
                for value in values:
                    self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def portal(monkeypatch: pytest.MonkeyPatch) -> Iterator[PortalProxy]:
    server = PortalProxy(DAY1)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    proxy = f"http://127.0.0.1:{server.server_address[1]}"
    monkeypatch.setenv("http_proxy", proxy)
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    yield server
    server.shutdown()


def test_record_then_replay_gives_the_same_records(
    portal: PortalProxy, tmp_path: Path, netguard: Path
) -> None:
    cassette = tmp_path / "recorded.yaml"
    live_db = f"sqlite:///{tmp_path / 'live.sqlite'}"
    run_id = crawl(
        CrawlSpec("xmtravel", mode="record", cassette=cassette, settings=FAST), url=live_db
    )
    run = run_row(live_db, run_id)
    assert run.state == "healthy", run.summary
    assert run.clock_origin == "wall"
    assert {h.health for h in list_health(live_db, run_id).values()} == {"healthy"}

    # A good citizen: robots.txt first, and every request says who is asking.
    assert portal.seen[0][0].endswith("/robots.txt")
    assert all(agent.startswith("creditwatch/") for _, agent in portal.seen)
    assert len(portal.seen) == len({path for path, _ in portal.seen}), "a page was fetched twice"

    # The recorded cassette replays offline to the same records...
    replay_db = f"sqlite:///{tmp_path / 'replay.sqlite'}"
    portal.shutdown()
    replay(replay_db, cassette)
    volatile = ("first_seen", "last_seen", "status")
    strip = lambda records: [{k: v for k, v in r.items() if k not in volatile} for r in records]  # noqa: E731
    assert strip(exported(replay_db)) == strip(exported(live_db))
    assert netguard.read_text() == ""

    # ...and the same file serves plain `requests` through vcrpy itself.
    import requests

    with vcr.use_cassette(str(cassette), record_mode="none", **vcr_options()):
        robots = requests.get("http://credit.xmtravel.gov.cn:10345/robots.txt", timeout=5)
    assert "Disallow: /credit_tour/admin/" in robots.text


def test_robots_txt_is_obeyed(portal: PortalProxy, tmp_path: Path) -> None:
    robots = portal.pages["http://credit.xmtravel.gov.cn:10345/robots.txt"]
    robots["body"]["string"] = "User-agent: *\nDisallow: /credit_tour/publicity/lhxx-\n"
    db = f"sqlite:///{tmp_path / 'db.sqlite'}"
    run_id = crawl(
        CrawlSpec("xmtravel", mode="record", cassette=tmp_path / "c.yaml", settings=FAST), url=db
    )
    assert not [path for path, _ in portal.seen if "lhxx-" in path]
    good = list_health(db, run_id)["xmtravel.good"]
    assert good.health == "failed"
    assert "robots.txt" in good.findings[0]["detail"]
    assert list_health(db, run_id)["xmtravel.warning"].health == "healthy"
