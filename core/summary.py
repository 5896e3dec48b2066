"""The summary a finished run keeps on its row (``runs.summary``), as a typed model.

The finish step (``pipeline/finalize.py``) builds it and the CLI reads it back; both go
through this model so a field is named in one place. The stored JSON shape is the one runs
have always had: ``announcements`` and ``held`` are left out when a run has none, and every
field has a default, so rows written before a field existed (or before this model) still
load.
"""

from __future__ import annotations

import builtins
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from core.health import is_partial


def _absent(value: Any) -> bool:
    return value is None


class _Model(BaseModel):
    # Keys this version does not know (written by a newer one) are kept, not dropped.
    model_config = ConfigDict(extra="allow")


class OutcomeCount(_Model):
    """How many fetches of the run had one outcome, and one URL that had it."""

    count: int = 0
    example_url: str | None = None


class ListSummary(_Model):
    """One list's health in the run (``core.health.ListHealth.as_row``)."""

    list: str = ""
    health: str = "failed"
    pages: int = 0
    rows_declared: int | None = None
    rows_seen: int = 0
    records: int = 0
    # ``builtins.list``: the field ``list`` hides the builtin in this class's namespace.
    findings: builtins.list[dict[str, Any]] = Field(default_factory=builtins.list)

    @property
    def partial(self) -> bool:
        """Healthy, read in part by design (the ``partial`` note among its findings)."""
        return self.health == "healthy" and is_partial(self.findings)


class AnnouncementsSummary(_Model):
    """Announcements of the run by state, each problem spelled out for a maintainer."""

    read: int = 0
    needs_transcription: list[dict[str, Any]] = Field(default_factory=list)
    failed: list[dict[str, Any]] = Field(default_factory=list)
    unmatched_removals: list[dict[str, Any]] = Field(default_factory=list)


class RunSummary(_Model):
    """What a finished run reports: per-list health, fetch outcomes, events by kind, and,
    for sources that have them, announcements, delistings held by the guard and the healthy
    lists it read in part by design (``partial``: its state is shown ``healthy (partial)``)."""

    lists: dict[str, ListSummary] = Field(default_factory=dict)
    outcomes: dict[str, OutcomeCount] = Field(default_factory=dict)
    events: dict[str, int] = Field(default_factory=dict)
    announcements: AnnouncementsSummary | None = Field(default=None, exclude_if=_absent)
    held: dict[str, int] | None = Field(default=None, exclude_if=_absent)
    partial: builtins.list[str] | None = Field(default=None, exclude_if=_absent)

    @classmethod
    def load(cls, stored: dict[str, Any] | None) -> RunSummary:
        """The summary of a run row (``None`` for a run that never finished: empty)."""
        return cls.model_validate(stored or {})

    def stored(self) -> dict[str, Any]:
        """The JSON kept on the run row."""
        return self.model_dump(mode="json")
