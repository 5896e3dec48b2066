"""The JSON API's answers: what ``/api/...`` returns, described in ``/openapi.json``."""

from __future__ import annotations

from datetime import date, datetime
from datetime import date as Date  # a field of RunRef is called `date`
from typing import Any

from pydantic import BaseModel, Field


class RunRef(BaseModel):
    """The run that vouches for a list's state: its last healthy run on or before the date."""

    run_id: str
    seq: int
    at: datetime = Field(description="the run's clock (UTC)")
    date: Date = Field(description="the date the run is filed under (Asia/Shanghai)")
    run_state: str = Field(description="the run's state (worst of its lists)")
    list_health: str = Field(description="the list's health in that run")


class LatestRun(BaseModel):
    run_id: str
    at: datetime | None
    state: str


class Counts(BaseModel):
    active: int = 0
    expired: int = 0
    removed: int = 0


class ListSummary(BaseModel):
    id: str = Field(description="full list id, <source>.<list>")
    short_id: str
    source: str
    name_zh: str
    name_en: str
    list_kind: str
    publication: str = Field(description="database or announcements")
    counts: Counts | None = Field(
        None, description="entries by status as the last healthy run left them"
    )
    last_healthy_run: RunRef | None = None
    url: str = Field(description="the list's page")


class SourceSummary(BaseModel):
    id: str
    name_zh: str
    name_en: str
    jurisdiction: str
    base_url: str
    latest_run: LatestRun | None = Field(None, description="the newest run, whatever its state")
    lists: list[ListSummary]


class EntryFilters(BaseModel):
    q: str | None = None
    status: str = ""
    decided_from: date | None = None
    decided_to: date | None = None
    as_of: date | None = None


class EntriesPage(BaseModel):
    list: ListSummary
    filters: EntryFilters
    run: RunRef | None = Field(None, description="None: no healthy run on or before as_of")
    total: int = Field(description="entries matching, on every page")
    page: int
    per_page: int
    pages: int
    redacted: bool
    entries: list[dict[str, Any]] = Field(description="records in the shape of SCHEMA.md")


class EntityAnswer(BaseModel):
    entity_id: str = Field(description="pseudonymous for persons when the server redacts")
    entity_name: str | None
    entity_type: str | None
    redacted: bool
    records: list[dict[str, Any]] = Field(
        description="the entity's entries in every list, current state, removed ones included"
    )
    events: list[dict[str, Any]] = Field(
        description="events in the shape of SCHEMA.md, oldest first"
    )
    listings: list[dict[str, Any]] = Field(
        [],
        description="every (source, list, record_key) the entity is or was on, across sources "
        "(same USCC, else same name key and jurisdiction): status now, listed and delisted "
        "dates, delisting cause and evidence",
    )


class SnapshotFile(BaseModel):
    path: str
    sha256: str | None = None
    bytes: int | None = None
    rows: int | None = None
    url: str | None = Field(None, description="download URL; None when withheld")


class SnapshotInfo(BaseModel):
    name: str
    manifest_url: str
    downloadable: bool = Field(description="False for unredacted snapshots on a redacting server")
    error: str | None = None
    manifest: dict[str, Any] | None = None
    files: list[SnapshotFile] = []
