"""Telling a portal's layout drift from a real correction, before change detection.

A renamed label blanks its field on every entry at once. Diffed as it stands, that reads as
a correction of each entry (a false ``modified``), and the label's return as as many again.
So, per list and run: a published field blanked on many of the entries seen before is a
broken field (the list is then degraded, with a ``fill_rate`` finding), and on a list that
is not healthy an entry with a blanked or broken field keeps its stored content (with this
run's provenance): what a broken page did not show is no correction. Its other changes wait
for a run that reads it whole. Fields whose fill rate the registry declares are judged by
the declaration alone: declaring ``fill_rates: {field: 0}`` accepts that a portal stopped
publishing one. Pure functions over (stored, staged) pairs; the finish step reads and writes.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from core.normalise.record import DERIVED_EXTRA_KEYS, EXTRA_PAGES
from core.schema import content_of

# A field blanked on at least this many entries seen before, and on at least this share of
# them, broke in the run rather than being corrected entry by entry.
BREAK_MIN_ENTRIES = 3
BREAK_MIN_SHARE = 0.2


def _blank(value: Any) -> bool:
    return value is None or value == "" or value == [] or value == {}


def _published(record: Mapping[str, Any]) -> dict[str, Any]:
    """Content fields, with the published labels of ``extra`` spread out as ``extra.<label>``
    (what normalisation derives there comes and goes with its code, not with the page)."""
    content = content_of(dict(record))
    extra = content.pop("extra", None) or {}
    content.update(
        {f"extra.{label}": v for label, v in extra.items() if label not in DERIVED_EXTRA_KEYS}
    )
    return content


def blanked_fields(old: Mapping[str, Any], new: Mapping[str, Any]) -> set[str]:
    """Fields filled in the stored entry and blank in this run's version of it."""
    before, after = _published(old), _published(new)
    return {name for name, value in before.items() if not _blank(value) and _blank(after.get(name))}


@dataclass
class ListDrift:
    """What one list's changed entries say about its fields in this run."""

    seen_again: int  # entries of the list that were stored before and staged again
    blanked: Counter[str] = field(default_factory=Counter)

    def broken(self, declared: Collection[str] = ()) -> list[str]:
        limit = max(BREAK_MIN_ENTRIES, BREAK_MIN_SHARE * self.seen_again)
        return sorted(
            name for name, count in self.blanked.items() if count >= limit and name not in declared
        )

    def findings(self, declared: Collection[str] = ()) -> list[dict[str, Any]]:
        """``fill_rate`` findings of the broken fields not judged by a declared check."""
        return [
            {
                "check": "fill_rate",
                "field": name,
                "detail": (
                    f"{name} went blank on {self.blanked[name]} of {self.seen_again} entries "
                    "seen before: read as layout drift, not as corrections"
                ),
                "value": self.blanked[name],
                "limit": self.seen_again,
            }
            for name in self.broken(declared)
        ]


def measure(
    pairs: Iterable[tuple[str, Mapping[str, Any], Mapping[str, Any]]],
    seen_again: Mapping[str, int],
) -> dict[str, ListDrift]:
    """``pairs``: (list, stored data, staged data) of the entries whose content changed."""
    drift = {list_id: ListDrift(count) for list_id, count in seen_again.items()}
    for list_id, old, new in pairs:
        drift.setdefault(list_id, ListDrift(0)).blanked.update(blanked_fields(old, new))
    return drift


def keep_stored(
    old: Mapping[str, Any], new: Mapping[str, Any], untrusted: Collection[str]
) -> dict[str, Any] | None:
    """The stored entry with this run's provenance, when this run's version blanked a field
    or changed an ``untrusted`` one; None when it can be diffed as it is.

    The whole stored content is kept, not just the blanked fields: the rest of an entry is
    derived from them (entity id from the USCC, status from the removal fields, amounts from
    the measure), and a half-restored entry would itself be a false correction.
    """
    before, after = _published(old), _published(new)
    suspect = blanked_fields(old, new) | {
        name for name in untrusted if before.get(name) != after.get(name)
    }
    if not suspect:
        return None
    kept = {**old, "source_url": new.get("source_url"), "raw_sha256": new.get("raw_sha256")}
    extra = dict(old.get("extra") or {})
    if EXTRA_PAGES in (new.get("extra") or {}):
        extra[EXTRA_PAGES] = new["extra"][EXTRA_PAGES]
    kept["extra"] = extra
    return kept
