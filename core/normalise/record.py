"""One ``RawEntry`` → one schema record (every field except the storage-owned ones).

Values come from the detail page (``entry.fields``) first, then the subject's profile page
(``entry.subject``), then the list row (``entry.row``): the most specific page wins, and a
lower page only fills what a higher one left empty. Labels that fill no schema field are kept
in ``extra`` under the portal's own wording so nothing published is lost.

What the normaliser derives besides the schema fields goes to ``extra`` under these keys:

* ``name_parts``: region, trade name, industry, organisation form and branch of an
  organisation's name (``names.py``);
* ``case_number_parts``: year, court, case type and sequence of a court 案号 (``casenum.py``);
* ``code_checks``: check-digit verdicts of an organisation code, a 15-digit registration
  number or an unmasked resident ID (the USCC has its own fields);
* ``filed_on``: the ISO date of a court case's filing (立案时间, ``regDate``);
* ``reason_vocabulary``: the vocabulary and version that gave ``reason_category``;
* ``open_ended``: true when ``valid_until`` is null because the entry is valid 长期;
* ``valid_until_rule``: how ``valid_until`` was derived when the list's validity is a rule
  (CAAC: one year) and the entry publishes no end date;
* ``removal``: a removal published with the entry (``removed_on``, ``reason``, ``authority``);
* ``amount_mismatch``: a 万元/元 column and the measure text disagreeing (the column wins);
* ``pages``: the other pages the entry was read from (provenance, not content).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from functools import lru_cache
from typing import Any

import orjson

from core.items import RawEntry
from core.schema import RECORD_FIELDS as SCHEMA_RECORD_FIELDS
from core.schema import content_of

from .casenum import parse_case_key
from .codes import (
    classify_code,
    compact,
    is_valid_org_code,
    is_valid_registration_no,
    is_valid_resident_id,
    parse_uscc,
    region_from_id_number,
    region_from_uscc,
)
from .dates import OPEN_ENDED_FROM_YEAR, is_open_ended, parse_clean_date
from .entity import entity_id, entity_type, record_key
from .labels import SCHEMA_TARGETS, resolve
from .money import Number, parse_amount_column, parse_measure
from .names import parse_name
from .reasons import reason_category
from .regions import region_from_address
from .text import (
    MAX_FIELD_CHARS,
    _clean,
    case_number_key,
    clean_text,
    has_controls,
    name_key,
    strip_controls,
)
from .vocabularies import vocabulary_label

LIST_KINDS = frozenset({"blacklist", "redlist", "penalty", "warning", "good", "license", "other"})
RECORD_KEY_RULES = frozenset({"case", "case_subject", "subject"})

STORAGE_FIELDS = ("status", "first_seen", "last_seen")
EXTRA_PAGES = "pages"
EXTRA_AMOUNT_MISMATCH = "amount_mismatch"
EXTRA_NAME_PARTS = "name_parts"
EXTRA_CASE_NUMBER_PARTS = "case_number_parts"
EXTRA_CODE_CHECKS = "code_checks"
EXTRA_FILED_ON = "filed_on"
EXTRA_REASON_VOCABULARY = "reason_vocabulary"
EXTRA_OPEN_ENDED = "open_ended"
EXTRA_VALID_UNTIL_RULE = "valid_until_rule"
EXTRA_REMOVAL = "removal"
EXTRA_CONTROLS_REMOVED = "control_characters_removed"  # labels whose values had some
EXTRA_TRUNCATED = "truncated"  # label → published length, for values cut at MAX_FIELD_CHARS
# What normalisation adds under ``extra``, as opposed to the labels a page published.
DERIVED_EXTRA_KEYS = frozenset(
    {
        EXTRA_PAGES,
        EXTRA_AMOUNT_MISMATCH,
        EXTRA_NAME_PARTS,
        EXTRA_CASE_NUMBER_PARTS,
        EXTRA_CODE_CHECKS,
        EXTRA_FILED_ON,
        EXTRA_REASON_VOCABULARY,
        EXTRA_OPEN_ENDED,
        EXTRA_VALID_UNTIL_RULE,
        EXTRA_REMOVAL,
        EXTRA_CONTROLS_REMOVED,
        EXTRA_TRUNCATED,
    }
)

# Output order: the schema's Record table, minus the fields storage owns.
RECORD_FIELDS = tuple(name for name in SCHEMA_RECORD_FIELDS if name not in STORAGE_FIELDS)
_SCHEMA_TARGETS = frozenset(SCHEMA_TARGETS)

# Where a value of a mixed-code column goes, by what its check digits and shape say it is.
_CODE_TARGETS = {
    "uscc": "uscc",
    "filler": "uscc",
    "masked_id": "id_number_masked",
    "resident_id": "id_number_masked",
    "org_code": "_org_code",
    "registration_no": "registration_no",
}
_ROUTED = frozenset({"_code", "id_number_masked"})
# A person-ID column holding a company's USCC: that code is a USCC, not a person's ID.
_ID_COLUMN_REROUTES = {"uscc": "uscc", "filler": "uscc"}
# Registration-number labels whose 15-digit values carry a GS15 check digit.
_REG_NO_RE = re.compile(r"\d{15}")
_BUSINESS_REG_MARKERS = ("注册号", "工商登记", "gszc", "regno")


class NormaliseError(ValueError):
    """The entry cannot become a record (e.g. no subject name): a spider or layout problem."""


@dataclass
class _Collected:
    """Label values sorted into targets, with everything unmapped kept for ``extra``."""

    values: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)  # target → label that filled it
    extra: dict[str, Any] = field(default_factory=dict)


def _route(target: str, value: str) -> str:
    """The target a value really fills: mixed-code columns by the code's kind."""
    if target == "_code":
        return _CODE_TARGETS.get(classify_code(value) or "", "extra")
    if target == "id_number_masked":
        return _ID_COLUMN_REROUTES.get(classify_code(value) or "", target)
    return target


@lru_cache(maxsize=4096)
def _plan(labels: tuple[str, ...]) -> tuple[tuple[str, int, str], ...]:
    """``resolve`` for every label of a page: a list's pages repeat one set of labels."""
    return tuple(resolve(label) for label in labels)


def _scrubbed(entry: RawEntry) -> tuple[RawEntry, set[str], dict[str, int]]:
    """The entry with control characters removed from its labels and values and values cut
    to ``MAX_FIELD_CHARS``; the labels touched are returned for ``extra``."""
    scrubbed: set[str] = set()
    truncated: dict[str, int] = {}

    def page(values: dict[str, Any]) -> dict[str, Any]:
        if not any(
            (type(v) is str and (len(v) > MAX_FIELD_CHARS or has_controls(v))) or has_controls(k)
            for k, v in values.items()
        ):
            return values
        out: dict[str, Any] = {}
        for label, value in values.items():
            clean_label = strip_controls(label)
            if clean_label != label:
                scrubbed.add(clean_label)
            if type(value) is str:
                if has_controls(value):
                    value = strip_controls(value)
                    scrubbed.add(clean_label)
                if len(value) > MAX_FIELD_CHARS:
                    truncated[clean_label] = len(value)
                    value = value[:MAX_FIELD_CHARS]
            out[clean_label] = value
        return out

    cleaned = replace(
        entry, fields=page(entry.fields), subject=page(entry.subject), row=page(entry.row)
    )
    return cleaned, scrubbed, truncated


def _collect(entry: RawEntry, overrides: dict[str, str] | None) -> _Collected:
    """Apply label mapping and page precedence (detail > subject > row).

    A target is filled by the first page that has a value for it; on that page, labels of
    lower priority for the same target go to ``extra``. A less specific page repeating a
    filled schema field adds nothing. Helper targets (type label, amount columns) are not
    schema fields, so their labels are kept in ``extra`` too.
    """
    out = _Collected()
    values, labels, extra = out.values, out.labels, out.extra
    schema = _SCHEMA_TARGETS
    for page in (entry.fields, entry.subject, entry.row):
        if not page:
            continue
        best: dict[str, tuple[int, str, str]] = {}  # target → (rank, label, value) on this page
        plan = (
            tuple(resolve(raw_label, overrides) for raw_label in page)
            if overrides
            else _plan(tuple(page))
        )
        for (target, rank, label), raw_value in zip(plan, page.values(), strict=True):
            if target == "ignore":
                continue
            value = _clean(raw_value) if type(raw_value) is str else clean_text(raw_value)
            if value is None:
                if target not in schema and extra.get(label) is None:
                    extra[label] = None  # an empty helper or extra cell is kept as such
                continue
            if target in _ROUTED:
                target = _route(target, value)
            if target == "extra" or target in values:
                # Unmapped, or already filled by a more specific page: a schema value
                # repeated there adds nothing, anything else is kept.
                if target not in schema and extra.get(label) is None:
                    extra[label] = value
                continue
            current = best.get(target)
            if current is None:
                best[target] = (rank, label, value)
                continue
            if rank < current[0]:
                best[target] = (rank, label, value)
                demoted = current
            else:
                demoted = (rank, label, value)
            if extra.get(demoted[1]) is None:
                extra[demoted[1]] = demoted[2]  # a lower-priority label for the same field
        for target, (_, label, value) in best.items():
            values[target] = value
            labels[target] = label
            if target not in schema and extra.get(label) is None:
                extra[label] = value
    return out


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


# Amount columns per kind, most specific unit first.
_AMOUNT_COLUMNS = {
    kind: ((f"_{kind}_wan", "wan"), (f"_{kind}_yuan", "yuan"), (f"_{kind}_amount", None))
    for kind in ("fine", "confiscated")
}


def _amount(
    c: _Collected, kind: str, from_measure: Number | None
) -> tuple[Number | None, tuple[Number, Number] | None]:
    """A 万元/元 column wins over the measure text; a disagreement is returned for flagging."""
    column: Number | None = None
    for target, unit in _AMOUNT_COLUMNS[kind]:
        text = c.values.get(target)
        if text is not None:
            column = parse_amount_column(text, unit=unit)
            if column is not None:
                break
    if column is None:
        return from_measure, None
    if from_measure is not None and from_measure != column:
        return column, (column, from_measure)
    return column, None


def _code_checks(c: _Collected, id_number: str | None) -> dict[str, bool]:
    """Check-digit verdicts of the codes besides the USCC (which has its own fields)."""
    checks: dict[str, bool] = {}
    org_code = c.values.get("_org_code")
    if org_code is not None:
        checks["org_code"] = is_valid_org_code(org_code)
    reg_no = c.values.get("registration_no")
    reg_label = c.labels.get("registration_no", "")
    if (
        reg_no is not None
        and _REG_NO_RE.fullmatch(compact(reg_no))
        and (
            any(marker in reg_label.lower() for marker in _BUSINESS_REG_MARKERS)
            or resolve(reg_label)[0] == "_code"  # a mixed column read it as a 注册号
        )
    ):
        checks["registration_no"] = is_valid_registration_no(reg_no)
    if (
        id_number is not None
        and classify_code(id_number) == "resident_id"
        and len(compact(id_number)) == 18
    ):
        checks["id_number"] = is_valid_resident_id(id_number)
    return checks


def _years_later(day: date, years: int) -> date:
    """The day before the same date ``years`` later: the last day of a validity of N years."""
    try:
        end = day.replace(year=day.year + years)
    except ValueError:  # 29 February
        end = day.replace(year=day.year + years, day=28) + timedelta(days=1)
    return end - timedelta(days=1)


def _removal(c: _Collected) -> dict[str, Any] | None:
    """The removal the entry itself publishes (in-row 移出 fields, a removal row), if any."""
    values = {
        "removed_on": c.values.get("_removed_on"),
        "reason": c.values.get("_removal_reason"),
        "authority": c.values.get("_removal_authority"),
    }
    if not any(values.values()):
        return None
    removed_on = parse_clean_date(values["removed_on"])
    values["removed_on"] = _iso(removed_on)
    return values


def normalise_entry(
    entry: RawEntry,
    *,
    list_kind: str,
    record_key_rule: str,
    domain: str | None = None,
    label_overrides: dict[str, str] | None = None,
    validity_years: int | None = None,
) -> dict[str, Any]:
    """Every schema Record field except ``status``, ``first_seen``, ``last_seen``.

    Dates are ISO strings and absent values None, so the result is ready for JSON. Raises
    ``NormaliseError`` when the entry names no subject. Pure: no I/O (the dictionaries it
    uses are loaded once per process, see ``core.normalise``).
    """
    if list_kind not in LIST_KINDS:
        raise ValueError(f"unknown list_kind {list_kind!r}")
    if record_key_rule not in RECORD_KEY_RULES:
        raise ValueError(f"unknown record_key_rule {record_key_rule!r}")
    entry, scrubbed, truncated = _scrubbed(entry)
    c = _collect(entry, label_overrides)
    v = c.values

    entity_name = v.get("entity_name")
    if entity_name is None:
        raise NormaliseError(f"{entry.list}: no subject name on {entry.source_url}")
    entity_key = name_key(entity_name)

    code = parse_uscc(v.get("uscc"))
    uscc_value = code.uscc
    id_number = v.get("id_number_masked")
    kind = entity_type(
        entity_name,
        uscc=uscc_value,
        uscc_raw=code.uscc_raw,
        id_number=id_number,
        type_label=v.get("_type_label"),
    )

    case_number = v.get("case_number")
    case_key = case_number_key(case_number)
    title = v.get("title")
    reason = v.get("reason")
    measure = v.get("measure")
    parsed = parse_measure(measure)
    types = parsed.penalty_types
    category = v.get("_penalty_category")
    if (not types or types == ["other"]) and category:
        types = parse_measure(category).penalty_types or types
    fine, fine_flag = _amount(c, "fine", parsed.fine_yuan)
    confiscated, confiscated_flag = _amount(c, "confiscated", parsed.confiscated_yuan)

    decided_on = parse_clean_date(v.get("decided_on"))
    published_on = parse_clean_date(v.get("published_on"))
    valid_until = parse_clean_date(v.get("valid_until"))
    if valid_until is not None and valid_until.year >= OPEN_ENDED_FROM_YEAR:
        valid_until = None  # 2099-12-31: the 双公示 way of writing "long-term"
    if valid_until is None and "valid_until" in v and is_open_ended(v["valid_until"]):
        c.extra[EXTRA_OPEN_ENDED] = True  # null because 长期, not because unknown
    elif valid_until is None and "valid_until" not in v and validity_years and decided_on:
        valid_until = _years_later(decided_on, validity_years)
        c.extra[EXTRA_VALID_UNTIL_RULE] = f"decided_on + {validity_years} year(s) - 1 day"
    if decided_on is None or published_on is None or valid_until is None:
        for target, parsed_date in (
            ("decided_on", decided_on),
            ("published_on", published_on),
            ("valid_until", valid_until),
        ):
            if parsed_date is None and target in v:
                # Kept as published: 长期 (open-ended) or text no rule could read.
                c.extra.setdefault(c.labels[target], v[target])

    extra = c.extra
    if kind != "person" and (parts := parse_name(entity_name)) is not None:
        extra[EXTRA_NAME_PARTS] = parts.as_dict()
    if (case_parts := parse_case_key(case_key)) is not None:
        extra[EXTRA_CASE_NUMBER_PARTS] = case_parts
    if checks := _code_checks(c, id_number):
        extra[EXTRA_CODE_CHECKS] = checks
    if (filed_on := parse_clean_date(v.get("_filed_on"))) is not None:
        extra[EXTRA_FILED_ON] = filed_on.isoformat()
    reason_class = reason_category(domain, reason)
    if reason_class is not None:
        extra[EXTRA_REASON_VOCABULARY] = vocabulary_label(domain)
    if fine_flag is not None or confiscated_flag is not None:
        extra[EXTRA_AMOUNT_MISMATCH] = {
            name: {"column": flag[0], "measure": flag[1]}
            for name, flag in (("fine_yuan", fine_flag), ("confiscated_yuan", confiscated_flag))
            if flag is not None
        }
    if (removal := _removal(c)) is not None:
        extra[EXTRA_REMOVAL] = removal
    extra[EXTRA_PAGES] = [{"url": p.url, "sha256": p.sha256, "role": p.role} for p in entry.pages]
    if scrubbed:
        extra[EXTRA_CONTROLS_REMOVED] = sorted(scrubbed)
    if truncated:
        extra[EXTRA_TRUNCATED] = dict(sorted(truncated.items()))

    return {
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
        "entity_type": kind,
        "uscc": uscc_value,
        "uscc_raw": code.uscc_raw,
        "uscc_valid": code.uscc_valid,
        "id_number_masked": id_number,
        "legal_representative": v.get("legal_representative"),
        "registration_no": v.get("registration_no"),
        "region_code": (
            region_from_uscc(uscc_value)
            or region_from_id_number(id_number)
            or region_from_address(v.get("_address"))
        ),
        "case_number": case_number,
        "case_number_key": case_key,
        "title": title,
        "reason": reason,
        "reason_category": reason_class,
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


def _canonical_json(content: dict[str, Any]) -> bytes:
    """Sorted keys, no whitespace, UTF-8 text unescaped, anything else by ``str()``: the same
    bytes as ``json.dumps(content, sort_keys=True, ensure_ascii=False, separators=(",", ":"),
    default=str)``, produced by orjson (a tenth of the time: hashing is on the hot path)."""
    try:
        return orjson.dumps(content, option=orjson.OPT_SORT_KEYS, default=str)
    except (orjson.JSONEncodeError, TypeError):  # e.g. an integer beyond 64 bits
        text = json.dumps(
            content, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str
        )
        return text.encode("utf-8")


def content_hash(record: dict[str, Any]) -> str:
    """sha256 of the canonical JSON of the content fields.

    Provenance is left out on purpose: a subject page that changes bytes (a new counter, a
    new list page) must not make the entries it contributed to look modified.
    """
    return hashlib.sha256(_canonical_json(content_of(record))).hexdigest()
