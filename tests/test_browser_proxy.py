"""Chromium takes the proxy Scrapy takes: the standard proxy environment becomes Playwright's
``proxy`` launch option (crawlers.browser.environment_proxy), and the live preflight of the
in-page spiders reaches the portal through that proxy, not past it."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from urllib.request import proxy_bypass_environment

import pytest

from crawlers.browser import BrowserProxy, environment_proxy, launch_options, unreachable

PORTAL = "https://credit.shandong.gov.cn/creditsearch.redblacklistindex.dhtml?source_id=401"


def test_without_proxy_variables_chromium_goes_direct() -> None:
    assert environment_proxy({}) is None
    assert "proxy" not in launch_options(environ={})
    assert environment_proxy({"https_proxy": "  ", "PATH": "/usr/bin"}) is None


def test_https_proxy_is_chromiums_proxy_lower_case_first() -> None:
    environ = {
        "HTTPS_PROXY": "http://upper.example:1",
        "https_proxy": "http://lower.example:3128",
        "http_proxy": "http://plain.example:8080",
    }
    assert launch_options(environ=environ)["proxy"] == {"server": "http://lower.example:3128"}
    assert environment_proxy({"HTTPS_PROXY": "http://upper.example:1"}) == BrowserProxy(
        "http://upper.example:1"
    )


def test_http_proxy_serves_when_no_https_proxy_and_a_bare_address_is_http() -> None:
    assert environment_proxy({"HTTP_PROXY": "10.0.0.8:3128"}) == BrowserProxy(
        "http://10.0.0.8:3128"
    )


def test_credentials_are_given_apart_and_unquoted() -> None:
    proxy = environment_proxy({"https_proxy": "http://ops%40corp:p%3Ass@proxy.corp:8080"})
    assert proxy is not None
    assert proxy.playwright() == {
        "server": "http://proxy.corp:8080",
        "username": "ops@corp",
        "password": "p:ss",
    }


def test_no_proxy_becomes_bypass_rules_covering_subdomains() -> None:
    environ = {"https_proxy": "http://proxy:3128", "NO_PROXY": "localhost, .corp.example,10.1.2.3"}
    option = launch_options(environ=environ)["proxy"]
    assert option["server"] == "http://proxy:3128"
    assert option["bypass"].split(",") == [
        "localhost",
        ".localhost",
        "corp.example",
        ".corp.example",
        "10.1.2.3",
    ]
    assert environment_proxy({"https_proxy": "http://proxy:3128", "no_proxy": "*"}) is None


@pytest.mark.parametrize(
    "url",
    [
        "https://corp.example/x",
        "https://api.corp.example/x",
        "http://localhost:8000/",
        "https://credit.shandong.gov.cn/",
        "https://notcorp.example/",
        "ftp://corp.example/",
    ],
)
def test_the_proxy_applies_where_scrapys_would(url: str) -> None:
    """``no_proxy`` means for the browser what urllib (and so Scrapy) makes of it."""
    no_proxy = "corp.example,localhost"
    proxy = BrowserProxy("http://proxy:3128", no_proxy)
    scheme_proxied = url.split(":")[0] in ("http", "https")
    host = url.split("/")[2]
    expected = scheme_proxied and not proxy_bypass_environment(host, {"no": no_proxy})
    assert proxy.applies_to(url) is expected
    assert proxy.applies_to(url) is (url.startswith(("https://credit", "https://notcorp")))


@pytest.fixture
def listening() -> Iterator[int]:
    """A port on 127.0.0.1 that accepts connections (a proxy, as far as a preflight sees)."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        yield server.getsockname()[1]


def test_the_preflight_reaches_the_portal_through_the_proxy(listening: int, netguard: Path) -> None:
    proxy = environment_proxy({"https_proxy": f"http://127.0.0.1:{listening}"})
    assert unreachable([PORTAL], 2.0, proxy) is None
    assert netguard.read_text() == ""  # the portal's name was never looked up


def test_a_proxy_that_does_not_answer_is_named_with_the_portal(netguard: Path) -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    proxy = environment_proxy({"https_proxy": f"http://127.0.0.1:{port}"})
    problem = unreachable([PORTAL], 2.0, proxy)
    assert problem is not None
    assert problem.startswith(
        f"cannot reach credit.shandong.gov.cn:443 through the proxy 127.0.0.1:{port}"
    )
    assert netguard.read_text() == ""


def test_a_host_no_proxy_names_is_reached_directly(listening: int, netguard: Path) -> None:
    proxy = environment_proxy({"https_proxy": "http://127.0.0.1:9", "no_proxy": "127.0.0.1"})
    assert unreachable([f"http://127.0.0.1:{listening}/"], 2.0, proxy) is None
