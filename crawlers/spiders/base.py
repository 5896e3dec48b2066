"""What every portal spider shares: its registry entry and the politeness that comes with it."""

from __future__ import annotations

import hashlib
from typing import Any, ClassVar

import scrapy
from scrapy.http import Response
from scrapy.settings import BaseSettings

from core.registry import SourceDef, get_source
from crawlers.responses import challenge_outcome


class PortalSpider(scrapy.Spider):
    """A spider bound to one registry source (``source_id``).

    Politeness comes from the registry. When replaying a cassette there is no host to be
    polite to, so delays, throttling and backoff are switched off.
    """

    source_id: ClassVar[str]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._rows_seen: dict[str, set[bytes]] = {}  # digests: millions of rows fit

    def first_sight(self, list_id: str, identity: str) -> bool:
        """False when this run already read a row of ``list_id`` that is ``identity`` (its
        detail link, or all its cells). A repeated row is a paging glitch that can stand in
        for a hidden entry, and the dupefilter would swallow it, so spiders ask here and
        raise ``MalformedPage`` for the page that repeats."""
        seen = self._rows_seen.setdefault(list_id, set())
        digest = hashlib.blake2b(identity.encode("utf-8"), digest_size=16).digest()
        if digest in seen:
            return False
        seen.add(digest)
        return True

    @classmethod
    def source(cls) -> SourceDef:
        return get_source(cls.source_id)

    @classmethod
    def update_settings(cls, settings: BaseSettings) -> None:
        super().update_settings(settings)
        polite = cls.source().politeness
        replaying = bool(settings.get("CW_CASSETTE")) and (
            settings.get("CW_CASSETTE_MODE", "replay") == "replay"
        )
        overrides: dict[str, Any] = {
            "DOWNLOAD_DELAY": 0 if replaying else polite.download_delay,
            "AUTOTHROTTLE_ENABLED": not replaying,
            "AUTOTHROTTLE_START_DELAY": polite.download_delay,
            "AUTOTHROTTLE_MAX_DELAY": polite.autothrottle_max_delay,
            "CONCURRENT_REQUESTS_PER_DOMAIN": 8 if replaying else polite.concurrency,
            "RETRY_TIMES": polite.retry_times,
            "CW_RETRY_BACKOFF": 0 if replaying else polite.retry_backoff,
            "CW_CASSETTE_FILTER_QUERY": list(cls.source().filter_query_parameters),
        }
        settings.setdict(overrides, priority="spider")

    def classify_response(self, response: Response) -> str | None:
        """A portal-specific outcome for a response that looks fine by its status (e.g. a
        challenge page served with 200); None when the status tells the whole story. By
        default: a WAF challenge or captcha page (``crawlers.responses.challenge_outcome``)."""
        return challenge_outcome(response)
