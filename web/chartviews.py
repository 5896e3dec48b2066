"""What the list and entity pages show of their charts: the runs or entries as numbers (for
the fallback table and the image's alt text) and the address of the SVG image
(``web/routes/charts.py`` draws it)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

from fastapi import Request

from core.registry import ListDef, SourceDef
from storage.history import RunPoint, TimelineRow, entity_timeline, list_history
from web.models import EntityAnswer
from web.site import Site, language, site_of

PAGE_RUNS = 30  # runs charted on a list's page


@dataclass(frozen=True)
class ListView:
    """What ``_list_charts.html`` shows: the runs (oldest first), the image's address."""

    points: list[RunPoint]
    src: str

    @property
    def newest_first(self) -> list[RunPoint]:
        return self.points[::-1]

    @property
    def last(self) -> RunPoint | None:
        return self.points[-1] if self.points else None

    @property
    def vouching(self) -> RunPoint | None:
        """The newest healthy run: the list's size it shows is vouched for."""
        return next((p for p in reversed(self.points) if p.healthy), None)


@dataclass(frozen=True)
class TimelineView:
    """What ``_entity_timeline.html`` shows: one row per entry, the image's address."""

    rows: list[TimelineRow]
    src: str


def chart_src(path: str, lang: str, **params: Any) -> str:
    query = urlencode({"lang": lang, **params})
    return f"{quote(path, safe='/:@!$&()*+,;=~')}?{query}"


def points_of(site: Site, src: SourceDef, lst: ListDef, runs: int) -> list[RunPoint]:
    with site.engine.connect() as conn:
        return list_history(conn, src.id, lst, runs)


def list_view(request: Request, src: SourceDef, lst: ListDef) -> ListView:
    points = points_of(site_of(request), src, lst, PAGE_RUNS)
    path = f"/charts/lists/{lst.id}.svg"
    return ListView(points, chart_src(path, language(request), runs=PAGE_RUNS))


def entity_view(request: Request, answer: EntityAnswer) -> TimelineView:
    rows = entity_timeline(answer.records, answer.events)
    src = chart_src(f"/charts/entities/{answer.entity_id}.svg", language(request))
    return TimelineView(rows, src)
