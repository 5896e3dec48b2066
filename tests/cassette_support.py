"""Shared pieces of the cassette tests: a local portal-like server and a crawl runner.

The server imitates what Chinese credit portals send (GBK with the charset only in
``<meta>``, gzip, redirects, JSON, POST forms, cookies, a JS-built table) on 127.0.0.1, and
counts every hit so tests can prove a replay never reached it.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

ROOT = Path(__file__).resolve().parent.parent
NAME = "厦门市港中旅国际旅行社有限公司"

GBK_PAGE = (
    '<html><head><meta http-equiv="Content-Type" content="text/html; charset=gbk">'
    f"<title>信用</title></head><body><h1 id='name'>{NAME}</h1></body></html>"
).encode("gbk")

APP_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>列表</title></head>
<body><h1 id="title">加载中</h1><p id="status">loading</p>
<table id="companies"></table>
<script>
(async () => {
  try {
    const meta = await (await fetch("/api/meta.json?_t=" + Date.now())).json();
    const rows = await (await fetch("/api/search", {
      method: "POST",
      headers: {"Content-Type": "application/x-www-form-urlencoded"},
      body: "name=" + encodeURIComponent("厦门"),
    })).json();
    document.getElementById("title").textContent = meta.title;
    const table = document.getElementById("companies");
    for (const row of rows) {
      const tr = table.insertRow();
      for (const cell of row) tr.insertCell().textContent = cell;
    }
    document.getElementById("status").textContent = "ok";
  } catch (error) {
    document.getElementById("status").textContent = "error: " + error;
  }
})();
</script></body></html>"""

APP_ROWS = [
    [NAME, "91350200MA0000001X", "存续"],
    ["厦门建发股份有限公司", "91350200154990617T", "存续"],
]


class _Handler(BaseHTTPRequestHandler):
    """Routes of the fake portal; each answer is fixed so cassettes can be compared."""

    server: PortalServer
    protocol_version = "HTTP/1.1"  # keep-alive, like the portals (every answer has a length)

    def log_message(self, format: str, *args: Any) -> None:
        """Keep test output quiet."""

    def do_GET(self) -> None:
        self._dispatch(b"")

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self._dispatch(self.rfile.read(length))

    def _dispatch(self, body: bytes) -> None:
        self.server.hits.append((self.command, self.path))
        parts = urlsplit(self.path)
        query = {key: values[0] for key, values in parse_qs(parts.query).items()}
        form = {key: values[0] for key, values in parse_qs(body.decode("utf-8")).items()}
        route = {
            "/gbk-meta": lambda: self._send(200, GBK_PAGE, "text/html"),
            "/gzip": self._gzip,
            "/redirect": lambda: self._send(302, b"", "text/html", [("Location", "/landing")]),
            "/landing": lambda: self._html("<title>落地页</title><p id='landed'>已跳转</p>"),
            "/json": lambda: self._json({"name": NAME, "count": 2, "tags": ["失信", "经营异常"]}),
            "/search": lambda: self._json({"query": form.get("name", ""), "method": self.command}),
            "/cookie": self._cookie,
            "/q": lambda: self._json({"kw": query.get("kw"), "page": query.get("page")}),
            "/app.html": lambda: self._html(APP_PAGE),
            "/api/meta.json": lambda: self._json({"title": "企业列表"}),
            "/api/search": lambda: self._json(APP_ROWS if form.get("name") == "厦门" else []),
        }.get(parts.path)
        if route is None:
            self._send(404, b"not found", "text/plain")
        else:
            route()

    def _gzip(self) -> None:
        text = f"<html><body><p id='gz'>{NAME} 压缩</p></body></html>".encode()
        extra = [("Content-Encoding", "gzip")]
        self._send(200, gzip.compress(text), "text/html; charset=utf-8", extra)

    def _cookie(self) -> None:
        extra = [
            ("Set-Cookie", "sid=secret-session; Path=/"),
            ("Set-Cookie", "track=secret-track; Path=/"),
            ("X-Source", "a"),
            ("X-Source", "b"),
        ]
        self._send(200, "已设置".encode(), "text/plain; charset=utf-8", extra)

    def _html(self, text: str) -> None:
        self._send(200, text.encode(), "text/html; charset=utf-8")

    def _json(self, data: Any) -> None:
        body = json.dumps(data, ensure_ascii=False).encode()
        self._send(200, body, "application/json; charset=utf-8")

    def _send(
        self, status: int, body: bytes, ctype: str, extra: Sequence[tuple[str, str]] = ()
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for name, value in extra:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)


class PortalServer(ThreadingHTTPServer):
    """The fake portal, recording (method, path) of every request it receives."""

    daemon_threads = True

    def __init__(self, port: int = 0) -> None:
        super().__init__(("127.0.0.1", port), _Handler)
        self.hits: list[tuple[str, str]] = []

    @property
    def port(self) -> int:
        return self.server_address[1]

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


Served = TypeVar("Served", bound=ThreadingHTTPServer)


@contextmanager
def serving(server: Served) -> Iterator[Served]:
    """Serve ``server`` in a thread; on exit the port is closed (connections refused)."""
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@contextmanager
def portal(port: int = 0) -> Iterator[PortalServer]:
    """Serve the fake portal in a thread; on exit the port is closed (connections refused)."""
    with serving(PortalServer(port)) as server:
        yield server


def chromium_executable() -> str | None:
    """Debian's chromium if installed, else None (then Playwright's own browser may exist)."""
    return "/usr/bin/chromium" if os.path.exists("/usr/bin/chromium") else None


def playwright_browser_available() -> tuple[bool, str]:
    """Whether some Chromium can be launched, and why not when it can't."""
    if chromium_executable():
        return True, ""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        bundled = playwright.chromium.executable_path
    if bundled and os.path.exists(bundled):
        return True, ""
    return False, (
        "no Chromium: /usr/bin/chromium is missing (apt-get install -y chromium) and "
        f"Playwright's own browser is not downloaded ({bundled})"
    )


def run_crawl(spec: dict[str, Any], workdir: Path, timeout: float = 120) -> dict[str, Any]:
    """Run tests/cassette_crawl.py in a fresh process (Twisted's reactor cannot restart)."""
    spec_path = workdir / f"spec-{len(list(workdir.glob('spec-*.json')))}.json"
    out_path = spec_path.with_suffix(".out.json")
    spec_path.write_text(json.dumps({**spec, "out": str(out_path)}, ensure_ascii=False))
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    proc = subprocess.run(
        [sys.executable, "-m", "tests.cassette_crawl", str(spec_path)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, f"crawl failed ({proc.returncode}):\n{proc.stderr[-6000:]}"
    result = json.loads(out_path.read_text())
    result["stderr"] = proc.stderr
    assert "log_count/ERROR" not in result["stats"], proc.stderr[-6000:]
    return result


def copy_cassette(source: Path, target: Path) -> Path:
    """A scratch copy, so a test can change a cassette without touching the shared one."""
    shutil.copyfile(source, target)
    return target
