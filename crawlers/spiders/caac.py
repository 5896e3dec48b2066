"""民航 限制乘坐民用航空器严重失信人名单: announcements, declared in ``sources/caac.yml``."""

from __future__ import annotations

from typing import ClassVar

from crawlers.spiders.announcements import AnnouncementSpider


class CaacSpider(AnnouncementSpider):
    name = "caac"
    source_id: ClassVar[str] = "caac"
