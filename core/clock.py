"""The project's one time zone: portals publish in China Standard Time, and runs, snapshots
and digests are dated by the Asia/Shanghai calendar day."""

from __future__ import annotations

from zoneinfo import ZoneInfo

TIMEZONE_NAME = "Asia/Shanghai"
SHANGHAI = ZoneInfo(TIMEZONE_NAME)
