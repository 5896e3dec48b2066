"""Links from an alert to the web app (``creditwatch serve``), so a reader can act on it.

An alert is read far from the machine that sent it, so its links need the web app's public
address: a subscription's ``base_url``, else ``CREDITWATCH_BASE_URL``, else ``DEFAULT_BASE_URL``
(what ``creditwatch serve`` listens on by default: right on the sending machine, and still an
http(s) link every feed reader accepts). The web app's own feed route prefers
``CREDITWATCH_BASE_URL`` to the address it was asked at (a proxy's inner address).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, urlsplit

BASE_URL_ENV = "CREDITWATCH_BASE_URL"
DEFAULT_BASE_URL = "http://127.0.0.1:8000"
MAX_BASE_URL = 200
_BAD_CHARS = re.compile(r"[\s\x00-\x1f\x7f<>\"'`\\]")


def check_base_url(value: str) -> str:
    """``value`` without its trailing ``/`` when it is an http(s) address with a host and no
    query or fragment (links are appended to it); ValueError saying why otherwise."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError("a base URL must be a non-empty http(s) address")
    value = value.strip()
    if len(value) > MAX_BASE_URL or _BAD_CHARS.search(value):
        raise ValueError(f"base URL {value!r} is too long or holds spaces or quotes")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"base URL {value!r} must be http(s)://HOST[:PORT][/PATH]")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise ValueError(f"base URL {value!r} must have no query, fragment or user")
    return value.rstrip("/")


def base_url(own: str | None = None, fallback: str = DEFAULT_BASE_URL) -> str:
    """The web app's address for links: ``own`` (a subscription's), else the environment's,
    else ``fallback``. A malformed ``CREDITWATCH_BASE_URL`` is ignored rather than
    stopping alerts: ``creditwatch alerts test`` shows the links it produces."""
    for candidate in (own, os.environ.get(BASE_URL_ENV)):
        if candidate:
            try:
                return check_base_url(candidate)
            except ValueError:
                continue
    return check_base_url(fallback)


def entity_link(base: str, entity_id: str) -> str:
    return f"{base}/entities/{quote(entity_id, safe='')}"


def list_link(base: str, list_id: str) -> str:
    return f"{base}/lists/{quote(list_id, safe='')}"


def source_link(base: str, source: str) -> str:
    """The start page at the source's section (its lists, their health)."""
    return f"{base}/#source-{quote(source, safe='')}"


def event_link(base: str, event: Mapping[str, Any]) -> str:
    """The page of the entity an event is about, else (no entity id) its list's page."""
    entity_id = event.get("entity_id")
    if isinstance(entity_id, str) and entity_id:
        return entity_link(base, entity_id)
    list_id = event.get("list")
    if isinstance(list_id, str) and list_id:
        return list_link(base, list_id)
    return f"{base}/"
