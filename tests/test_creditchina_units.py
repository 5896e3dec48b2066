"""Credit China's API rules on bytes: outcomes, rows by label, pages, watchlists, scrubbing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from core.registry import get_source
from crawlers.cassette import CassetteBridge
from crawlers.creditchina_api import (
    api_url,
    classify,
    head_entity,
    labelled_fields,
    list_data,
    pages_to_read,
    subject_hits,
    without_volatile,
)
from crawlers.watchlist import WatchlistError, WatchSubject, parse_line, read_watchlist

CC = Path(__file__).resolve().parent.parent / "fixtures" / "creditchina"
SAMPLES = CC / "samples"
OK_LIST = json.dumps({"status": 1, "message": "成功", "data": {"total": 1, "list": [{"a": 1}]}})


@pytest.mark.parametrize(
    ("status", "body", "outcome"),
    [
        (200, OK_LIST, "ok"),
        (
            500,
            (SAMPLES / "challenge_40001_http500_response.json").read_text("utf-8"),
            "session_rejected",
        ),
        (412, (CC / "challenge-412.html").read_text(encoding="utf-8"), "waf_challenge"),
        (200, (CC / "challenge-412.html").read_text(encoding="utf-8"), "waf_challenge"),
        (403, "<html>forbidden</html>", "rate_limited"),
        (429, "", "rate_limited"),
        (400, '{"status":400,"message":"验证码错误","data":null}', "captcha_required"),
        (200, '<div class="vcodepop"><img id="vcodeimg"></div>', "captcha_required"),
        (200, '{"status":0,"message":"请刷新后重试","data":null}', "session_rejected"),
        (502, "<html>bad gateway</html>", "http_error"),
        (200, '{"status": 1, "data": {"list": [', "malformed"),
        (200, '{"status": 7, "message": "参数错误", "data": null}', "malformed"),
    ],
)
def test_every_response_gets_one_outcome(status: int, body: str, outcome: str) -> None:
    assert classify(status, body.encode("utf-8")).outcome == outcome


def test_real_samples_read() -> None:
    """The captured envelopes of samples/creditchina read as the spider expects."""
    search = json.loads((SAMPLES / "catalogSearchHome_response.json").read_bytes())
    reply = classify(200, json.dumps(search).encode())
    hits = subject_hits(reply.data)
    assert [(h.name, h.code, h.entity_type) for h in hits] == [
        ("你好徐州传媒有限公司", "91320322MABLP2X24R", "1")
    ]
    assert list_data(reply.data).total == 50
    details = json.loads((SAMPLES / "getTyshxydmDetailsContent_response.json").read_bytes())
    assert head_entity(details["data"]) == {
        "主体名称": "你好徐州传媒有限公司",
        "统一社会信用代码": "91320322MABLP2X24R",
    }
    # The details' own record: columns under their sencesMap labels, ids left out.
    assert labelled_fields(details["data"]["data"]) == {
        "法定代表人/负责人/执行事务合伙人": "梅凤霞",
        "企业类型": "有限责任公司(自然人独资)",
        "成立日期": "2022-05-18",
        "住所": "江苏省徐州市泉山区泰山街道金山东路2号徐州科创创业园B座512房间",
        "数据来源": "市场监督管理总局",
        "数据类别": "工商存续（企业）",
    }
    with pytest.raises(ValueError):
        list_data(json.loads((SAMPLES / "private_api_info_response.json").read_bytes())["data"])


def test_flat_rows_are_labelled_by_the_registry_and_keep_unknown_codes() -> None:
    row = {
        "xm": "周某",
        "tmzjhm": "3501021980****1234",
        "lrsj": "2026-01-02",
        "xb": "男",
        "uuid": "x",
        "n": 3,
        "z": None,
    }
    columns = {"xm": "姓名", "tmzjhm": "证件号码", "lrsj": "列入时间"}
    assert labelled_fields(row, columns) == {
        "姓名": "周某",
        "证件号码": "3501021980****1234",
        "列入时间": "2026-01-02",
        "xb": "男",
        "n": "3",
    }


@pytest.mark.parametrize(
    ("total", "size", "cap", "pages"),
    [
        (13, 10, 10000, 2),
        (0, 10, 50, 1),
        (None, 10, 50, 1),
        (57, 10, 50, 5),
        (50, 10, 50, 5),
        (7, 10, None, 1),
    ],
)
def test_pages_to_read_stop_at_the_cap(
    total: int | None, size: int, cap: int | None, pages: int
) -> None:
    assert pages_to_read(total, size, cap) == pages


def test_urls_keep_their_order_and_lose_volatile_parameters() -> None:
    url = api_url(
        "https://h/private-api/",
        "catalogSearchPerson",
        {"tableName": "t", "page": 2, "keyword": ""},
    )
    assert url == "https://h/private-api/catalogSearchPerson?tableName=t&page=2&keyword="
    assert without_volatile(url + "&rcwCQitg=abc&_v=0.5") == url


def test_watchlist_lines(tmp_path: Path) -> None:
    assert parse_line("  # comment") is None
    assert parse_line("厦门建发股份有限公司") == WatchSubject("厦门建发股份有限公司", None)
    assert parse_line("91350200154990617t") == WatchSubject(None, "91350200154990617T")
    assert parse_line("厦门建发股份有限公司\t91350200154990617T # main") == WatchSubject(
        "厦门建发股份有限公司", "91350200154990617T"
    )
    with pytest.raises(WatchlistError):
        parse_line("甲公司|乙公司")
    path = tmp_path / "w.txt"
    path.write_text("甲公司\n\n甲公司\n91350200154990617T\n", encoding="utf-8")
    assert [s.keyword for s in read_watchlist(path)] == ["甲公司", "91350200154990617T"]
    with pytest.raises(WatchlistError):
        read_watchlist(tmp_path / "missing.txt")


def test_watched_subject_matches_by_code_else_by_folded_name() -> None:
    by_code = WatchSubject(None, "91350200154990617T")
    assert by_code.matches("任意名称", "91350200154990617t")
    assert not by_code.matches("厦门建发股份有限公司", None)
    by_name = WatchSubject("廈門建發（集團）有限公司", None)
    assert by_name.matches("厦门建发(集团)有限公司", None)
    assert not by_name.matches("厦门建发(集团)有限公司仓山分公司", None)


def test_recording_strips_the_waf_token_and_cookies(tmp_path: Path) -> None:
    """What `crawl creditchina --record` writes: no rcwCQitg, no Cookie, no Set-Cookie."""
    path = tmp_path / "recorded.yaml"
    bridge = CassetteBridge.open(
        path,
        mode="record",
        filter_query_parameters=get_source("creditchina").filter_query_parameters,
    )
    bridge.record(
        "GET",
        "https://public.creditchina.gov.cn/private-api/catalogSearchPerson?page=1&rcwCQitg=s3cr3t",
        [("Cookie", "https_waf_cookie=abc; 6BVIhF5m7wQjP=def"), ("Accept", "application/json")],
        None,
        200,
        "OK",
        [("Set-Cookie", "insert_cookie=1"), ("Content-Type", "application/json")],
        OK_LIST.encode(),
    )
    bridge.save()
    text = path.read_text(encoding="utf-8")
    assert "s3cr3t" not in text and "rcwCQitg" not in text
    assert "waf_cookie" not in text and "insert_cookie" not in text
    stored = yaml.safe_load(text)["interactions"][0]
    assert stored["request"]["uri"].endswith("catalogSearchPerson?page=1")
