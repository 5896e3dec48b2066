"""The checks the fault matrix made the fetch log run on every page (crawlers/responses.py),
in process: what they catch, and that ordinary pages, JSON and attachments pass untouched."""

from __future__ import annotations

from scrapy.http import HtmlResponse, JsonResponse, Request, Response, TextResponse

from crawlers.responses import challenge_outcome, incomplete
from tests.faults.portal import CAPTCHA_PAGE, WAF_PAGE

URL = "https://portal.example.cn/list.do?page=2"
PAGE = (
    '<html><head><meta charset="gbk"></head><body><table class="list"><tr><th>企业名称</th>'
    "</tr><tr><td>厦门某某旅行社有限公司</td></tr></table>"
    '<form action="/search"><input name="keyword"></form></body></html>'
).encode("gbk")


def html(body: bytes) -> HtmlResponse:
    return HtmlResponse(URL, body=body, headers={"Content-Type": "text/html"}, request=Request(URL))


def test_challenge_and_captcha_pages_are_named() -> None:
    assert challenge_outcome(html(WAF_PAGE)) == "waf_challenge"
    assert challenge_outcome(html(CAPTCHA_PAGE)) == "captcha_required"
    assert challenge_outcome(html(PAGE)) is None
    # A list page whose search form has its own captcha is still the list.
    with_search_captcha = PAGE.replace(b'<input name="keyword">', b'<input name="yzm">')
    assert challenge_outcome(html(with_search_captcha)) is None
    # JSON is read by its own parser; a name in it is data, whatever it says.
    json_body = b'{"Data": [{"EntName": "captcha yzm $_ts=1"}]}'
    assert challenge_outcome(JsonResponse(URL, body=json_body)) is None
    assert challenge_outcome(Response(URL, body=WAF_PAGE)) is None


def test_empty_and_cut_short_pages_are_found() -> None:
    assert incomplete(html(PAGE)) is None
    assert incomplete(html(PAGE + b" " * 100_000)) is None  # padding after the end is fine
    assert incomplete(html(b"  \n")) == ("empty", "HTTP 200 with an empty body")
    cut = incomplete(html(PAGE[: len(PAGE) // 2]))
    assert cut is not None and cut[0] == "malformed" and "cut short" in cut[1]
    # A fragment without <html> (an AJAX piece) has no end to miss; JSON is judged by parsing.
    assert incomplete(html(b"<tr><td>1</td></tr>")) is None
    assert incomplete(TextResponse(URL, body=b'{"Data": [', encoding="utf-8")) is None
    assert incomplete(Response(URL, body=b"")) is None  # bytes (attachments): not text
