"""One cassette format for requests/httpx (vcrpy) and Scrapy (CassetteMiddleware).

Cassettes are recorded against a local fake portal; every replay runs with that server
stopped (connections refused) or restarted on the same port with its hit log checked, so
a replay that went to the network would fail.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
import vcr
import yaml
from backports import zstd
from scrapy.exceptions import IgnoreRequest, NotConfigured
from scrapy.http import HtmlResponse, JsonResponse
from scrapy.http import Request as ScrapyRequest
from scrapy.utils.test import get_crawler

from crawlers.cassette import DEFAULT_MATCH_ON, CassetteBridge, CassetteMiss, vcr_options
from crawlers.middlewares import CassetteMiddleware
from tests.cassette_support import GBK_PAGE, NAME, ROOT, copy_cassette, portal, run_crawl

VOLATILE = ["_t"]
GZIP_MAGIC = b"\x1f\x8b"
QUERY = {"kw": "厦门 旅行社", "page": "2"}


@dataclass(frozen=True)
class Recorded:
    """A cassette recorded from the fake portal, and where that portal listened."""

    path: Path
    port: int

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


def crawl_requests(base: Recorded, timestamp: str) -> list[dict[str, Any]]:
    """The Scrapy side of the portal tour (the same pages requests visits)."""
    query = "kw=厦门 旅行社&page=2&_t=" + timestamp  # Scrapy sends the space as %20
    return [
        {
            "id": "gbk",
            "url": base.url("/gbk-meta"),
            "headers": {"Authorization": "Bearer secret-a"},
        },
        {"id": "gzip", "url": base.url("/gzip")},
        {"id": "redirect", "url": base.url("/redirect")},
        {"id": "json", "url": base.url("/json"), "headers": {"Cookie": "manual=secret-cookie"}},
        {"id": "post_fz", "url": base.url("/search"), "formdata": {"name": "福州"}},
        {"id": "post_xm", "url": base.url("/search"), "formdata": {"name": "厦门"}},
        {"id": "cookie", "url": base.url("/cookie")},
        {"id": "query", "url": base.url("/q?" + query)},
    ]


def tour_with_requests(session: requests.Session, base: Recorded, timestamp: str) -> dict[str, Any]:
    """The requests side of the tour; returns what a consumer would read from each page."""
    gbk = session.get(base.url("/gbk-meta"))
    redirect = session.get(base.url("/redirect"))
    return {
        "gbk": gbk.content.decode("gbk"),
        "gzip": session.get(base.url("/gzip")).text,
        "redirect": (redirect.url, [r.status_code for r in redirect.history], redirect.text),
        "json": session.get(base.url("/json")).json(),
        "post_xm": session.post(base.url("/search"), data={"name": "厦门"}).json(),
        "post_fz": session.post(base.url("/search"), data={"name": "福州"}).json(),
        "cookie": session.get(base.url("/cookie")).headers.get("X-Source"),
        "query": session.get(base.url("/q"), params={**QUERY, "_t": timestamp}).json(),
    }


def assert_tour(seen: dict[str, Any], base: Recorded) -> None:
    """What every client must read from the portal tour, live or replayed."""
    assert NAME in seen["gbk"]
    assert f"{NAME} 压缩" in seen["gzip"]
    assert seen["redirect"][0] == base.url("/landing")
    assert seen["redirect"][1] == [302]
    assert "已跳转" in seen["redirect"][2]
    assert seen["json"]["name"] == NAME
    assert seen["post_xm"]["query"] == "厦门"
    assert seen["post_fz"]["query"] == "福州"
    assert seen["query"] == {"kw": "厦门 旅行社", "page": "2"}


@pytest.fixture(scope="module")
def requests_cassette(tmp_path_factory: pytest.TempPathFactory) -> Recorded:
    """Recorded by plain vcrpy around requests, with vcrpy's defaults (stale gzip header too)."""
    path = tmp_path_factory.mktemp("requests") / "portal.yaml"
    with portal() as server:
        recorded = Recorded(path, server.port)
        with vcr.use_cassette(str(path), record_mode="once", serializer="yaml"):
            assert_tour(tour_with_requests(requests.Session(), recorded, "1700000000001"), recorded)
    return recorded


@pytest.fixture(scope="module")
def scrapy_cassette(tmp_path_factory: pytest.TempPathFactory) -> Recorded:
    """Recorded by a Scrapy crawl in record mode against the live portal."""
    workdir = tmp_path_factory.mktemp("scrapy")
    path = workdir / "portal.yaml"
    with portal() as server:
        recorded = Recorded(path, server.port)
        spec = {"cassette": str(path), "mode": "record", "filter_query": VOLATILE}
        result = run_crawl({**spec, "requests": crawl_requests(recorded, "1700000000002")}, workdir)
        assert len(server.hits) == 9  # 8 requests + the redirect target
    assert all("error" not in r for r in result["results"].values()), result["results"]
    assert result["stats"]["cassette/recorded"] == 9
    return recorded


def load_yaml(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


# --- the bridge on its own -------------------------------------------------------------------


def test_bridge_plays_a_requests_cassette(requests_cassette: Recorded) -> None:
    bridge = CassetteBridge.open(requests_cassette.path, filter_query_parameters=VOLATILE)
    base = requests_cassette

    page = bridge.play("GET", base.url("/gbk-meta"), {"User-Agent": "x"}, None)
    assert page is not None and page.body == GBK_PAGE  # bytes untouched, GBK stays GBK

    zipped = bridge.play("GET", base.url("/gzip"))
    assert zipped is not None and not zipped.header("Content-Encoding")  # urllib3's stale header
    assert f"{NAME} 压缩".encode() in zipped.body

    cookie = bridge.play("GET", base.url("/cookie"))
    assert cookie is not None and cookie.reason == "OK"
    assert cookie.header("X-Source") == ["a", "b"] and not cookie.header("Set-Cookie")

    # another timestamp and %20 instead of requests' "+": still the recorded interaction
    query = bridge.play("GET", base.url("/q?kw=厦门%20旅行社&page=2&_t=99"))
    assert query is not None and json.loads(query.body)["kw"] == "厦门 旅行社"

    form = {"Content-Type": "application/x-www-form-urlencoded"}
    posted = bridge.play("POST", base.url("/search"), form, b"name=%E7%A6%8F%E5%B7%9E")
    assert posted is not None and json.loads(posted.body)["query"] == "福州"

    with pytest.raises(CassetteMiss) as miss:
        bridge.play("POST", base.url("/search"), form, b"name=%E6%B3%89%E5%B7%9E")
    assert "Can't play back this request" in miss.value.explanation
    assert "body" in miss.value.explanation and bridge.misses == [miss.value]
    assert bridge.played == 5


def test_bridge_records_scrubbed_and_appends_only_missing(tmp_path: Path) -> None:
    path, url = tmp_path / "rec.yaml", "http://portal.example/list?page=1&_t=111"
    bridge = CassetteBridge.open(path, mode="record", filter_query_parameters=VOLATILE)
    secrets = {"Cookie": "sid=secret-1", "Authorization": "Basic secret-2", "Accept": "*/*"}
    assert bridge.play("GET", url, secrets) is None  # not recorded yet: go live
    headers = [("Content-Type", "text/html; charset=utf-8"), ("Content-Encoding", "zstd")]
    headers += [("Set-Cookie", "sid=secret-3"), ("Transfer-Encoding", "chunked")]
    bridge.record("GET", url, secrets, None, 200, "", headers, zstd.compress("名单".encode()))
    assert bridge.play("GET", url.replace("111", "222")) is not None  # repeats play in-session
    bridge.save()

    text = path.read_text(encoding="utf-8")
    assert "secret" not in text and "_t=" not in text and "zstd" not in text
    data = load_yaml(path)
    assert data["version"] == 1 and len(data["interactions"]) == 1
    assert data["interactions"][0]["response"]["status"]["message"] == "OK"

    replay = CassetteBridge.open(path, filter_query_parameters=VOLATILE)
    played = replay.play("GET", url.replace("111", "333"))
    assert played is not None and played.body.decode() == "名单"
    assert not played.header("Transfer-Encoding") and not played.header("Content-Encoding")

    again = CassetteBridge.open(path, mode="record", filter_query_parameters=VOLATILE)
    assert again.play("GET", url) is not None  # existing interaction plays in record mode
    other = url.replace("page=1", "page=2")
    assert again.play("GET", other) is None
    again.record("GET", other, {}, None, 200, "OK", {"Content-Type": "text/plain"}, b"2")
    again.save()
    assert len(load_yaml(path)["interactions"]) == 2


def test_bridge_refuses_missing_cassette_and_bad_mode(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        CassetteBridge.open(tmp_path / "absent.yaml")
    with pytest.raises(ValueError, match="replay"):
        CassetteBridge.open(tmp_path / "x.yaml", mode="all")  # type: ignore[arg-type]
    assert "body" in DEFAULT_MATCH_ON


@pytest.mark.parametrize(
    "fixture", sorted((ROOT / "fixtures").glob("**/*.yaml")), ids=lambda path: path.name
)
def test_committed_fixture_cassettes_replay_through_the_bridge(fixture: Path) -> None:
    """The project's own vcrpy fixtures are the same format: each interaction plays back."""
    interactions = load_yaml(fixture).get("interactions") or []
    bridge = CassetteBridge.open(fixture)
    for interaction in interactions:
        request, response = interaction["request"], interaction["response"]
        headers = {name: values[0] for name, values in request["headers"].items()}
        played = bridge.play(request["method"], request["uri"], headers, request["body"])
        assert played is not None and played.status == response["status"]["code"]
    assert bridge.played == len(interactions)


# --- the middleware in process (no reactor needed) -------------------------------------------


def test_middleware_not_configured_without_cassette() -> None:
    with pytest.raises(NotConfigured):
        CassetteMiddleware.from_crawler(get_crawler(settings_dict={}))


def test_middleware_builds_exact_scrapy_responses(requests_cassette: Recorded) -> None:
    crawler = get_crawler(settings_dict={"CW_CASSETTE": str(requests_cassette.path)})
    middleware = CassetteMiddleware.from_crawler(crawler)

    page = middleware.process_request(ScrapyRequest(requests_cassette.url("/gbk-meta")))
    assert isinstance(page, HtmlResponse) and page.flags == ["cassette"]
    assert page.body == GBK_PAGE and page.encoding == "gb18030" and NAME in page.text
    assert middleware.process_response(page.request, page) is page  # replayed: not re-recorded

    cookie = middleware.process_request(ScrapyRequest(requests_cassette.url("/cookie")))
    assert cookie.headers.getlist("X-Source") == [b"a", b"b"]
    assert b"Set-Cookie" not in cookie.headers

    data = middleware.process_request(ScrapyRequest(requests_cassette.url("/json")))
    assert isinstance(data, JsonResponse) and data.json()["count"] == 2

    assert middleware.process_request(ScrapyRequest("http://x/", meta={"playwright": True})) is None
    with pytest.raises(IgnoreRequest, match=r"(?s)cassette miss for GET http://x/nothing.*vcr"):
        middleware.process_request(ScrapyRequest("http://x/nothing"))


# --- real crawls (one per subprocess) ---------------------------------------------------------


@pytest.mark.replay
def test_scrapy_replays_requests_cassette_offline(
    requests_cassette: Recorded, tmp_path: Path, netguard: Path
) -> None:
    base = requests_cassette  # its server is stopped: any network attempt is refused
    spec = {"cassette": str(base.path), "mode": "replay", "filter_query": VOLATILE}
    result = run_crawl({**spec, "requests": crawl_requests(base, "1799999999999")}, tmp_path)
    got = result["results"]
    assert all("error" not in r for r in got.values()), got
    assert all(r["flags"] == ["cassette"] for r in got.values())
    assert result["stats"]["cassette/played"] == 9 and "cassette/missed" not in result["stats"]

    assert got["gbk"]["class"] == "HtmlResponse" and got["gbk"]["encoding"] == "gb18030"
    assert f"<h1 id='name'>{NAME}</h1>" in got["gbk"]["text"]
    assert (
        f"{NAME} 压缩" in got["gzip"]["text"] and "Content-Encoding" not in got["gzip"]["headers"]
    )
    assert got["redirect"]["url"] == base.url("/landing") and "已跳转" in got["redirect"]["text"]
    assert got["redirect"]["redirect_urls"] == [base.url("/redirect")]
    assert got["json"]["class"] == "JsonResponse" and got["json"]["json"]["name"] == NAME
    assert got["post_xm"]["json"]["query"] == "厦门" and got["post_fz"]["json"]["query"] == "福州"
    assert got["cookie"]["headers"]["X-Source"] == ["a", "b"]
    assert "Set-Cookie" not in got["cookie"]["headers"]
    assert got["query"]["json"] == {"kw": "厦门 旅行社", "page": "2"}
    assert netguard.read_text() == ""  # nor any other host (the project's guard, in the child)


@pytest.mark.replay
def test_replay_miss_is_ignored_and_never_fetched(
    requests_cassette: Recorded, tmp_path: Path, netguard: Path
) -> None:
    base = requests_cassette
    spec = {"cassette": str(base.path), "mode": "replay", "attach": True}
    spec["requests"] = [
        {"id": "json", "url": base.url("/json")},
        {"id": "absent", "url": base.url("/not-recorded")},
        {"id": "post", "url": base.url("/search"), "formdata": {"name": "泉州"}},
    ]
    with portal(base.port) as server:  # the recorded host:port answers again, and counts
        result = run_crawl(spec, tmp_path)
    assert server.hits == []
    got = result["results"]
    assert got["json"]["flags"] == ["cassette"]
    for key, differs in (("absent", "path"), ("post", "body")):
        assert got[key]["error"] == "IgnoreRequest"
        assert "Can't play back this request" in got[key]["message"]
        assert f"the closest differ in {differs}" in got[key]["message"]
    assert base.url("/not-recorded") in got["absent"]["message"]
    assert result["stats"]["cassette/missed"] == 2 and len(result["bridge"]["misses"]) == 2
    assert netguard.read_text() == ""


def test_scrapy_recording_is_scrubbed(scrapy_cassette: Recorded) -> None:
    text = scrapy_cassette.path.read_text(encoding="utf-8")
    assert "secret" not in text and "_t=" not in text
    interactions = load_yaml(scrapy_cassette.path)["interactions"]
    for interaction in interactions:
        request_headers = {name.lower() for name in interaction["request"]["headers"]}
        response_headers = {name.lower() for name in interaction["response"]["headers"]}
        assert not request_headers & {"cookie", "authorization"}
        assert not response_headers & {"set-cookie", "content-encoding"}
    gbk = next(i for i in interactions if i["request"]["uri"].endswith("/gbk-meta"))
    assert gbk["response"]["body"]["string"] == GBK_PAGE  # stored as !!binary, not re-encoded


def test_scrapy_cassette_replays_in_requests_and_httpx(scrapy_cassette: Recorded) -> None:
    base = scrapy_cassette  # its server is stopped
    options = {"record_mode": "none", **vcr_options(filter_query_parameters=VOLATILE)}
    with vcr.use_cassette(str(base.path), **options):
        assert_tour(tour_with_requests(requests.Session(), base, "1811111111111"), base)

    httpx = pytest.importorskip("httpx")
    with vcr.use_cassette(str(base.path), **options), httpx.Client(follow_redirects=True) as client:
        redirect = client.get(base.url("/redirect"))
        seen = {
            "gbk": client.get(base.url("/gbk-meta")).content.decode("gbk"),
            "gzip": client.get(base.url("/gzip")).text,
            "redirect": (
                str(redirect.url),
                [r.status_code for r in redirect.history],
                redirect.text,
            ),
            "json": client.get(base.url("/json")).json(),
            "post_xm": client.post(base.url("/search"), data={"name": "厦门"}).json(),
            "post_fz": client.post(base.url("/search"), data={"name": "福州"}).json(),
            "query": client.get(base.url("/q"), params={**QUERY, "_t": "1"}).json(),
        }
    assert_tour(seen, base)


@pytest.mark.replay
def test_record_mode_adds_only_missing_interactions(
    scrapy_cassette: Recorded, tmp_path: Path
) -> None:
    path = copy_cassette(scrapy_cassette.path, tmp_path / "grow.yaml")
    before = len(load_yaml(path)["interactions"])
    base = Recorded(path, scrapy_cassette.port)
    spec = {"cassette": str(path), "mode": "record", "filter_query": VOLATILE}
    spec["requests"] = [
        {"id": "json", "url": base.url("/json")},
        {"id": "query", "url": base.url("/q?kw=厦门&page=3&_t=5")},
    ]
    with portal(base.port) as server:
        result = run_crawl(spec, tmp_path)
    assert server.hits == [("GET", "/q?kw=%E5%8E%A6%E9%97%A8&page=3&_t=5")]
    assert result["results"]["json"]["flags"] == ["cassette"]
    assert result["results"]["query"]["json"] == {"kw": "厦门", "page": "3"}
    assert len(load_yaml(path)["interactions"]) == before + 1


def test_gzip_recorded_by_scrapy_is_stored_decoded(scrapy_cassette: Recorded) -> None:
    interactions = load_yaml(scrapy_cassette.path)["interactions"]
    zipped = next(i for i in interactions if i["request"]["uri"].endswith("/gzip"))
    body = zipped["response"]["body"]["string"]
    body = body.encode() if isinstance(body, str) else body
    assert f"{NAME} 压缩".encode() in body and not body.startswith(GZIP_MAGIC)
