"""A source's standing from its runs (SCHEMA.md, Run health): ``ok``, ``failing`` once its
last K finished runs were all unhealthy (until a healthy run), or ``never_run``.

Runs still in progress (``running``, ``fetched``) are skipped (they have no verdict yet), and
so are ``void`` runs (a replay nothing in its cassette answered: no verdict to give);
``degraded``, ``failed`` and ``aborted`` all count as unhealthy. A run whose lists read in
part by design (``coverage: partial``) read all they meant to is ``healthy`` (shown
``healthy (partial)``, its summary's ``partial``): a capped list never makes a source failing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, select
from sqlalchemy.engine import Connection

from core.health import IN_PROGRESS_STATES, UNCOUNTED_STATES
from storage.models import Run, table_of
from storage.shards import shard_label

RUNS = table_of(Run)
STATES = ("ok", "failing", "never_run")


@dataclass(frozen=True)
class RunBrief:
    run_id: str
    seq: int
    state: str
    started_at: datetime | None

    @property
    def healthy(self) -> bool:
        return self.state == "healthy"

    def as_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "seq": self.seq,
            "state": self.state,
            "started_at": self.started_at.isoformat() if self.started_at else None,
        }


@dataclass(frozen=True)
class SourceState:
    source: str
    state: str  # ok · failing · never_run
    unhealthy_streak: int  # finished runs since the last healthy one (all, if none was)
    failing_after: int  # K
    last_runs: tuple[RunBrief, ...]  # the newest finished runs, newest first
    last_healthy: RunBrief | None
    running: tuple[str, ...] = ()  # ids of runs without a verdict yet
    shard: str | None = None  # ``K/N`` when the streak is one watchlist shard's
    streak_runs: tuple[RunBrief, ...] = ()  # the streak's newest runs, newest first
    newly_failing: bool = False  # the newest run is the one that made the source failing

    @property
    def detail(self) -> str:
        """``3 runs in a row unhealthy: failed, degraded, aborted`` (newest first), with
        ``shard 2/2: `` in front when one shard's runs are the streak."""
        if self.state == "never_run":
            return "never run"
        if not self.unhealthy_streak:
            return f"healthy ({self.last_runs[0].run_id})"
        shown = [r.state for r in self.streak_runs]
        more = ", …" if self.unhealthy_streak > len(shown) else ""
        lane = f"shard {self.shard}: " if self.shard else ""
        return f"{lane}{self.unhealthy_streak} runs in a row unhealthy: {', '.join(shown)}{more}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "state": self.state,
            "unhealthy_streak": self.unhealthy_streak,
            "shard": self.shard,
            "failing_after": self.failing_after,
            "detail": self.detail,
            "last_healthy": self.last_healthy.as_dict() if self.last_healthy else None,
            "last_runs": [r.as_dict() for r in self.last_runs],
            "running": list(self.running),
        }


def _brief(row: Any) -> RunBrief:
    return RunBrief(row.run_id, row.seq, row.state, row.started_at)


def source_state(
    conn: Connection, source_id: str, failing_after: int, *, last: int | None = None
) -> SourceState:
    """The source's standing from its runs; ``failing_after`` is the registry's K
    (``SourceDef.failing_after``); ``last_runs`` holds ``last`` runs (default K).

    A source crawled in watchlist shards (``storage.shards``) has one streak per shard: shard
    1's healthy runs say nothing of shard 2, so a shard failing every night makes the source
    failing even while the other shard's runs, interleaved with it, are healthy. A run of the
    whole source counts for every shard."""
    if failing_after < 1:
        raise ValueError(f"failing_after must be at least 1, not {failing_after}")
    limit = max(last or failing_after, 1)
    finished = and_(RUNS.c.source == source_id, RUNS.c.state.not_in(UNCOUNTED_STATES))
    running = tuple(
        conn.execute(
            select(RUNS.c.run_id)
            .where(RUNS.c.source == source_id, RUNS.c.state.in_(IN_PROGRESS_STATES))
            .order_by(RUNS.c.seq)
        ).scalars()
    )
    newest_first = conn.execute(
        select(RUNS.c.run_id, RUNS.c.seq, RUNS.c.state, RUNS.c.started_at, RUNS.c.summary)
        .where(finished)
        .order_by(RUNS.c.seq.desc())
        .execution_options(yield_per=200)
    )
    streaks = _Streaks()
    for row in newest_first:
        streaks.add(row, _brief(row))
        if streaks.settled(limit):
            break
    newest_first.close()
    if not streaks.recent:
        return SourceState(source_id, "never_run", 0, failing_after, (), None, running)
    shard, runs = streaks.worst()
    return SourceState(
        source=source_id,
        state="failing" if len(runs) >= failing_after else "ok",
        unhealthy_streak=len(runs),
        failing_after=failing_after,
        last_runs=tuple(streaks.recent[:limit]),
        last_healthy=streaks.last_healthy,
        running=running,
        shard=shard,
        streak_runs=tuple(runs[:limit]),
        newly_failing=streaks.newly_failing(failing_after),
    )


class _Streaks:
    """Unhealthy runs since each lane's last healthy run, read newest first. A lane is a
    shard ``K/N`` of the newest run's split, or ``None`` when the newest run read the whole
    source (then every run counts, as before shards)."""

    def __init__(self) -> None:
        self.recent: list[RunBrief] = []
        self.last_healthy: RunBrief | None = None
        self.lanes: dict[str | None, list[RunBrief]] = {}
        self.closed: set[str | None] = set()
        self.newest_covers: set[str | None] = set()
        self.newest_lane: str | None = None

    def add(self, row: Any, brief: RunBrief) -> None:
        self.recent.append(brief)
        if brief.healthy and self.last_healthy is None:
            self.last_healthy = brief
        label = shard_label(row)
        if not self.lanes:  # the newest run: its split names the lanes
            count = int(label.split("/")[1]) if label else 0
            lanes: list[str | None] = [f"{k}/{count}" for k in range(1, count + 1)]
            lanes = lanes if label else [None]
            self.lanes = {lane: [] for lane in lanes}
            self.newest_lane = label
        covers: set[str | None]
        if None in self.lanes or label is None:
            covers = set(self.lanes) - self.closed
        else:
            mine: set[str | None] = {label} if label in self.lanes else set()
            covers = mine - self.closed
        if len(self.recent) == 1 and not brief.healthy:
            self.newest_covers = covers
        for lane in covers:
            if brief.healthy:
                self.closed.add(lane)
            else:
                self.lanes[lane].append(brief)

    def settled(self, limit: int) -> bool:
        return self.closed >= set(self.lanes) and len(self.recent) >= limit

    def worst(self) -> tuple[str | None, list[RunBrief]]:
        """The lane with the longest streak (the newest run's on a tie); no lane when every
        lane's newest run was healthy."""
        lane = max(self.lanes, key=lambda name: (len(self.lanes[name]), name == self.newest_lane))
        return (lane, self.lanes[lane]) if self.lanes[lane] else (None, [])

    def newly_failing(self, failing_after: int) -> bool:
        """The streak has just reached K: without the newest run no lane had."""
        before = [len(runs) - (lane in self.newest_covers) for lane, runs in self.lanes.items()]
        return max(len(runs) for runs in self.lanes.values()) >= failing_after > max(before)
