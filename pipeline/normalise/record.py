"""One ``RawEntry`` → one schema record (every field except the storage-owned ones).

Values come from the detail page (``entry.fields``) first, then the subject's profile page
(``entry.subject``), then the list row (``entry.row``): the most specific page wins, and a
lower page only fills what a higher one left empty. Labels that fill no schema field are kept
in ``extra`` under the portal's own wording so nothing published is lost.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from crawlers.items import RawEntry
from storage.schema import RECORD_FIELDS as SCHEMA_RECORD_FIELDS
from storage.schema import content_of

from .codes import id_kind, parse_uscc, region_from_id_number, region_from_uscc
from .dates import parse_date, parse_valid_until
from .entity import entity_id, entity_type, record_key
from .labels import SCHEMA_TARGETS, display_label, lookup
from .money import Number, parse_amount_column, parse_measure, penalty_types
from .reasons import reason_category
from .text import case_number_key, clean_text, name_key

LIST_KINDS = frozenset({"blacklist", "redlist", "penalty", "warning", "good", "license", "other"})
RECORD_KEY_RULES = frozenset({"case", "subject"})

STORAGE_FIELDS = ("status", "first_seen", "last_seen")
EXTRA_PAGES = "pages"
EXTRA_AMOUNT_MISMATCH = "amount_mismatch"

# Output order: the schema's Record table, minus the fields storage owns.
RECORD_FIELDS = tuple(name for name in SCHEMA_RECORD_FIELDS if name not in STORAGE_FIELDS)


class NormaliseError(ValueError):
    """The entry cannot become a record (e.g. no subject name): a spider or layout problem."""


@dataclass
class _Collected:
    """Label values sorted into targets, with everything unmapped kept for ``extra``."""

    values: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)  # target → label that filled it
    extra: dict[str, str | None] = field(default_factory=dict)


def _collect(entry: RawEntry, overrides: dict[str, str] | None) -> _Collected:
    """Apply label mapping and page precedence (detail > subject > row).

    A target is filled by the first page that has a value for it; on that page, labels of
    lower priority for the same target go to ``extra``. A less specific page repeating a
    filled schema field adds nothing. Helper targets (type label, amount columns) are not
    schema fields, so their labels are kept in ``extra`` too.
    """
    out = _Collected()

    def keep(label: str, value: str | None) -> None:
        if out.extra.get(label) is None:
            out.extra[label] = value

    for page in (entry.fields, entry.subject, entry.row):
        ranked = sorted(
            (
                (*lookup(raw_label, overrides), display_label(raw_label), clean_text(raw_value))
                for raw_label, raw_value in page.items()
            ),
            key=lambda item: item[1],
        )
        filled_here: set[str] = set()
        for target, _, label, value in ranked:
            is_schema = target in SCHEMA_TARGETS
            if target == "ignore" or (is_schema and value is None):
                continue
            if target == "extra":
                keep(label, value)
            elif value is not None and target not in out.values:
                out.values[target] = value
                out.labels[target] = label
                filled_here.add(target)
                if not is_schema:
                    keep(label, value)
            elif not is_schema or target in filled_here:
                keep(label, value)
    return out


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def _amount(
    c: _Collected, kind: str, from_measure: Number | None
) -> tuple[Number | None, tuple[Number, Number] | None]:
    """A 万元/元 column wins over the measure text; a disagreement is returned for flagging."""
    column: Number | None = None
    for suffix, unit in (("_wan", "wan"), ("_yuan", "yuan"), ("_amount", None)):
        text = c.values.get(f"_{kind}{suffix}")
        if text is not None:
            column = parse_amount_column(text, unit=unit)  # type: ignore[arg-type]
            if column is not None:
                break
    if column is None:
        return from_measure, None
    if from_measure is not None and from_measure != column:
        return column, (column, from_measure)
    return column, None


def normalise_entry(
    entry: RawEntry,
    *,
    list_kind: str,
    record_key_rule: str,
    domain: str | None = None,
    label_overrides: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Every schema Record field except ``status``, ``first_seen``, ``last_seen``.

    Dates are ISO strings and absent values None, so the result is ready for JSON. Raises
    ``NormaliseError`` when the entry names no subject.
    """
    if list_kind not in LIST_KINDS:
        raise ValueError(f"unknown list_kind {list_kind!r}")
    if record_key_rule not in RECORD_KEY_RULES:
        raise ValueError(f"unknown record_key_rule {record_key_rule!r}")
    c = _collect(entry, label_overrides)
    v = c.values

    entity_name = v.get("entity_name")
    if entity_name is None:
        raise NormaliseError(f"{entry.list}: no subject name on {entry.source_url}")
    entity_key = name_key(entity_name)

    code = parse_uscc(v.get("uscc"))
    id_number = v.get("id_number_masked")
    uscc_value, uscc_raw, uscc_valid = code.uscc, code.uscc_raw, code.uscc_valid
    if id_kind(id_number) == "uscc" and uscc_raw is None:
        # A company's code published in the ID column: it is a USCC, not a person's ID.
        code = parse_uscc(id_number)
        uscc_value, uscc_raw, uscc_valid = code.uscc, code.uscc_raw, code.uscc_valid
        id_number = None

    case_number = v.get("case_number")
    case_key = case_number_key(case_number)
    title = v.get("title")
    reason = v.get("reason")
    measure = v.get("measure")
    parsed = parse_measure(measure)
    types = parsed.penalty_types
    if (not types or types == ["other"]) and v.get("_penalty_category"):
        types = penalty_types(v["_penalty_category"]) or types
    fine, fine_flag = _amount(c, "fine", parsed.fine_yuan)
    confiscated, confiscated_flag = _amount(c, "confiscated", parsed.confiscated_yuan)

    decided_on = parse_date(v.get("decided_on"))
    published_on = parse_date(v.get("published_on"))
    valid_until = parse_valid_until(v.get("valid_until"))
    for target, parsed_date in (
        ("decided_on", decided_on),
        ("published_on", published_on),
        ("valid_until", valid_until),
    ):
        if parsed_date is None and target in v:
            # Kept as published: 长期 (open-ended) or text no rule could read.
            c.extra.setdefault(c.labels[target], v[target])

    extra: dict[str, Any] = dict(c.extra)
    mismatches = {
        name: {"column": flag[0], "measure": flag[1]}
        for name, flag in (("fine_yuan", fine_flag), ("confiscated_yuan", confiscated_flag))
        if flag is not None
    }
    if mismatches:
        extra[EXTRA_AMOUNT_MISMATCH] = mismatches
    extra[EXTRA_PAGES] = [{"url": p.url, "sha256": p.sha256, "role": p.role} for p in entry.pages]

    record: dict[str, Any] = {
        "source": entry.source,
        "list": entry.list,
        "list_kind": list_kind,
        "record_key": record_key(
            record_key_rule,  # type: ignore[arg-type]
            case_number_key=case_key,
            uscc=uscc_value,
            id_number_masked=id_number,
            name_key=entity_key,
            title=title,
            decided_on=_iso(decided_on),
        ),
        "entity_id": entity_id(entry.source, uscc_value, id_number, entity_key),
        "entity_name": entity_name,
        "entity_name_key": entity_key,
        "entity_type": entity_type(
            entity_name,
            uscc=uscc_value,
            uscc_raw=uscc_raw,
            id_number=id_number,
            type_label=v.get("_type_label"),
        ),
        "uscc": uscc_value,
        "uscc_raw": uscc_raw,
        "uscc_valid": uscc_valid,
        "id_number_masked": id_number,
        "legal_representative": v.get("legal_representative"),
        "registration_no": v.get("registration_no"),
        "region_code": region_from_uscc(uscc_value) or region_from_id_number(id_number),
        "case_number": case_number,
        "case_number_key": case_key,
        "title": title,
        "reason": reason,
        "reason_category": reason_category(domain, reason),
        "basis": v.get("basis"),
        "measure": measure,
        "penalty_types": types,
        "fine_yuan": fine,
        "confiscated_yuan": confiscated,
        "authority": v.get("authority"),
        "decided_on": _iso(decided_on),
        "published_on": _iso(published_on),
        "valid_until": _iso(valid_until),
        "source_url": entry.source_url,
        "raw_sha256": entry.raw_sha256,
        "extra": extra,
    }
    return {name: record[name] for name in RECORD_FIELDS}


def content_hash(record: dict[str, Any]) -> str:
    """sha256 of the canonical JSON of the content fields.

    Provenance is left out on purpose: a subject page that changes bytes (a new counter, a
    new list page) must not make the entries it contributed to look modified.
    """
    canonical = json.dumps(
        content_of(record),
        sort_keys=True,
        ensure_ascii=False,
        separators=(",", ":"),
        default=str,
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()
