"""Plain-text renderings of events: one line each, readable on their own."""

from __future__ import annotations

import json
from typing import Any

CAUSES = {
    "published_removal": "the portal published its removal",
    "expired": "past its valid-until date",
    "disappeared": "absent from consecutive healthy runs",
}


# A line names its values; it does not reproduce a page. Longer values are cut here.
LONGEST_VALUE = 200


def short(text: str, limit: int = LONGEST_VALUE) -> str:
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… ({len(text)} characters)"


def _json(value: Any) -> str:
    return short(json.dumps(value, ensure_ascii=False))


def subject(event: dict[str, Any]) -> str:
    what = event.get("case_number") or event.get("title") or event.get("record_key")
    return f"{short(str(event.get('entity_name') or '?'))} — {short(str(what))}"


def event_line(event: dict[str, Any]) -> str:
    """One line: event, list, subject and case or title, then the cause or the changes."""
    line = f"{event['event']:<9} {event['list']:<18} {subject(event)}"
    if event.get("baseline"):
        line += "  (baseline)"
    if event.get("cause"):
        line += f"  [{event['cause']}: {CAUSES.get(event['cause'], event['cause'])}]"
    if event.get("changes"):
        parts = [
            f"{name}: {_json(old)} → {_json(new)}" for name, (old, new) in event["changes"].items()
        ]
        line += "  {" + "; ".join(parts) + "}"
    return line
