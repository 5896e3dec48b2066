"""Runs of one shard of a watchlist: creating them, reading their shard back, serialising
the finish steps of one source, and the entity ids a shard run vouches for.

A shard run is an ordinary run whose ``runs.summary`` carries ``{"shard": {...}}`` from the
moment it is made (no column of its own): its place (``index`` of ``count``), the lists it
reads and its watched subjects. The finish step reads that back, and keeps all of it but the
subjects on the finished run's summary.

Two shard runs of one source run side by side (two workers), so on PostgreSQL what a source's
runs must do one at a time takes a transaction-level advisory lock keyed by the source
(``storage.runs.lock_source``): numbering a new run (``storage.runs.create_run``), and
finishing one. SQLite has one writer anyway.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Connection, Row

from core.normalise import name_key
from core.normalise.entity import entity_id
from storage.models import Record, Run, RunRecord, table_of

RUNS = table_of(Run)
RECORDS = table_of(Record)
STAGED = table_of(RunRecord)
SHARD = "shard"  # the key of ``runs.summary`` a shard run is recorded under


def shard_of_run(run: Row[Any]) -> dict[str, Any] | None:
    """The shard a run row was made for, None for a run of the whole source."""
    summary = run.summary if isinstance(run.summary, dict) else {}
    shard = summary.get(SHARD)
    return shard if isinstance(shard, dict) else None


def shard_label(run: Row[Any]) -> str | None:
    """``K/N`` of a shard run, None for a run of the whole source."""
    shard = shard_of_run(run)
    return f"{shard['index']}/{shard['count']}" if shard else None


def crawl_key(run: Row[Any]) -> str:
    """The crawl a run belongs to, as the queue locks it: the source, or ``SOURCE#K/N``."""
    label = shard_label(run)
    return f"{run.source}#{label}" if label else str(run.source)


def watched_entity_ids(
    conn: Connection,
    run_id: str,
    source: str,
    lists: Iterable[str],
    subjects: Iterable[tuple[str | None, str | None]],
) -> list[str]:
    """The entity ids whose entries of ``lists`` a run watching ``subjects`` ((name, USCC)
    pairs) vouches for: each subject's own id (``uscc-…``, else the source's id of its
    name), the stored entries' ids of its USCC or its folded name, and the ids of every entry
    the run itself staged in those lists (a name watched resolves to a code on the portal)."""
    lists = sorted(set(lists))
    pairs = list(subjects)
    codes = sorted({code for _, code in pairs if code})
    names = sorted({key for name, code in pairs if name and not code and (key := name_key(name))})
    ids = {f"uscc-{code}" for code in codes}
    ids |= {entity_id(source, None, None, key) for key in names}
    rec = RECORDS.c
    if codes:
        ids |= set(
            conn.execute(
                select(rec.entity_id).where(rec.list.in_(lists), rec.uscc.in_(codes)).distinct()
            ).scalars()
        )
    if names:
        folded = rec.data["entity_name_key"].as_string()
        ids |= set(
            conn.execute(
                select(rec.entity_id).where(rec.list.in_(lists), folded.in_(names)).distinct()
            ).scalars()
        )
    staged = STAGED.c
    ids |= set(
        conn.execute(
            select(staged.entity_id)
            .where(staged.run_id == run_id, staged.list.in_(lists))
            .distinct()
        ).scalars()
    )
    return sorted(ids)
