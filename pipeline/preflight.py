"""What a crawl checks before it fetches, so that a wrong input or a dead network is said in
one line, at once, instead of minutes of retries and a failed run that says nothing.

* ``cassette_problem``: the file to replay is a vcrpy cassette and holds requests to the
  source's host. A file that is not one, or another portal's cassette, is refused before
  any run is made: it says nothing about the source, so ``health`` never counts it.
* ``unreachable``: the first hop of a live crawl (the source's host, or the proxy the
  environment names for it) resolves and accepts a TCP connection within a few seconds.
  When it does not, the conductor records the run with that one fetch outcome and finishes
  it (``failed``: the portal could not be read, which is what ``health`` should count),
  instead of letting Scrapy retry every request with backoff.
* ``nothing_played``: a replay whose every request (robots.txt aside) missed the cassette
  (a cassette of another source on the same host, or one recorded before the spider
  changed) ends ``void``, a state ``health`` does not count.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from urllib.request import getproxies, proxy_bypass

from vcr.serializers import yamlserializer

from core.registry import SourceDef

CONNECT_TIMEOUT = 8.0  # seconds for the name lookup, and again for the TCP connection
UNREACHABLE = "unreachable"  # how the error of such a run begins
# What the fetch log says of a request a replay's cassette has no answer for
# (crawlers.middlewares.CassetteMiddleware's IgnoreRequest).
CASSETTE_MISS = "cassette miss"


def _host(url: str) -> str:
    return (urlsplit(url).hostname or "").lower()


def cassette_problem(path: Path, source: SourceDef) -> str | None:
    """Why ``path`` cannot be a cassette of ``source`` (one line), or None. Reads it as vcrpy
    does (its YAML loader); only the requests' hosts are compared, so a cassette of another
    source on the same host passes here and ends ``void`` if nothing in it answers."""
    try:
        data = yamlserializer.deserialize(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        return f"cannot read the cassette {path}: {exc}"
    except Exception as exc:  # any YAML error: the file is not a cassette
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return f"{path} is not a cassette (not YAML: {first})"
    interactions = data.get("interactions") if isinstance(data, dict) else None
    if not isinstance(interactions, list):
        return f"{path} is not a vcrpy cassette (it has no `interactions:` list)"
    hosts = set()
    for item in interactions:
        try:
            hosts.add(_host(item["request"]["uri"]))
        except (KeyError, TypeError):
            return f"{path} is not a vcrpy cassette (an interaction has no request uri)"
    if not hosts:
        return f"the cassette {path} is empty: it has no recorded interaction to replay"
    wanted = _host(source.base_url)
    if wanted not in hosts:
        shown = ", ".join(sorted(hosts)[:3]) + (", …" if len(hosts) > 3 else "")
        return (
            f"the cassette {path} has no request to {wanted} ({source.id}'s host); its "
            f"requests go to {shown}: is it another source's cassette?"
        )
    return None


@dataclass(frozen=True)
class Unreachable:
    """The first hop of a live crawl did not answer: ``outcome`` in the fetch vocabulary
    (``http_error`` or ``timeout``), ``reason`` in words."""

    host: str
    outcome: str
    reason: str

    @property
    def detail(self) -> str:
        return f"{UNREACHABLE}: cannot reach {self.host}: {self.reason}"


def _first_hop(url: str) -> tuple[str, int, str]:
    """Host, port and what to call it: the proxy the environment names for ``url`` (as
    Scrapy's HttpProxyMiddleware picks it), else the URL's own host."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    proxy = getproxies().get(parts.scheme)
    if proxy and not proxy_bypass(host):
        proxied = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
        proxy_host = proxied.hostname or ""
        return proxy_host, proxied.port or 80, f"the proxy {proxy_host}:{proxied.port or 80}"
    return host, port, host


def _resolve(host: str, port: int, timeout: float) -> list[Any]:
    """getaddrinfo with a time limit (it has none of its own): in a daemon thread."""
    answer: dict[str, Any] = {}

    def lookup() -> None:
        try:
            answer["ok"] = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as exc:
            answer["error"] = exc

    thread = threading.Thread(target=lookup, daemon=True, name=f"resolve {host}")
    thread.start()
    thread.join(timeout)
    if "error" in answer:
        raise answer["error"]
    if "ok" not in answer:
        raise TimeoutError(f"no answer from the name server within {timeout:g} s")
    return answer["ok"]


def unreachable(url: str, timeout: float = CONNECT_TIMEOUT) -> Unreachable | None:
    """None when the first hop of ``url`` accepts a TCP connection within ``timeout``
    seconds; else what failed. The connection is closed at once: nothing is sent."""
    host, port, name = _first_hop(url)
    try:
        addresses = _resolve(host, port, timeout)
    except TimeoutError as exc:
        return Unreachable(name, "timeout", f"DNS lookup failed ({exc})")
    except OSError as exc:
        return Unreachable(name, "http_error", f"DNS lookup failed ({exc.strerror or exc})")
    problem: OSError | None = None
    for family, kind, proto, _, address in addresses:
        try:
            with socket.socket(family, kind, proto) as sock:
                sock.settimeout(timeout)
                sock.connect(address)
            return None
        except OSError as exc:
            problem = exc
    if isinstance(problem, TimeoutError):
        return Unreachable(name, "timeout", f"no answer on port {port} within {timeout:g} s")
    reason = getattr(problem, "strerror", None) or str(problem)
    return Unreachable(name, "http_error", f"{reason.lower()} (port {port})")


def unreachable_reason(run: Any) -> str | None:
    """``cannot reach HOST: REASON`` when the run ended at its first hop, else None."""
    error = run.error or ""
    return error.removeprefix(f"{UNREACHABLE}: ") if error.startswith(f"{UNREACHABLE}: ") else None


def nothing_played(fetches: Iterable[Any]) -> bool:
    """Whether a replay's fetch log (rows with ``url`` and ``detail``) shows that nothing
    but robots.txt was answered: every other request missed the cassette."""
    asked = [row for row in fetches if urlsplit(row.url).path != "/robots.txt"]
    return bool(asked) and all(CASSETTE_MISS in (row.detail or "") for row in asked)
