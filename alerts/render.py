"""Plain-text renderings of events: one line each, readable on their own."""

from __future__ import annotations

import json
from typing import Any

CAUSES = {
    "published_removal": "the portal published its removal",
    "expired": "past its valid-until date",
    "disappeared": "absent from consecutive healthy runs",
}


def subject(event: dict[str, Any]) -> str:
    what = event.get("case_number") or event.get("title") or event.get("record_key")
    return f"{event.get('entity_name') or '?'} — {what}"


def event_line(event: dict[str, Any]) -> str:
    """``listed  xmtravel.warning  厦门…有限公司 — 厦文旅罚〔2025〕302号``, with cause or changes."""
    line = f"{event['event']:<9} {event['list']:<18} {subject(event)}"
    if event.get("baseline"):
        line += "  (baseline)"
    if event.get("cause"):
        line += f"  [{event['cause']}: {CAUSES.get(event['cause'], event['cause'])}]"
    if event.get("changes"):
        parts = [
            f"{name}: {json.dumps(old, ensure_ascii=False)} → {json.dumps(new, ensure_ascii=False)}"
            for name, (old, new) in event["changes"].items()
        ]
        line += "  {" + "; ".join(parts) + "}"
    return line
