"""Finishing a fetched run: judge each list's health, detect changes and queue alerts, in
one transaction, in the conductor's process (``pipeline/run.py``), never in the fetcher.

The fetcher (the Scrapy child) records what it fetched and marks the run ``fetched``; this
step takes it from there. It runs once per run: ``finalize_run`` first claims the run
(``storage.runs.claim_fetched``), so a second finisher (the next crawl of the source or the
scheduler's start-up sweep, finding a run whose conductor died) waits for the first and then
finds nothing to do. ``finish_left_runs`` is that recovery: runs of dead processes left
``running`` are aborted, those left ``fetched`` are finished.

Shards. A run of one shard of a watchlist (``storage.shards``; made by ``pipeline/run.py``)
is judged on the lists it read only, and vouches, on the watch lists, only for its own
subjects' entries (``RunDetection.scope``: their entity ids, ``watched_entity_ids``): another
shard's subjects are neither missed nor delisted by it. Two shards of a source may finish at
the same moment on two workers; on PostgreSQL the finish steps of a source take turns under
a transaction-level advisory lock (``storage.runs.lock_source``), taken before the claim.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.engine import Connection

from alerts.outbox import enqueue_health, enqueue_run
from core.clock import SHANGHAI
from core.drift import keep_stored, measure
from core.health import (
    FetchOutcome,
    ListHealth,
    PageSeen,
    assertion_findings,
    judge_run,
    outcome_summary,
    repeat_findings,
    run_state,
)
from core.normalise import content_hash
from core.registry import get_source
from core.summary import AnnouncementsSummary, ListSummary, OutcomeCount, RunSummary
from crawlers.watchlist import watch_lists
from pipeline.processes import process_alive
from storage.announcements import announcement_summary, run_announcements
from storage.daemon import abort_dead_runs, dead_fetched_runs
from storage.lifecycle import RunDetection, apply_run
from storage.runs import (
    changed_entries,
    claim_fetched,
    fail_run,
    fetch_rows,
    finish_run,
    get_run,
    last_healthy_list_records,
    list_page_rows,
    lock_source,
    repeated_keys,
    restage,
    seen_again_counts,
    staged_counts,
    staged_fill_rates,
    store_health,
    withdraw_collided,
)
from storage.shards import SHARD, shard_of_run, watched_entity_ids

log = logging.getLogger(__name__)

RESTAGE_BATCH = 1000  # changed_entries reads pages of this size


def finalize_run(engine: Engine, run_id: str) -> str | None:
    """Judge the ``fetched`` run, merge its records, raise its events and queue its alerts;
    returns the run's new state, or None when it was not ``fetched`` (another finisher did
    it, or it never fetched everything): nothing is done twice."""
    with engine.begin() as conn:
        # One finish step of a source at a time (shards of it finish side by side).
        lock_source(conn, run_id.rsplit(":", 1)[0], "finish")
        if not claim_fetched(conn, run_id):  # first: it holds the run until the commit
            return None
        run = get_run(conn, run_id)
        source = get_source(run.source)
        shard = shard_of_run(run)
        # A shard run is judged on the lists it read; another run of the source has the rest.
        read = set(shard["lists"]) if shard is not None else set(source.list_ids)
        own = [lst for lst in source.lists if lst.id in read]
        lists = [lst.id for lst in own]
        fetches = [
            FetchOutcome(r.url, r.outcome, r.list, r.status, r.detail)
            for r in fetch_rows(conn, run_id)
        ]
        page_rows = list_page_rows(conn, run_id)
        pages = [
            PageSeen(p.list, p.url, p.page_no, p.rows, p.declared_total, p.declared_pages)
            for p in page_rows
        ]
        repeated = repeated_keys(conn, run_id)
        # Announcements may name one subject in two batches: there the first stays. So on a
        # partial list, whose pages may shift while read: it proves no absence either.
        withdraw_collided(conn, run_id, {lst.id for lst in own if lst.diffs_absence})
        records = staged_counts(conn, run_id)
        # The lists' declared assertions, measured before detection clears the staging.
        fill = staged_fill_rates(
            conn, run_id, {name for lst in own for name, _ in lst.checks.fill_rates}
        )
        previous = last_healthy_list_records(conn, source.id, before_seq=run.seq)
        assertions = {
            lst.id: assertion_findings(
                lst.checks,
                records.get(lst.id, 0),
                previous[lst.id][1] if lst.id in previous else None,
                fill.get(lst.id, {}),
                previous_run=previous[lst.id][0] if lst.id in previous else None,
            )
            for lst in own
        }
        drift = measure(
            ((r.list, r.old, r.new) for r in changed_entries(conn, run_id)),
            seen_again_counts(conn, run_id),
        )
        for lst in own:  # repeats hide absences: a fault only where absence counts
            if lst.diffs_absence and lst.id in repeated:
                assertions[lst.id] += repeat_findings(repeated[lst.id])
        for lst in own:
            if lst.id in drift:
                declared = {name for name, _ in lst.checks.fill_rates}
                assertions[lst.id] += drift[lst.id].findings(declared)
        # A partial list is owed only what its pager promised within its read limit.
        limits = {lst.id: lst.read_limit for lst in own if lst.partial}
        judged = judge_run(
            lists,
            fetches,
            pages,
            records,
            assertions,
            partial={k: v for k, v in limits.items() if v is not None},
        )
        _keep_stored_values(conn, run_id, judged, assertions)
        at = run.started_at.astimezone(UTC)
        detection = RunDetection(
            run_id=run_id,
            source=source.id,
            seq=run.seq,
            at=at,
            run_date=at.astimezone(SHANGHAI).date(),
            lists=lists,
            # Absence counts on healthy databases read whole; never on a partial list, whose
            # entries end, like announced ones, by expiry or a published removal only.
            healthy={
                lh.list
                for lh in judged
                if lh.health == "healthy" and source.list(lh.list).diffs_absence
            },
            expire_unseen={lst.id for lst in own if not lst.diffs_absence},
            delist_after=run.delist_after,
            guards={lst.id: (lst.guard.share, lst.guard.min_count) for lst in own},
            absence_evidence={
                list_id: {
                    "list_pages": [
                        {"url": p.url, "raw_sha256": p.sha256}
                        for p in page_rows
                        if p.list == list_id
                    ]
                }
                for list_id in lists
            },
            scope=_shard_scope(conn, run_id, source.id, lists, watch_lists(source), shard),
        )
        events: Counter[str] = apply_run(conn, detection)
        state = run_state(judged)
        summary = RunSummary(
            lists={lh.list: ListSummary.model_validate(lh.as_row()) for lh in judged},
            outcomes={
                name: OutcomeCount.model_validate(value)
                for name, value in outcome_summary(fetches).items()
            },
            events=dict(sorted(events.items())),
        )
        if source.announcements is not None:
            summary.announcements = AnnouncementsSummary.model_validate(
                announcement_summary(run_announcements(conn, run_id))
                | {"unmatched_removals": detection.unmatched_removals}
            )
        if detection.held:
            summary.held = dict(detection.held)
        if read_in_part := [lh.list for lh in judged if lh.partial]:
            summary.partial = read_in_part
        if shard is not None:  # the subjects themselves are kept only until the finish
            setattr(summary, SHARD, {k: v for k, v in shard.items() if k != "watched"})
        store_health(conn, run_id, [lh.as_row() for lh in judged])
        finish_run(
            conn,
            run_id,
            state=state,
            ended_at=at if run.mode == "replay" else datetime.now(UTC),
            pages=sum(1 for f in fetches if f.outcome == "ok"),
            records=sum(records.values()),
            events=sum(events.values()),
            summary=summary,
        )
        # Alerts join the outbox in the transaction that raised their events.
        enqueue_run(conn, run_id)
        enqueue_health(
            conn,
            run_id=run_id,
            source=source.id,
            layout_drift=[
                {"url": f.url, "list": f.list, "detail": f.detail}
                for f in fetches
                if f.outcome == "layout_drift"
            ],
            failing_after=source.failing_after,
            held=detection.held,
        )
    return state


def finish_fetched(engine: Engine, run_id: str) -> str | None:
    """``finalize_run``, and a finish that raised fails the run with the reason (its staging
    dropped), rather than leaving it ``fetched`` to fail again at every later start. Returns
    the run's new state, None when there was nothing to finish."""
    try:
        return finalize_run(engine, run_id)
    except Exception as exc:
        log.exception("creditwatch run %s could not be finished", run_id)
        failed = fail_run(
            engine,
            run_id,
            "failed",
            f"finishing the run failed: {type(exc).__name__}: {exc}"[:1000],
            datetime.now(UTC),
            states=("fetched",),
        )
        return "failed" if failed else None


def finish_left_runs(
    engine: Engine, *, why: str, source: str | None = None
) -> tuple[list[str], list[str]]:
    """Close the runs of this host (of ``source`` when given) whose process is gone: one left
    ``running`` died while fetching and is aborted (``why`` says when it was found); one left
    ``fetched`` lost only its finish step, which runs now. Returns (aborted, finished) ids.
    A run whose finish raises is failed by ``finish_fetched``; one that cannot even be failed
    (the database went away) raises, so no later run of its source is finished before it."""
    aborted = abort_dead_runs(engine, process_alive, source=source, why=why)
    finished = []
    for run_id in dead_fetched_runs(engine, process_alive, source=source):
        state = finish_fetched(engine, run_id)
        if state is not None:
            log.warning("run %s had lost its process after fetching: finished %s", run_id, state)
            finished.append(run_id)
    return aborted, finished


def _shard_scope(
    conn: Connection,
    run_id: str,
    source: str,
    lists: Sequence[str],
    watched: Sequence[str],
    shard: dict[str, Any] | None,
) -> dict[str, list[str]]:
    """A shard run vouches, on each watch list it read, for its own subjects' entity ids
    only; a run of the whole source for every entry (no scope)."""
    if shard is None:
        return {}
    mine = [list_id for list_id in lists if list_id in watched]
    if not mine:
        return {}
    subjects = [(name, code) for name, code in shard.get("watched", [])]
    ids = watched_entity_ids(conn, run_id, source, mine, subjects)
    return {list_id: ids for list_id in mine}


def _keep_stored_values(
    conn: Connection,
    run_id: str,
    judged: Sequence[ListHealth],
    assertions: dict[str, list[dict[str, Any]]],
) -> None:
    """On lists that are not healthy, an entry with a blanked field or a changed field whose
    fill rate broke keeps its stored content (``core.drift.keep_stored``)."""
    unhealthy = {lh.list for lh in judged if lh.health != "healthy"}
    if not unhealthy:
        return
    untrusted = {
        list_id: {f["field"] for f in assertions.get(list_id, ()) if f["check"] == "fill_rate"}
        for list_id in unhealthy
    }
    rows: list[dict[str, Any]] = []
    for entry in changed_entries(conn, run_id, lists=unhealthy):
        kept = keep_stored(entry.old, entry.new, untrusted[entry.list])
        if kept is not None:
            rows.append(
                {
                    "list": entry.list,
                    "record_key": entry.record_key,
                    "data": kept,
                    "content_hash": content_hash(kept),
                }
            )
        if len(rows) >= RESTAGE_BATCH:  # changed_entries reads whole pages: safe to write
            restage(conn, run_id, rows)
            rows = []
    restage(conn, run_id, rows)
