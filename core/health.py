"""Judging a run, list by list, with the names of SCHEMA.md's run-health section.

Pure functions over what the run recorded. A list is ``healthy`` only when every fetch that
bears on it was ``ok`` (a record without its required fields counts as a ``layout_drift``
fetch of its page), its pager's promises were kept and its declared assertions hold (the
registry's ``checks:``: ``min_rows``, ``max_drop`` against the list's last healthy run,
``fill_rates`` of fields); otherwise ``degraded`` (stored, but proves no absence) or
``failed`` (nothing usable).

A list of ``coverage: partial`` (the registry's ``ReadLimit``) is read in part by design: its
pager's promises are those it makes within the limit (a list of 8 million read 1,000 a run is
whole when those 1,000 arrived), and a healthy run of it carries a ``partial`` note among its
findings, shown as ``healthy (partial)``. A note is no fault: it never makes a list unhealthy.
"""

from __future__ import annotations

import builtins
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from core.registry import HealthChecks, ReadLimit

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
PARTIAL = "partial"
"""The ``check`` of the note a healthy run of a partial list carries (and the marker that a
run's display reads: ``healthy (partial)``)."""
HEALTHY_PARTIAL = "healthy_partial"
"""How a healthy run, or list, read in part is shown (``vocabulary.health`` in the catalogue)."""


def is_note(finding: Mapping[str, Any]) -> bool:
    """A finding that explains, not one that faults the list (the ``partial`` note)."""
    return bool(finding.get("note"))


def faults(findings: Iterable[Mapping[str, Any]] | None) -> list[Mapping[str, Any]]:
    """The findings that make a list unhealthy: every one but the notes."""
    return [f for f in findings or () if not is_note(f)]


def is_partial(findings: Iterable[Mapping[str, Any]] | None) -> bool:
    """The list's findings hold the ``partial`` note: healthy, read in part by design."""
    return any(f.get("check") == PARTIAL and is_note(f) for f in findings or ())


def shown_health(health: str, partial: bool) -> str:
    """The vocabulary value a list's or run's health is shown as: ``healthy_partial`` for a
    healthy one read in part, else the health itself."""
    return HEALTHY_PARTIAL if health == "healthy" and partial else health


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

    @property
    def partial(self) -> bool:
        """Healthy, read in part by design (its ``partial`` note)."""
        return self.health == "healthy" and is_partial(self.findings)

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


def pager_findings(
    pages: Sequence[PageSeen], limit: ReadLimit | None = None
) -> list[dict[str, Any]]:
    """What the list's own pager promised against what arrived. ``limit``: the list is read
    in part by design, up to it; only what the pager promised within it is owed (a page
    short of rows there, or one missing, is still a fault)."""
    if not pages:
        return [{"check": "list_pages", "detail": "no list page was read"}]
    findings: list[dict[str, Any]] = []
    first = min(pages, key=lambda p: p.page_no)
    seen_numbers = {p.page_no for p in pages}
    if first.declared_pages:
        owed = limit.pages_within(first.declared_pages) if limit else first.declared_pages
        missing = sorted(set(range(1, owed + 1)) - seen_numbers)
        if missing:
            within = f" (the first {owed} read by design)" if owed < first.declared_pages else ""
            findings.append(
                {
                    "check": "pages",
                    "detail": f"pages {missing} of {first.declared_pages} missing{within}",
                }
            )
    rows = sum(p.rows for p in pages)
    if first.declared_total is not None:
        owed = limit.rows_within(first.declared_total) if limit else first.declared_total
        if rows != owed:
            within = f" ({owed} within the read limit)" if owed < first.declared_total else ""
            findings.append(
                {
                    "check": "rows",
                    "detail": (
                        f"pager says {first.declared_total} entries{within}, pages showed {rows}"
                    ),
                }
            )
    return findings


def partial_note(pages: Sequence[PageSeen], limit: ReadLimit) -> dict[str, Any]:
    """The note of a healthy run of a partial list: how much of it the run read, so that
    ``healthy`` is never taken for "every entry was seen"."""
    first = min(pages, key=lambda p: p.page_no) if pages else None
    declared = first.declared_total if first else None
    rows = sum(p.rows for p in pages)
    of = f" of {declared}" if declared is not None else ""
    cap = f" (at most {limit.rows} a run)" if limit.rows is not None else ""
    return {
        "check": PARTIAL,
        "note": True,
        "detail": (
            f"read {rows}{of} entries{cap}: the list is read in part by design "
            "(coverage: partial), so absence from it proves nothing"
        ),
        "rows_seen": rows,
        "rows_declared": declared,
        "limit_rows": limit.rows,
        "limit_pages": limit.pages,
    }


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
    *,
    partial: ReadLimit | None = None,
) -> ListHealth:
    """Health of one list; ``fetches`` are those bearing on it (its own and source-wide);
    ``assertions`` the findings of its broken declared checks (``assertion_findings``);
    ``partial`` the read limit of a list read in part by design (``coverage: partial``):
    healthy, it carries the ``partial`` note."""
    findings = outcome_findings(fetches) + pager_findings(pages, partial) + list(assertions)
    health = "healthy" if not faults(findings) else "degraded" if records else "failed"
    if health == "healthy" and partial is not None:
        findings.append(partial_note(pages, partial))
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
    partial: Mapping[str, ReadLimit] | None = None,
) -> list[ListHealth]:
    """Every list's health; ``partial``: the read limits of the lists read in part."""
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
                partial=(partial or {}).get(list_id),
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
