"""Judging a run, list by list, with the names of SCHEMA.md's run-health section.

Pure functions over what the run recorded. A list is ``healthy`` only when every fetch that
bears on it was ``ok`` (a record without its required fields counts as a ``layout_drift``
fetch of its page) and its pager's promises were kept; otherwise ``degraded`` (stored, but
proves no absence) or ``failed`` (nothing usable).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

HEALTH_ORDER = ("healthy", "degraded", "failed")
EXAMPLES = 5


@dataclass(frozen=True)
class FetchOutcome:
    url: str
    outcome: str
    list: str | None
    status: int | None = None
    detail: str | None = None


@dataclass(frozen=True)
class PageSeen:
    list: str
    url: str
    page_no: int
    rows: int
    declared_total: int | None
    declared_pages: int | None


@dataclass
class ListHealth:
    list: str
    health: str
    pages: int
    rows_declared: int | None
    rows_seen: int
    records: int
    findings: list[dict[str, Any]] = field(default_factory=list)

    def as_row(self) -> dict[str, Any]:
        return {
            "list": self.list,
            "health": self.health,
            "pages": self.pages,
            "rows_declared": self.rows_declared,
            "rows_seen": self.rows_seen,
            "records": self.records,
            "findings": self.findings,
        }


def outcome_findings(fetches: Iterable[FetchOutcome]) -> list[dict[str, Any]]:
    """Non-ok outcomes by kind, each with its count and the pages it hit."""
    by_outcome: dict[str, list[FetchOutcome]] = defaultdict(list)
    for fetch in fetches:
        if fetch.outcome != "ok":
            by_outcome[fetch.outcome].append(fetch)
    return [
        {
            "check": "fetch",
            "outcome": outcome,
            "count": len(hits),
            "example_url": hits[0].url,
            "urls": sorted({hit.url for hit in hits})[:EXAMPLES],
            "detail": hits[0].detail,
        }
        for outcome, hits in sorted(by_outcome.items())
    ]


def pager_findings(pages: Sequence[PageSeen]) -> list[dict[str, Any]]:
    """What the list's own pager promised against what arrived."""
    if not pages:
        return [{"check": "list_pages", "detail": "no list page was read"}]
    findings: list[dict[str, Any]] = []
    first = min(pages, key=lambda p: p.page_no)
    seen_numbers = {p.page_no for p in pages}
    if first.declared_pages:
        missing = sorted(set(range(1, first.declared_pages + 1)) - seen_numbers)
        if missing:
            findings.append(
                {"check": "pages", "detail": f"pages {missing} of {first.declared_pages} missing"}
            )
    rows = sum(p.rows for p in pages)
    if first.declared_total is not None and rows != first.declared_total:
        findings.append(
            {
                "check": "rows",
                "detail": f"pager says {first.declared_total} entries, pages showed {rows}",
            }
        )
    return findings


def judge_list(
    list_id: str,
    fetches: Sequence[FetchOutcome],
    pages: Sequence[PageSeen],
    records: int,
) -> ListHealth:
    """Health of one list; ``fetches`` are those bearing on it (its own and source-wide)."""
    findings = outcome_findings(fetches) + pager_findings(pages)
    health = "healthy" if not findings else "degraded" if records else "failed"
    first = min(pages, key=lambda p: p.page_no) if pages else None
    return ListHealth(
        list=list_id,
        health=health,
        pages=len(pages),
        rows_declared=first.declared_total if first else None,
        rows_seen=sum(p.rows for p in pages),
        records=records,
        findings=findings,
    )


def judge_run(
    lists: Sequence[str],
    fetches: Sequence[FetchOutcome],
    pages: Sequence[PageSeen],
    records: dict[str, int],
) -> list[ListHealth]:
    judged = []
    for list_id in lists:
        bearing = [f for f in fetches if f.list in (None, list_id)]
        judged.append(
            judge_list(
                list_id,
                bearing,
                [p for p in pages if p.list == list_id],
                records.get(list_id, 0),
            )
        )
    return judged


def run_state(judged: Sequence[ListHealth]) -> str:
    """The worst of the lists' health."""
    if not judged:
        return "failed"
    return max((lh.health for lh in judged), key=HEALTH_ORDER.index)


def outcome_summary(fetches: Iterable[FetchOutcome]) -> dict[str, dict[str, Any]]:
    """Every outcome of the run with its count and an example URL (for the run summary)."""
    summary: dict[str, dict[str, Any]] = {}
    for fetch in fetches:
        entry = summary.setdefault(fetch.outcome, {"count": 0, "example_url": fetch.url})
        entry["count"] += 1
    return dict(sorted(summary.items()))
