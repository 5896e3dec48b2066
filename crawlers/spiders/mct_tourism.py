"""文化和旅游部 全国旅游市场黑名单: announcements, declared in ``sources/mct_tourism.yml``."""

from __future__ import annotations

from typing import ClassVar

from crawlers.spiders.announcements import AnnouncementSpider


class MctTourismSpider(AnnouncementSpider):
    name = "mct_tourism"
    source_id: ClassVar[str] = "mct_tourism"
