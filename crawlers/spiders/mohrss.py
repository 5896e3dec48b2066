"""人社部 拖欠农民工工资"黑名单": announcements, declared in ``sources/mohrss.yml``."""

from __future__ import annotations

from typing import ClassVar

from crawlers.spiders.announcements import AnnouncementSpider


class MohrssSpider(AnnouncementSpider):
    name = "mohrss"
    source_id: ClassVar[str] = "mohrss"
