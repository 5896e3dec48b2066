"""The ``creditsearch`` family: lists of the creditsearch platform (信用山东, 信用陕西) read
from the registry alone, every API call signed in Chromium by the site's own script; the
unhealthy answers that must never delist anything; replay never reaching the network; and a
record run through the same page routing, against a model portal on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import pytest

from core.registry import RegistryError, get_source, load_registry, parse_source, read_yaml
from crawlers.spiders.creditsearch import CreditSearchSpider
from fixtures import creditsearch_model as model
from fixtures.json_api_model import Decision, Faults
from fixtures.portal_model import dump_yaml
from fixtures.shaanxi_redlist import build as shaanxi
from fixtures.shandong_blacklist import build as shandong
from pipeline.run import CrawlSpec, crawl
from tests.cassette_support import serving
from tests.helpers import (
    FIXTURES,
    fetches,
    list_health,
    load_cassette,
    new_room,
    run_row,
)
from tests.replay_cache import Replay
from tests.test_conformance import everything
from tests.test_json_api import assert_nothing_delisted, outcomes

JSON = "application/json;charset=UTF-8"
FAST = {"DOWNLOAD_DELAY": "0", "AUTOTHROTTLE_ENABLED": "False", "CW_RETRY_BACKOFF": "0"}


def write_day(
    path: Path,
    portal: model.CreditSearchPortal,
    rows: Sequence[Decision],
    day: int,
    faults: Faults | None = None,
    script: bool = True,
) -> Path:
    interactions = model.day_interactions(portal, rows, day, faults, script)
    path.write_text(dump_yaml({"interactions": interactions, "version": 1}), encoding="utf-8")
    return path


def day2_with(
    tmp_path: Path,
    url: str,
    replayed: Any,
    portal: model.CreditSearchPortal,
    days: Any,
    **fault: Any,
) -> str:
    """Day 1 as shipped (replayed once per session), then day 2 with a fault; day 2's run."""
    source = portal.api.source
    day1 = FIXTURES / source / f"{source}-day1.yaml"
    replayed(url, Replay(day1, source=source, delist_after=1))
    cassette = write_day(tmp_path / f"{source}-2.yaml", portal, days.day2(), 2, **fault)
    return crawl(
        CrawlSpec(source=source, mode="replay", cassette=cassette, delist_after=1), url=url
    )


@pytest.mark.browser
def test_a_refused_token_is_session_rejected_and_delists_nothing(
    tmp_path: Path, sqlite_url: str, netguard: Path, replayed: Any
) -> None:
    refused = Faults(refuse=(JSON, model.REFUSED))
    run = day2_with(tmp_path, sqlite_url, replayed, shandong.PORTAL, shandong.DAYS, faults=refused)
    health = list_health(sqlite_url, run)[shandong.API.list_id]
    assert health.health == "failed"
    assert "session_rejected" in outcomes(health)
    refusal = [f for f in fetches(sqlite_url, run) if f.outcome == "session_rejected"]
    assert "token校验失败" in refusal[0].detail
    assert "token=" not in refusal[0].url and "timestamp=" not in refusal[0].url
    assert run_row(sqlite_url, run).state == "failed"
    assert_nothing_delisted(sqlite_url, "shandong_blacklist", run, len(shandong.DAY1))
    assert netguard.read_text() == ""


@pytest.mark.browser
def test_without_the_site_script_no_token_is_computed_and_nothing_is_delisted(
    tmp_path: Path, sqlite_url: str, netguard: Path, replayed: Any
) -> None:
    """The script is not in the cassette: its request is aborted (never sent), the token
    expression fails in the page, and the list is layout_drift, its API never called."""
    run = day2_with(tmp_path, sqlite_url, replayed, shaanxi.PORTAL, shaanxi.DAYS, script=False)
    health = list_health(sqlite_url, run)[shaanxi.API.list_id]
    assert health.health == "failed"
    assert outcomes(health) >= {"layout_drift"}
    (drift,) = [f for f in fetches(sqlite_url, run) if f.outcome == "layout_drift"]
    assert "CreditSearch.sign(query, timestamp)" in drift.detail
    assert "creditsearch.js" in drift.detail  # the cassette miss that left it undefined
    assert_nothing_delisted(sqlite_url, "shaanxi_redlist", run, len(shaanxi.DAY1))
    assert netguard.read_text() == ""


@pytest.mark.browser
def test_a_renamed_json_key_is_layout_drift_and_delists_nothing(
    tmp_path: Path, sqlite_url: str, netguard: Path, replayed: Any
) -> None:
    renamed = Faults(rename={"qymc": "qyMc"})
    run = day2_with(tmp_path, sqlite_url, replayed, shandong.PORTAL, shandong.DAYS, faults=renamed)
    health = list_health(sqlite_url, run)[shandong.API.list_id]
    assert health.health != "healthy"
    assert "layout_drift" in outcomes(health)
    assert_nothing_delisted(sqlite_url, "shandong_blacklist", run, len(shandong.DAY1))


@pytest.mark.browser
def test_a_new_portal_of_the_platform_is_one_yaml_file_and_a_cassette(
    tmp_path: Path, sqlite_url: str, netguard: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spider = new_room(tmp_path, monkeypatch, "shaanxi_redlist", "testprovince")
    assert issubclass(spider, CreditSearchSpider)
    cassette = write_day(tmp_path / "testprovince.yaml", shaanxi.PORTAL, shaanxi.DAY1, 1)
    run = crawl(
        CrawlSpec(source="testprovince", mode="replay", cassette=cassette, delist_after=1),
        url=sqlite_url,
    )
    health = list_health(sqlite_url, run)["testprovince.redlist"]
    assert health.health == "healthy", health.findings
    assert (health.pages, health.records) == (3, len(shaanxi.DAY1))
    stored = everything(sqlite_url, "testprovince")
    assert {r["entity_name"] for r in stored} == {d.name for d in shaanxi.DAY1}
    assert {r["title"] for r in stored} == {d.title for d in shaanxi.DAY1}
    assert netguard.read_text() == ""


# --- a model portal on 127.0.0.1: record through the page's routes, replay offline -------------


class ModelPortal(ThreadingHTTPServer):
    """The model site of ``portal``, day 1: it checks every list call's token as the site's
    server would (``creditsearch_model.token``) and refuses a call whose token is wrong."""

    def __init__(self, portal: model.CreditSearchPortal) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.portal = portal
        interactions = model.day_interactions(portal, portal_rows(portal), 1)
        self.pages = {_relative(i["request"]["uri"]): i["response"] for i in interactions}
        self.hits: list[str] = []
        self.signed: list[tuple[str, bool]] = []  # (timestamp, token valid)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


def portal_rows(portal: model.CreditSearchPortal) -> Sequence[Decision]:
    return shandong.DAY1 if portal is shandong.PORTAL else shaanxi.DAY1


def _relative(uri: str) -> str:
    parts = urlsplit(uri)
    return f"{parts.path}?{parts.query}" if parts.query else parts.path


class _Handler(BaseHTTPRequestHandler):
    server: ModelPortal
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self.server.hits.append(self.path)
        parts = urlsplit(self.path)
        key = self.path
        if parts.path.endswith(model.LIST_ENDPOINT):
            pairs = parse_qsl(parts.query, keep_blank_values=True)
            signature = dict(pairs)
            query = urlencode([(k, v) for k, v in pairs if k not in ("token", "timestamp")])
            timestamp = signature.get("timestamp", "")
            valid = signature.get("token") == model.token(query, timestamp, self.server.portal.salt)
            self.server.signed.append((timestamp, valid))
            if not valid:
                self._send(200, JSON, model.REFUSED.encode())
                return
            key = f"{parts.path}?{query}"
        page = self.server.pages.get(key)
        if page is None:
            self._send(404, "text/plain", b"not found")
            return
        body = page["body"]["string"]
        body = body if isinstance(body, bytes) else body.encode("utf-8")
        self._send(200, page["headers"]["Content-Type"][0], body)

    def _send(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def local_portal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ModelPortal]:
    """信用山东's model on 127.0.0.1, and a registry whose one source (``testportal``, the
    shipped declaration) points at it."""
    with serving(ModelPortal(shandong.PORTAL)) as server:
        new_room(
            tmp_path,
            monkeypatch,
            "shandong_blacklist",
            "testportal",
            {
                "base_url: https://credit.shandong.gov.cn/": f"base_url: {server.base}/",
                "download_delay: 5.0": "download_delay: 0.0",
            },
        )
        yield server


@pytest.mark.browser
def test_record_then_replay_through_the_page_routes(
    local_portal: ModelPortal, tmp_path: Path, netguard: Path
) -> None:
    cassette = tmp_path / "recorded.yaml"
    live_db = f"sqlite:///{tmp_path / 'live.sqlite'}"
    run = crawl(
        CrawlSpec("testportal", mode="record", cassette=cassette, settings=FAST), url=live_db
    )
    assert run_row(live_db, run).state == "healthy", run_row(live_db, run).summary
    assert local_portal.hits[0] == "/robots.txt"
    # Every list call was signed by the page, and the site took each signature.
    assert len(local_portal.signed) == 3 and all(valid for _, valid in local_portal.signed)
    assert len({timestamp for timestamp, _ in local_portal.signed}) >= 1
    recorded = [i["request"]["uri"] for i in load_cassette(cassette)["interactions"]]
    assert len(recorded) == 6  # robots.txt, the index page, its script, three list pages
    assert not [uri for uri in recorded if "token=" in uri or "timestamp=" in uri]

    # The recorded cassette replays offline (the portal gone) to the same records.
    local_portal.shutdown()
    local_portal.server_close()
    replay_db = f"sqlite:///{tmp_path / 'replay.sqlite'}"
    again = crawl(CrawlSpec("testportal", mode="replay", cassette=cassette), url=replay_db)
    assert run_row(replay_db, again).state == "healthy"
    names = {r["entity_name"] for r in everything(replay_db, "testportal")}
    assert names == {r["entity_name"] for r in everything(live_db, "testportal")}
    assert names == {d.name for d in shandong.DAY1}
    assert netguard.read_text() == ""


@pytest.mark.browser
def test_a_cassette_miss_never_reaches_the_network(
    local_portal: ModelPortal, tmp_path: Path, sqlite_url: str, netguard: Path
) -> None:
    """The portal is up and would answer, but a replay asks only the cassette: the page it
    lacks fails (named, with vcrpy's explanation) and nothing reaches the portal."""
    interactions = model.day_interactions(shandong.PORTAL, shandong.DAY1, 1)
    for item in interactions:
        item["request"]["uri"] = item["request"]["uri"].replace(shandong.HOST, local_portal.base)
    kept = [i for i in interactions if "page=3&" not in i["request"]["uri"]]
    cassette = tmp_path / "without-page-3.yaml"
    cassette.write_text(dump_yaml({"interactions": kept, "version": 1}), encoding="utf-8")
    run = crawl(CrawlSpec("testportal", mode="replay", cassette=cassette), url=sqlite_url)
    health = list_health(sqlite_url, run)["testportal.blacklist"]
    assert health.health != "healthy"
    (failed,) = [f for f in fetches(sqlite_url, run) if f.outcome == "http_error"]
    assert "page=3" in failed.url and "cassette" in failed.detail.lower()
    assert local_portal.hits == []
    assert netguard.read_text() == ""


# --- the declaration ------------------------------------------------------------------------


def test_family_sources_hold_no_python_and_name_their_platform() -> None:
    members = [sid for sid, s in load_registry().items() if s.spider == "creditsearch"]
    assert {"shandong_blacklist", "shaanxi_redlist"} <= set(members)
    for sid in members:
        source = get_source(sid)
        assert source.platform == "creditsearch"
        assert source.room is not None
        assert sorted(p.name for p in source.room.iterdir() if p.is_file()) == ["source.yml"]
        assert {"token", "timestamp"} <= set(source.filter_query_parameters)
        assert all(lst.creditsearch is not None for lst in source.lists)


BASE = """\
id: trial
name_zh: 试验
name_en: Trial
jurisdiction: {name: 山东省, region_code: 370000}
base_url: https://example.test/
spider: creditsearch
lists:
  - id: black
    list_kind: blacklist
"""
BLOCK = (
    "{index: i.dhtml, url: l.phtml, params: {p: '{page}'}, token: {js: t(query)}, "
    "rows: a.list, key_fields: [x]%s}"
)


def parse(text: str) -> Any:
    data, lines = read_yaml(text)
    return parse_source(data, lines)


def test_a_creditsearch_source_needs_each_lists_block() -> None:
    with pytest.raises(RegistryError, match="reads each list's 'creditsearch:' block") as caught:
        parse(BASE)
    assert caught.value.line == 8
    lst = parse(BASE + f"    creditsearch: {BLOCK % ''}\n").lists[0]
    assert lst.creditsearch is not None and lst.creditsearch.token.param == "token"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (", params: {p: 1}", "no page placeholder"),
        (", params: {p: '{page}', token: x}", "set by the token"),
        (", headers: {Referer: x}", "browser's own headers"),
        (", method: POST", "GET and params"),
        (", tokn: {js: t()}", r"unknown key 'tokn'.*did you mean 'token'"),
    ],
)
def test_a_creditsearch_block_is_checked(extra: str, message: str) -> None:
    block = BLOCK % extra
    if "params:" in extra:
        block = block.replace("params: {p: '{page}'}, ", "", 1)
    with pytest.raises(RegistryError, match=message):
        parse(BASE + f"    creditsearch: {block}\n")


def test_the_block_is_read_only_by_its_family() -> None:
    text = BASE.replace("spider: creditsearch\n", "")  # a source with a spider.py of its own
    with pytest.raises(RegistryError, match="read only by 'spider: creditsearch'"):
        parse(text + f"    creditsearch: {BLOCK % ''}\n")


def test_the_model_token_is_the_scripts() -> None:
    """The model site checks tokens with the computation its script does (the record test
    proves they agree in Chromium); here, that it depends on the query and the time."""
    salt = shandong.PORTAL.salt
    one = model.token("source_id=401&type=black&page=1&pageSize=4", "1764900000000", salt)
    assert len(one) == 16 and one != model.token("page=2", "1764900000000", salt)
    assert one != model.token("source_id=401&type=black&page=1&pageSize=4", "1", salt)
