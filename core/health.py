"""Judging a run, list by list, with the names of SCHEMA.md's run-health section.

Pure functions over what the run recorded. A list is ``healthy`` only when every fetch that
bears on it was ``ok`` (a record without its required fields counts as a ``layout_drift``
fetch of its page), its pager's promises were kept and its declared assertions hold (the
registry's ``checks:``: ``min_rows``, ``max_drop`` against the list's last healthy run,
``fill_rates`` of fields); otherwise ``degraded`` (stored, but proves no absence) or
``failed`` (nothing usable).
"""

from __future__ import annotations

import builtins
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from core.registry import HealthChecks

HEALTH_ORDER = ("healthy", "degraded", "failed")
VOID = "void"
RUN_STATES = ("running", "fetched", *HEALTH_ORDER, "aborted", VOID)
"""Every state of a run (docs/SCHEMA.md): ``running`` while fetching; ``fetched`` once the
fetcher recorded everything and the finish step (health, detection, alerts) has yet to run;
then the worst of its lists' health, or ``aborted`` when its process died while fetching,
or ``void``: a replay that nothing in its cassette answered (the wrong cassette), which
says nothing of the source."""
IN_PROGRESS_STATES = ("running", "fetched")
"""Run states without a verdict yet: neither healthy nor unhealthy."""
UNCOUNTED_STATES = (*IN_PROGRESS_STATES, VOID)
"""Run states a source's standing does not count: no verdict yet, or none to give."""
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
    # `builtins.list`: the field `list` above shadows the type for checkers.
    findings: builtins.list[dict[str, Any]] = field(default_factory=builtins.list)

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


def assertion_findings(
    checks: HealthChecks,
    records: int,
    previous_healthy_records: int | None,
    fill: Mapping[str, float],
    *,
    previous_run: str | None = None,
) -> list[dict[str, Any]]:
    """The list's declared assertions that this run breaks (zavod-style ``checks:``).

    ``records``: what the run staged for the list; ``previous_healthy_records``: what the
    list's last healthy run staged (None when it never had one: ``max_drop`` has nothing to
    compare with); ``fill``: field → share of this run's records where it is filled. With no
    records there is nothing to measure a fill rate on (``min_rows`` speaks for that).
    """
    findings: list[dict[str, Any]] = []
    if records < checks.min_rows:
        findings.append(
            {
                "check": "min_rows",
                "detail": f"{records} records, fewer than the {checks.min_rows} declared",
                "value": records,
                "limit": checks.min_rows,
            }
        )
    if checks.max_drop is not None and previous_healthy_records:
        drop = 100.0 * (previous_healthy_records - records) / previous_healthy_records
        if drop > checks.max_drop:
            since = f" (last healthy run {previous_run})" if previous_run else ""
            findings.append(
                {
                    "check": "max_drop",
                    "detail": (
                        f"{previous_healthy_records} → {records} records{since}: "
                        f"{drop:.0f}% fewer, more than the {checks.max_drop:g}% allowed"
                    ),
                    "value": round(drop, 1),
                    "limit": checks.max_drop,
                    "previous": previous_healthy_records,
                    "previous_run": previous_run,
                }
            )
    if records:
        for name, minimum in checks.fill_rates:
            share = fill.get(name, 0.0)
            if share + 1e-9 < minimum:
                findings.append(
                    {
                        "check": "fill_rate",
                        "field": name,
                        "detail": (
                            f"{name} filled in {share:.0%} of {records} records, "
                            f"{minimum:.0%} declared"
                        ),
                        "value": round(share, 4),
                        "limit": minimum,
                    }
                )
    return findings


def repeat_findings(found: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Keys a run read more than once on a list that is a database of its entries (see
    ``storage.runs.repeated_keys``). A repeated row can stand in for an entry the pages no
    longer show, so even a pager whose count adds up proves nothing; two entries under one
    key are an error of the key rule or of the page, and neither is stored by the run."""
    findings: list[dict[str, Any]] = []
    if found.get("repeats"):
        findings.append(
            {
                "check": "repeated_rows",
                "detail": (
                    f"{found['repeats']} row(s) repeated an entry the run had read already "
                    f"(e.g. {', '.join(found['repeated'])}): a paging glitch may hide others"
                ),
                "value": found["repeats"],
                "keys": found["repeated"],
            }
        )
    if found.get("collided"):
        findings.append(
            {
                "check": "key_collision",
                "detail": (
                    f"{found['collided']} key(s) came with two different entries (e.g. "
                    f"{', '.join(found['colliding'])}); neither version is stored by this run"
                ),
                "value": found["collided"],
                "keys": found["colliding"],
            }
        )
    return findings


def judge_list(
    list_id: str,
    fetches: Sequence[FetchOutcome],
    pages: Sequence[PageSeen],
    records: int,
    assertions: Sequence[dict[str, Any]] = (),
) -> ListHealth:
    """Health of one list; ``fetches`` are those bearing on it (its own and source-wide);
    ``assertions`` the findings of its broken declared checks (``assertion_findings``)."""
    findings = outcome_findings(fetches) + pager_findings(pages) + list(assertions)
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
    assertions: Mapping[str, Sequence[dict[str, Any]]] | None = None,
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
                (assertions or {}).get(list_id, ()),
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
