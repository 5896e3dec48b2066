"""Redaction of natural persons, for groups that publish what creditwatch collects.

Off by default: the portals publish these entries, and researchers need them as published.
With redaction on, a record whose subject is a natural person (``entity_type`` ``person``)
keeps its surname and loses the rest of the name the way portals shorten names (王立新 →
王**), loses its masked ID number, and gets pseudonymous keys: its ``record_key`` and
``entity_id`` spell out the masked ID and name (SCHEMA.md), so they become a hash of
themselves, stable across runs and snapshots, so diffs and joins still work. The full name and
masked ID are also scrubbed wherever else they appear (title, reason, ``extra``).

A legal representative (法定代表人, 负责人) is a natural person too: in every record, whoever
its subject, the names in ``legal_representative`` are shortened the same way and scrubbed
from the record's other fields. Anything shaped like a masked ID number (``3502**********1234``)
is dropped from every text, whoever it belongs to. Companies' and authorities' names and
keys are unchanged (a company's key is its USCC or a hash, never a person's name).

Pure functions, no I/O.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from typing import Any

PERSON = "person"
KEYED_FIELDS = ("record_key", "entity_id")
DROPPED_FIELDS = ("id_number_masked", "entity_name_key")
REPRESENTATIVE = "legal_representative"
# How portals join several representatives in one field: 张三、李四 / 张三,李四 / 张三 李四.
NAME_SEPARATORS = re.compile(r"[、,，;；/／|\s]+")
# A masked ID number as portals publish it (at least two digits, stars, a digit or X). Only
# texts with a star are searched: most have none, and snapshots redact millions of records.
MASKED_ID = re.compile(r"[0-9]{2,}[*＊]{2,}[0-9]*[0-9Xx]")

Replacements = list[tuple[str, str]]


def short_name(name: str) -> str:
    """The first character, then one ``*`` per further character: 张三 → 张*, 王立新 → 王**."""
    name = name.strip()
    return name[:1] + "*" * (len(name) - 1) if name else name


def short_names(value: str) -> str:
    """Each name of a field that may hold several (张三、李四 → 张*、李*), separators kept."""
    parts = NAME_SEPARATORS.split(value)
    out = value
    for part in sorted({p for p in parts if p}, key=len, reverse=True):
        out = out.replace(part, short_name(part))
    return out


def representatives(value: Any) -> list[str]:
    """The names a ``legal_representative`` field holds (one character is no name to scrub)."""
    if not isinstance(value, str):
        return []
    return [name for name in NAME_SEPARATORS.split(value.strip()) if len(name) > 1]


def pseudonym(value: str) -> str:
    """A stable stand-in for a key that names a person."""
    return "redacted:" + hashlib.sha256(value.encode("utf-8")).hexdigest()[:16]


def is_person(record: dict[str, Any]) -> bool:
    return record.get("entity_type") == PERSON


def scrub(value: Any, replacements: Replacements) -> Any:
    """``value`` (text, or lists and dicts of them) with each old text replaced by its new one
    and anything shaped like a masked ID number dropped."""
    if isinstance(value, str):
        for old, new in replacements:
            if old in value:
                value = value.replace(old, new)
        if "*" in value or "＊" in value:
            value = MASKED_ID.sub("", value)
        return value
    if isinstance(value, dict):
        return {key: scrub(item, replacements) for key, item in value.items()}
    if isinstance(value, list):
        return [scrub(item, replacements) for item in value]
    return value


def replacements(records: Iterable[dict[str, Any]], person: bool) -> Replacements:
    """What to scrub from these records (and their events): every representative's full name
    by its short form, and, when the subject is a person, the person's names and masked ID
    numbers. Longest first, so a name is never half replaced by a shorter one it contains."""
    pairs: dict[str, str] = {}
    for record in records:
        for name in representatives(record.get(REPRESENTATIVE)):
            pairs[name] = short_name(name)
        if person:
            name = str(record.get("entity_name") or "").strip()
            if len(name) > 1:
                pairs[name] = short_name(name)
            masked = str(record.get("id_number_masked") or "").strip()
            if masked:
                pairs[masked] = ""
    return sorted(pairs.items(), key=lambda pair: -len(pair[0]))


def _scrubbed(item: dict[str, Any], pairs: Replacements, person: bool) -> dict[str, Any]:
    """A record or event scrubbed; its keys are a person's pseudonyms, anyone else's as they
    are (a company's key is its USCC or a hash, and its entity page answers at it). Text is
    scrubbed inline, not by a call per field: snapshots pass millions of records through."""
    out = {}
    for key, value in item.items():
        if key in KEYED_FIELDS:
            out[key] = pseudonym(str(value)) if person and value else value
        elif type(value) is str:
            for old, new in pairs:
                if old in value:
                    value = value.replace(old, new)
            if "*" in value or "＊" in value:
                value = MASKED_ID.sub("", value)
            out[key] = value
        else:
            out[key] = scrub(value, pairs)
    return out


def redact_record(record: dict[str, Any]) -> dict[str, Any]:
    """The record as a publishing group may show it."""
    person = is_person(record)
    out = _scrubbed(record, replacements([record], person), person)
    if isinstance(out.get(REPRESENTATIVE), str):
        out[REPRESENTATIVE] = short_names(out[REPRESENTATIVE])
    if person:
        for key in DROPPED_FIELDS:
            if key in out:
                out[key] = None
    return out


def redact_event(event: dict[str, Any], entity_type: str | None) -> dict[str, Any]:
    """An event redacted like its record (events carry no entity type, so the caller passes
    the record's): a person's names, spellings and keys; anyone's representatives named in
    ``changes``."""
    person = entity_type == PERSON
    changes = event.get("changes") or {}
    named = [{REPRESENTATIVE: value} for value in changes.get(REPRESENTATIVE) or []]
    if person:
        named.append({"entity_name": event.get("entity_name")})
        named += [{"entity_name": value} for value in changes.get("entity_name") or []]
    out = _scrubbed(event, replacements(named, person), person)
    changes = dict(out.get("changes") or {})
    if isinstance(changes.get(REPRESENTATIVE), list):
        changes[REPRESENTATIVE] = [
            short_names(v) if isinstance(v, str) else v for v in changes[REPRESENTATIVE]
        ]
    if person:
        if isinstance(changes.get("entity_name"), list):  # an earlier spelling is a name too
            changes["entity_name"] = [
                short_name(v) if isinstance(v, str) else v for v in changes["entity_name"]
            ]
        for key in (*DROPPED_FIELDS, *KEYED_FIELDS):
            if key in changes:
                changes[key] = [None, None]
    if changes:
        out["changes"] = changes
    return out


def redact_entity(
    records: list[dict[str, Any]], events: list[dict[str, Any]]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """One subject's records and events, each redacted, then every private name and masked ID
    number any of them carried scrubbed from all of them: an event may quote a spelling or a
    number that only another record or event holds. A subject is a person when any of its
    records says so (the safe reading); its records keep their own ``entity_type``."""
    person = any(is_person(r) for r in records)
    named: list[dict[str, Any]] = list(records)
    for event in events:
        changes = event.get("changes") or {}
        named += [{REPRESENTATIVE: value} for value in changes.get(REPRESENTATIVE) or []]
        if person:
            named.append({"entity_name": event.get("entity_name")})
            named += [{"entity_name": value} for value in changes.get("entity_name") or []]
    pairs = replacements(named, person)
    redacted_records = []
    for record in records:
        out = redact_record({**record, "entity_type": PERSON} if person else record)
        out["entity_type"] = record.get("entity_type")
        redacted_records.append(_scrubbed(out, pairs, False))
    redacted_events = [
        _scrubbed(redact_event(event, PERSON if person else None), pairs, False) for event in events
    ]
    return redacted_records, redacted_events
