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

from sqlalchemy import and_, func, select
from sqlalchemy.engine import Connection

from core.health import IN_PROGRESS_STATES, UNCOUNTED_STATES
from storage.models import Run, table_of

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

    @property
    def newly_failing(self) -> bool:
        """This state's newest run is the one that made the source failing: the streak has
        just reached K (what a health alert is raised on, once)."""
        return self.unhealthy_streak == self.failing_after

    @property
    def detail(self) -> str:
        """``3 runs in a row unhealthy: failed, degraded, aborted`` (newest first)."""
        if self.state == "never_run":
            return "never run"
        if not self.unhealthy_streak:
            return f"healthy ({self.last_runs[0].run_id})"
        shown = [r.state for r in self.last_runs[: self.unhealthy_streak]]
        more = ", …" if self.unhealthy_streak > len(shown) else ""
        return f"{self.unhealthy_streak} runs in a row unhealthy: {', '.join(shown)}{more}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "state": self.state,
            "unhealthy_streak": self.unhealthy_streak,
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
    (``SourceDef.failing_after``); ``last_runs`` holds ``last`` runs (default K)."""
    if failing_after < 1:
        raise ValueError(f"failing_after must be at least 1, not {failing_after}")
    finished = and_(RUNS.c.source == source_id, RUNS.c.state.not_in(UNCOUNTED_STATES))
    columns = (RUNS.c.run_id, RUNS.c.seq, RUNS.c.state, RUNS.c.started_at)
    recent = [
        _brief(row)
        for row in conn.execute(
            select(*columns)
            .where(finished)
            .order_by(RUNS.c.seq.desc())
            .limit(max(last or failing_after, 1))
        )
    ]
    running = tuple(
        conn.execute(
            select(RUNS.c.run_id)
            .where(RUNS.c.source == source_id, RUNS.c.state.in_(IN_PROGRESS_STATES))
            .order_by(RUNS.c.seq)
        ).scalars()
    )
    if not recent:
        return SourceState(source_id, "never_run", 0, failing_after, (), None, running)
    healthy_row = conn.execute(
        select(*columns)
        .where(finished, RUNS.c.state == "healthy")
        .order_by(RUNS.c.seq.desc())
        .limit(1)
    ).first()
    last_healthy = _brief(healthy_row) if healthy_row is not None else None
    since = finished if last_healthy is None else and_(finished, RUNS.c.seq > last_healthy.seq)
    streak = conn.execute(select(func.count()).select_from(RUNS).where(since)).scalar_one()
    return SourceState(
        source=source_id,
        state="failing" if streak >= failing_after else "ok",
        unhealthy_streak=streak,
        failing_after=failing_after,
        last_runs=tuple(recent),
        last_healthy=last_healthy,
        running=running,
    )
