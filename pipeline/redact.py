"""Redaction of natural persons, for groups that publish what creditwatch collects.

Off by default: the portals publish these entries, and researchers need them as published.
With redaction on, a record whose subject is a natural person (``entity_type`` ``person``)
keeps its surname and loses the rest of the name the way portals shorten names (王立新 →
王**), loses its masked ID number, and gets pseudonymous keys: its ``record_key`` and
``entity_id`` spell out the masked ID and name (SCHEMA.md), so they become a hash of
themselves, stable across runs and snapshots, so diffs and joins still work. The full name and
masked ID are also scrubbed wherever else they appear (title, reason, ``extra``). Companies,
their legal representatives (named in an official capacity) and authorities are unchanged.

Pure functions, no I/O.
"""

from __future__ import annotations

import hashlib
from typing import Any

PERSON = "person"
KEYED_FIELDS = ("record_key", "entity_id")
DROPPED_FIELDS = ("id_number_masked", "entity_name_key")


def short_name(name: str) -> str:
    """The first character, then one ``*`` per further character: 张三 → 张*, 王立新 → 王**."""
    name = name.strip()
    return name[:1] + "*" * (len(name) - 1) if name else name


def pseudonym(value: str) -> str:
    """A stable stand-in for a key that names a person."""
    return "redacted:" + hashlib.sha256(value.encode("utf-8")).hexdigest()[:16]


def is_person(record: dict[str, Any]) -> bool:
    return record.get("entity_type") == PERSON


def _scrub(value: Any, replacements: list[tuple[str, str]]) -> Any:
    if isinstance(value, str):
        for old, new in replacements:
            value = value.replace(old, new)
        return value
    if isinstance(value, dict):
        return {key: _scrub(item, replacements) for key, item in value.items()}
    if isinstance(value, list):
        return [_scrub(item, replacements) for item in value]
    return value


def redact_record(record: dict[str, Any]) -> dict[str, Any]:
    """The record as a publishing group may show it; anything but a person's is unchanged."""
    if not is_person(record):
        return record
    name = (record.get("entity_name") or "").strip()
    masked = (record.get("id_number_masked") or "").strip()
    replacements = [(text, new) for text, new in ((masked, ""), (name, short_name(name))) if text]
    out = {
        key: value if key in KEYED_FIELDS else _scrub(value, replacements)
        for key, value in record.items()
    }
    for key in KEYED_FIELDS:
        if out.get(key):
            out[key] = pseudonym(str(out[key]))
    for key in DROPPED_FIELDS:
        if key in out:
            out[key] = None
    return out


def redact_event(event: dict[str, Any], entity_type: str | None) -> dict[str, Any]:
    """An event about a person, redacted like its record (events carry no entity type, so
    the caller passes the record's)."""
    if entity_type != PERSON:
        return event
    redacted = redact_record({**event, "entity_type": PERSON})
    del redacted["entity_type"]
    changes = dict(redacted.get("changes") or {})
    if "entity_name" in changes:  # an earlier spelling is a name too
        changes["entity_name"] = [short_name(v) if v else v for v in changes["entity_name"]]
    for key in (*DROPPED_FIELDS, *KEYED_FIELDS):
        if key in changes:
            changes[key] = [None, None]
    if changes:
        redacted["changes"] = changes
    return redacted
