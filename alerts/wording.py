"""How an alert words a value for a person: labels, money, times, lists of codes.

The stored values are machine values (``fine_yuan: 50000``, ISO datetimes in UTC, enum
codes); a watchdog reading an e-mail needs ``罚款金额 5万元`` and the local time with its zone.
Only our own words are translated (``core/catalogue*.yml``); scraped text is returned as it
is, for the renderers to escape. Pure functions.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo

from core.catalogue import Texts
from core.clock import TIMEZONE_NAME

MONEY_FIELDS = ("fine_yuan", "confiscated_yuan")
TIME_FIELDS = ("at", "fetched_at", "first_seen", "last_seen", "started_at", "ended_at")
WAN = Decimal(10000)
# Enumerations whose codes the shared vocabulary words (field name → vocabulary group).
_VOCABULARY = {
    "list_kind": "list_kind",
    "status": "status",
    "entity_type": "entity_type",
    "event": "event",
    "cause": "cause",
}


def label(name: str, t: Texts) -> str:
    """A field's label: the alerts' own wording where it differs, else the shared one."""
    return t.group("human_field").get(name) or t.field(name)


def _plain(number: Decimal) -> str:
    """``12.50`` → ``12.5``, ``3E+4`` → ``30000``: no exponent, no trailing zeros."""
    text = format(number.normalize(), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def money(amount: Any, t: Texts) -> str:
    """Yuan as a reader says them: zh ``8000元`` / ``1万元`` / ``2.5万元`` (万 from 10,000 on),
    en ``¥50,000``. A value that is no number is returned as text."""
    try:
        value = Decimal(str(amount))
    except (InvalidOperation, ValueError):
        return str(amount)
    if not value.is_finite():
        return str(amount)
    if t.language == "zh":
        if abs(value) >= WAN:
            return t["human_money_wan"].format(n=_plain(value / WAN))
        return t["human_money"].format(n=_plain(value))
    whole = value == value.to_integral_value()
    return t["human_money"].format(n=f"{value:,.0f}" if whole else f"{value:,.2f}")


def _utc_offset(moment: datetime) -> str:
    offset = moment.utcoffset()
    minutes = int(offset.total_seconds() // 60) if offset is not None else 0
    sign = "+" if minutes >= 0 else "-"
    hours, rest = divmod(abs(minutes), 60)
    return f"UTC{sign}{hours}" + (f":{rest:02d}" if rest else "")


def parse_time(value: Any) -> datetime | None:
    """A datetime from a datetime or an ISO string (naive ones are UTC), else None."""
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            return None
    else:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def local_time(value: Any, t: Texts, timezone: str = TIMEZONE_NAME) -> str:
    """``2025-11-22 10:00（北京时间）`` / ``2025-11-22 10:00 (UTC+8)``: the reader's clock,
    the zone named; another subscription zone shows its offset and name. Unreadable values
    are returned as text."""
    moment = parse_time(value)
    if moment is None:
        return "" if value is None else str(value)
    local = moment.astimezone(ZoneInfo(timezone))
    if timezone == TIMEZONE_NAME:
        zone = t["human_beijing_time"]
    else:
        zone = f"{_utc_offset(local)} {timezone}"
    return t["human_time"].format(time=local.strftime("%Y-%m-%d %H:%M"), zone=zone)


def value_text(name: str, value: Any, t: Texts, timezone: str = TIMEZONE_NAME) -> str:
    """A field's value in words: null as ``（空）``, money in 元/万元 or ¥, times local,
    enumeration codes and penalty types in words, lists joined, the rest as stored."""
    if value is None or value == "" or value == []:
        return t["none"]
    if name in MONEY_FIELDS and isinstance(value, int | float | Decimal | str):
        return money(value, t)
    if isinstance(value, bool):
        return t["human_yes"] if value else t["human_no"]
    if name in TIME_FIELDS and isinstance(value, datetime | str):
        return local_time(value, t, timezone)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if name == "penalty_types" and isinstance(value, list | tuple):
        words = t.group("human_penalty")
        return t["human_list_separator"].join(words.get(str(v), str(v)) for v in value)
    if name in _VOCABULARY and isinstance(value, str):
        return t.word(_VOCABULARY[name], value) or value
    if isinstance(value, str):
        return value
    if isinstance(value, list | tuple) and all(isinstance(v, str | int | float) for v in value):
        return t["human_list_separator"].join(str(v) for v in value)
    if isinstance(value, int | float | Decimal):
        return str(value)
    return json.dumps(value, ensure_ascii=False, default=str, sort_keys=True)


def health_text(health: str | None, t: Texts) -> str:
    """A list's health in a run, in words (``degraded (cannot prove absence)``)."""
    if not health:
        return t["unknown"]
    return t.group("human_health").get(health) or t.word("health", health) or health


def cause_text(cause: str | None, t: Texts) -> str:
    """A delisting's cause in words; an unknown code is shown after ``(unknown)``."""
    if not cause:
        return t["unknown"]
    return t.word("cause", cause) or f"{t['unknown']} {cause}"
