"""A list over its runs and an entity over time, for the web app's charts.

``list_history``: per finished run of a list (healthy or not, the newest ``runs`` of them), its
clock, the list's health in it, the entries by status as that run left them (what
``storage.asof`` shows for that run) and the events it raised. Set-based: a few grouped
queries for any number of runs, never one per run.

``entity_timeline``: per entry of an entity, its listed intervals and its events, computed
from the (possibly redacted) records and events the entity page already holds.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.engine import Connection

from core.health import HEALTH_ORDER
from core.registry import ListDef
from storage.asof import EVENTS, HISTORY, RECORDS, RUN_LISTS, RUNS, SHOWN, run_date
from storage.types import utc

MAX_RUNS = 200
EVENT_KINDS = ("listed", "delisted", "relisted", "modified")
_CHUNK = 500


@dataclass(frozen=True)
class RunPoint:
    """One run of a list: what it left and what it raised."""

    run_id: str
    seq: int
    at: datetime
    health: str  # the list's health in the run: healthy · degraded · failed
    run_state: str
    active: int
    expired: int
    listed: int  # listed events, baseline ones apart
    baseline: int
    delisted: int
    relisted: int
    modified: int

    @property
    def day(self) -> date:
        return run_date(self.at)

    @property
    def healthy(self) -> bool:
        """Only a healthy run vouches for the list's state (``storage.asof``)."""
        return self.health == "healthy"

    @property
    def added(self) -> int:
        return self.listed + self.relisted


def list_history(conn: Connection, source: str, lst: ListDef, runs: int = 60) -> list[RunPoint]:
    """The newest ``runs`` (at most ``MAX_RUNS``) finished runs of ``lst``, oldest first."""
    limit = max(1, min(runs, MAX_RUNS))
    newest = conn.execute(
        select(RUNS.c.run_id, RUNS.c.seq, RUNS.c.started_at, RUNS.c.state, RUN_LISTS.c.health)
        .join(RUN_LISTS, RUN_LISTS.c.run_id == RUNS.c.run_id)
        .where(
            RUNS.c.source == source,
            RUN_LISTS.c.list == lst.id,
            RUNS.c.state.in_(HEALTH_ORDER),  # finished: not running, aborted or void
            RUNS.c.started_at.is_not(None),
        )
        .order_by(RUNS.c.seq.desc())
        .limit(limit)
    ).all()
    rows = list(reversed(newest))
    if not rows:
        return []
    seqs = [row.seq for row in rows]
    if lst.diffs_absence:
        sizes = _database_sizes(conn, source, lst.id, seqs)
    else:
        sizes = _announced_sizes(conn, lst.id, seqs)
    counts = _event_counts(conn, lst.id, [row.run_id for row in rows])
    out = []
    for row in rows:
        size, raised = sizes.get(row.seq, Counter()), counts.get(row.run_id, Counter())
        out.append(
            RunPoint(
                run_id=row.run_id,
                seq=row.seq,
                at=utc(row.started_at),
                health=row.health,
                run_state=row.state,
                active=size["active"],
                expired=size["expired"],
                listed=raised["listed"],
                baseline=raised["baseline"],
                delisted=raised["delisted"],
                relisted=raised["relisted"],
                modified=raised["modified"],
            )
        )
    return out


def _event_counts(conn: Connection, list_id: str, run_ids: list[str]) -> dict[str, Counter[str]]:
    """Events of the list per run and kind (baseline listings counted as ``baseline``)."""
    out: dict[str, Counter[str]] = defaultdict(Counter)
    for start in range(0, len(run_ids), _CHUNK):
        rows = conn.execute(
            select(EVENTS.c.run_id, EVENTS.c.event, EVENTS.c.baseline, func.count())
            .where(EVENTS.c.list == list_id, EVENTS.c.run_id.in_(run_ids[start : start + _CHUNK]))
            .group_by(EVENTS.c.run_id, EVENTS.c.event, EVENTS.c.baseline)
        ).all()
        for run_id, event, baseline, n in rows:
            out[run_id]["baseline" if baseline and event == "listed" else event] += n
    return out


def _database_sizes(
    conn: Connection, source: str, list_id: str, seqs: list[int]
) -> dict[int, Counter[str]]:
    """A database list shows at run s the versions whose interval of runs holds s: per status,
    the versions begun by s less those ended before it (two grouped counts, then a sweep)."""
    hist = HISTORY.c
    mine = (hist.source == source, hist.list == list_id, hist.status.in_(SHOWN))
    last = max(seqs)
    begun = conn.execute(
        select(hist.first_run_seq, hist.status, func.count())
        .where(*mine, hist.first_run_seq <= last)
        .group_by(hist.first_run_seq, hist.status)
    ).all()
    ended = conn.execute(
        select(hist.last_run_seq, hist.status, func.count())
        .where(*mine, hist.last_run_seq < last)
        .group_by(hist.last_run_seq, hist.status)
    ).all()
    # +n at the first run of a version, -n at the run after its last.
    steps: dict[int, Counter[str]] = defaultdict(Counter)
    for seq, status, n in begun:
        steps[seq][status] += n
    for seq, status, n in ended:
        steps[seq + 1][status] -= n
    return _sweep(steps, seqs)


def _sweep(steps: dict[int, Counter[str]], seqs: list[int]) -> dict[int, Counter[str]]:
    """Running totals of ``steps`` (changes at run numbers), read at each of ``seqs``."""
    out: dict[int, Counter[str]] = {}
    total: Counter[str] = Counter()
    changes = sorted(steps.items())
    i = 0
    for seq in sorted(seqs):
        while i < len(changes) and changes[i][0] <= seq:
            total.update(changes[i][1])
            i += 1
        out[seq] = Counter({status: total[status] for status in SHOWN})
    return out


def _announced_sizes(conn: Connection, list_id: str, seqs: list[int]) -> dict[int, Counter[str]]:
    """An announcement list shows at run s every entry announced by then, in its latest
    version, with the status a later ``listed``/``relisted``/``delisted`` event gave it (the
    rule of ``storage.asof``). An entry's status changes only at its versions' first runs and
    its events' runs; each change moves one entry between statuses, then a sweep sums them."""
    hist, rec = HISTORY.c, RECORDS.c
    last = max(seqs)
    versions: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for key, first_run_seq, status in conn.execute(
        select(rec.record_key, hist.first_run_seq, hist.status)
        .join(RECORDS, rec.id == hist.record_id)
        .where(hist.list == list_id, rec.list == list_id, hist.first_run_seq <= last)
    ):
        versions[key].append((first_run_seq, status))
    marks: dict[str, list[tuple[int, str]]] = defaultdict(list)  # (run seq, status), by id
    for key, event, cause, seq in conn.execute(
        select(EVENTS.c.record_key, EVENTS.c.event, EVENTS.c.cause, RUNS.c.seq)
        .join(RUNS, RUNS.c.run_id == EVENTS.c.run_id)
        .where(
            EVENTS.c.list == list_id,
            EVENTS.c.event.in_(("listed", "relisted", "delisted")),
            RUNS.c.seq <= last,
        )
        .order_by(EVENTS.c.id)
    ):
        if event != "delisted":
            marks[key].append((seq, "active"))
        else:
            marks[key].append((seq, "expired" if cause == "expired" else "removed"))
    steps: dict[int, Counter[str]] = defaultdict(Counter)
    for key, own in versions.items():
        before: str | None = None
        points = sorted({seq for seq, _ in own} | {seq for seq, _ in marks.get(key, ())})
        for point in points:
            now = _announced_status(own, marks.get(key, []), point)
            if now != before:
                if before is not None:
                    steps[point][before] -= 1
                if now is not None:
                    steps[point][now] += 1
                before = now
    return _sweep(steps, seqs)


def _announced_status(
    versions: list[tuple[int, str]], marks: list[tuple[int, str]], seq: int
) -> str | None:
    """An announced entry's status at run ``seq``: its latest version by then, unless its
    last event by then (in the events' order) came in a later run."""
    shown = [v for v in versions if v[0] <= seq]
    if not shown:
        return None
    first_run_seq, status = max(shown)
    last = [m for m in marks if m[0] <= seq]
    if last and last[-1][0] > first_run_seq:
        status = last[-1][1]
    return status


# -- an entity over time --------------------------------------------------------------------


@dataclass(frozen=True)
class Interval:
    """A time an entry was on its list: ``end`` None while it still is."""

    start: datetime
    end: datetime | None
    cause: str | None = None  # why it ended (the ``delisted`` event's cause)


@dataclass(frozen=True)
class Mark:
    event: str  # delisted · relisted · modified
    at: datetime
    cause: str | None = None


@dataclass
class TimelineRow:
    """One entry of the entity (a list and record key): its intervals and marked events."""

    list_id: str
    record_key: str
    label: str | None  # case number or title, as the record shows it (redacted or not)
    status: str | None
    intervals: list[Interval] = field(default_factory=list)
    marks: list[Mark] = field(default_factory=list)


def instant(value: Any) -> datetime | None:
    """A stored instant (ISO text or datetime) as an aware UTC datetime; None when it is none."""
    if value is None or value == "":
        return None
    try:
        moment = datetime.fromisoformat(value) if isinstance(value, str) else value
        return utc(moment) if isinstance(moment, datetime) else None
    except (TypeError, ValueError):
        return None


def entity_timeline(
    records: Sequence[dict[str, Any]], events: Iterable[dict[str, Any]]
) -> list[TimelineRow]:
    """Per record, oldest listing first: intervals from its ``listed``/``relisted`` events to
    its ``delisted`` ones. An entry without a listing event (on the list before its first run,
    or already expired then) starts at its ``first_seen``; one still shown has an open end."""
    by_entry: dict[tuple[Any, Any], list[dict[str, Any]]] = defaultdict(list)
    for ev in events:
        by_entry[(ev.get("list"), ev.get("record_key"))].append(ev)
    rows = []
    for record in records:
        key = (record.get("list"), record.get("record_key"))
        timed = [(instant(ev.get("at")), i, ev) for i, ev in enumerate(by_entry.get(key, []))]
        own = sorted((at, i, ev) for at, i, ev in timed if at is not None)
        row = TimelineRow(
            list_id=str(key[0]),
            record_key=str(key[1]),
            label=record.get("case_number") or record.get("title"),
            status=record.get("status"),
        )
        first_seen = instant(record.get("first_seen"))
        start: datetime | None = None
        opened = False
        for at, _, ev in own:
            kind = ev.get("event")
            if kind in ("listed", "relisted"):
                if start is None:
                    start = at
                if kind == "relisted":
                    row.marks.append(Mark("relisted", at))
                opened = True
            elif kind == "delisted":
                began = start if start is not None else (first_seen if not opened else None)
                if began is not None and began <= at:
                    row.intervals.append(Interval(began, at, ev.get("cause")))
                start, opened = None, True
                row.marks.append(Mark("delisted", at, ev.get("cause")))
            elif kind == "modified":
                row.marks.append(Mark("modified", at))
        if not opened and record.get("status") == "active":
            start = first_seen  # no event says when: on the list since first seen
        if start is not None:
            row.intervals.append(Interval(start, None))
        rows.append(row)
    rows.sort(key=lambda r: (min((i.start for i in r.intervals), default=_FAR), r.list_id))
    return rows


_FAR = datetime.max.replace(tzinfo=UTC)
