"""The database: sources, runs with their fetch log and raw archive, records and events.

Table and column names follow ``SCHEMA.md`` so the SQLite file reads well in Datasette.
``records`` is the current state of every entry; ``record_history`` keeps each version as an
interval of runs (which run first and last saw it with those values), so any past run's view
of a list can be rebuilt; ``run_records`` is the staging area one run fills before change
detection merges it, invisible to readers until then. ``entry_state`` and ``list_state`` are
change detection's own: the narrow hot state it diffs a run against, and the latest run that
saw each list (``records.last_seen`` is None while that run saw the entry).
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    Column,
    Float,
    Index,
    LargeBinary,
    Table,
    Unicode,
    UniqueConstraint,
    false,
    inspect,
    text,
)
from sqlmodel import Field, SQLModel

from storage.types import JSONType, UTCDateTime

# Aliases, because a column named ``list`` shadows the builtin inside the class bodies.
JSONObject = dict[str, Any]
JSONList = list[dict[str, Any]]
HeaderList = list[list[str]]


def _json(nullable: bool = True) -> Any:
    return Field(default=None, sa_column=Column(JSONType, nullable=nullable))


def _time(nullable: bool = True, index: bool = False) -> Any:
    return Field(default=None, sa_column=Column(UTCDateTime(), nullable=nullable, index=index))


class Source(SQLModel, table=True):
    __tablename__ = "sources"

    id: str = Field(primary_key=True)
    name_zh: str
    name_en: str
    jurisdiction: str
    region_code: str
    base_url: str
    declaration: JSONObject | None = _json()
    updated_at: datetime | None = _time()


class Run(SQLModel, table=True):
    __tablename__ = "runs"
    __table_args__ = (UniqueConstraint("source", "seq"),)

    run_id: str = Field(primary_key=True)
    source: str = Field(index=True)
    seq: int
    mode: str  # live · replay · record
    cassette: str | None = None
    state: str = "running"  # core.health.RUN_STATES: running · fetched · healthy · … · aborted
    clock_origin: str | None = None  # date-header · wall
    started_at: datetime | None = _time()
    ended_at: datetime | None = _time()
    pid: int | None = None
    host: str | None = None
    delist_after: int = 2
    pages: int = 0
    records: int = 0
    events: int = 0
    summary: JSONObject | None = _json()
    error: str | None = None


class RunList(SQLModel, table=True):
    """Health of one list in one run, with the findings that decided it."""

    __tablename__ = "run_lists"

    run_id: str = Field(primary_key=True)
    list: str = Field(primary_key=True)
    health: str  # healthy · degraded · failed
    pages: int = 0
    rows_declared: int | None = None
    rows_seen: int = 0
    records: int = 0
    findings: JSONList | None = _json()


class RawBody(SQLModel, table=True):
    """Response bodies, content-addressed by the sha256 of the bytes received, gzip-compressed."""

    __tablename__ = "raw_bodies"

    sha256: str = Field(primary_key=True)
    size: int
    compression: str = "gzip"
    data: bytes = Field(sa_column=Column(LargeBinary, nullable=False))


class RawResponse(SQLModel, table=True):
    """Every response received: what was asked, what came back, when; the body by hash."""

    __tablename__ = "raw_responses"

    id: int | None = Field(default=None, primary_key=True)
    run_id: str = Field(index=True)
    sha256: str = Field(index=True)
    url: str
    method: str
    status: int
    headers: HeaderList | None = _json()
    fetched_at: datetime | None = _time()
    from_cassette: bool = False


class Fetch(SQLModel, table=True):
    """The outcome of each fetch or page parse, in the run-health vocabulary of SCHEMA.md."""

    __tablename__ = "fetches"

    id: int | None = Field(default=None, primary_key=True)
    run_id: str = Field(index=True)
    list: str | None = None  # None: serves the whole source (robots.txt, subject pages)
    url: str
    outcome: str
    status: int | None = None
    detail: str | None = None
    sha256: str | None = None


class ListPage(SQLModel, table=True):
    """A list page as fetched in a run: the evidence of what the list showed, and of absence."""

    __tablename__ = "list_pages"

    id: int | None = Field(default=None, primary_key=True)
    run_id: str = Field(index=True)
    list: str
    url: str
    page_no: int
    rows: int
    declared_total: int | None = None
    declared_pages: int | None = None
    sha256: str


class RunRecord(SQLModel, table=True):
    """Staging: the normalised records one run saw, until change detection merges them."""

    __tablename__ = "run_records"
    # The finish step asks for the few repeated keys of a run of millions.
    __table_args__ = (
        Index(
            "ix_run_records_repeated",
            "run_id",
            sqlite_where=text("repeats > 0"),
            postgresql_where=text("repeats > 0"),
        ),
    )

    run_id: str = Field(primary_key=True)
    list: str = Field(primary_key=True)
    record_key: str = Field(primary_key=True)
    source: str
    entity_id: str
    content_hash: str
    valid_until: date | None = None
    removed: bool = False  # the entry publishes its own removal (in-row 移出 fields)
    removed_on: date | None = None
    # The record itself, kept only where change detection may need it: a new entry, or one
    # whose content or provenance differs from its hot state when staged. An entry read again
    # as stored stages its key and digests alone (None here): at ten million entries, the
    # staging's size, and so every pass over it, is the keys' and not the records'.
    data: JSONObject | None = Field(default=None, sa_column=Column(JSONType, nullable=True))
    # How often the key came again in the run, and whether with other content: a repeated
    # row or a key collision, either of which leaves the list unable to prove anything.
    repeats: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    collided: bool = Field(default=False, sa_column_kwargs={"server_default": false()})
    # Digest of the record's provenance (source_url, raw_sha256, extra.pages): an entry read
    # again unchanged from another page gets its stored provenance rewritten, and only then.
    prov_hash: str | None = None


class RunFill(SQLModel, table=True):
    """Staging: per list of a run, how many staged records had each top-level field filled,
    counted by the writer as it stages (the field ``*`` counts the records): the lists'
    declared fill rates, without reading back records that are staged as key and digests."""

    __tablename__ = "run_fill"

    run_id: str = Field(primary_key=True)
    list: str = Field(primary_key=True)
    field: str = Field(primary_key=True)
    filled: int = 0


class RunRemoval(SQLModel, table=True):
    """Staging: rows of removal announcements, matched to entries by change detection."""

    __tablename__ = "run_removals"

    run_id: str = Field(primary_key=True)
    list: str = Field(primary_key=True)
    record_key: str = Field(primary_key=True)
    source: str
    entity_id: str
    by_case: bool = False  # the row names a case: it ends that entry only, not the subject's
    removed_on: date | None = None
    data: JSONObject = Field(sa_column=Column(JSONType, nullable=False))


class Announcement(SQLModel, table=True):
    """An announcement as read by one run; what later runs skip, and what a maintainer sees
    (failed ones with their error, image-only lists waiting for transcription)."""

    __tablename__ = "announcements"
    __table_args__ = (Index("ix_announcements_source_url", "source", "url"),)

    id: int | None = Field(default=None, primary_key=True)
    run_id: str = Field(index=True)
    source: str
    list: str
    url: str
    sha256: str
    title: str
    kind: str  # listing · removal
    state: str  # read · needs_transcription · failed
    published_on: date | None = None
    rows: int = 0
    attachments: JSONList | None = _json()
    error: str | None = None


class Record(SQLModel, table=True):
    """Current state of every entry ever seen, one row per (list, record_key)."""

    __tablename__ = "records"
    __table_args__ = (
        UniqueConstraint("list", "record_key"),
        Index("ix_records_source_list_status", "source", "list", "status"),
    )

    id: int | None = Field(default=None, primary_key=True)
    source: str
    list: str
    record_key: str
    entity_id: str = Field(index=True)
    entity_name: str | None = None
    uscc: str | None = Field(default=None, index=True)
    case_number: str | None = None
    title: str | None = None
    valid_until: date | None = None
    status: str  # active · expired · removed
    first_seen: datetime = _time(nullable=False)
    # None while the list's latest run saw the entry (``list_state.last_at`` says when); set
    # when a run misses it, so an entry seen run after run is never rewritten.
    last_seen: datetime | None = _time()
    absent_runs: int = 0
    content_hash: str
    last_run_id: str  # the run that last wrote this row's values or status
    data: JSONObject = Field(sa_column=Column(JSONType, nullable=False))


class EntryState(SQLModel, table=True):
    """The hot state of every entry: what change detection compares a run with.

    Narrow on purpose: a run of a list of ten million entries is diffed against this table
    (key, content hash, status, absence), not against the wide ``records`` rows, and only the
    entries that differ are read or written anywhere. It mirrors ``records`` (``record_id``)
    and is written by change detection alone. ``last_seen_seq`` is None while the list's latest
    run saw the entry, else the run (``seq``) that last saw it.
    """

    __tablename__ = "entry_state"
    __table_args__ = {"sqlite_with_rowid": False}

    list: str = Field(primary_key=True)
    record_key: str = Field(primary_key=True)
    record_id: int
    content_hash: str
    prov_hash: str | None = None  # as in run_records; None for entries stored before 0010
    status: str
    absent_runs: int = 0
    last_seen_seq: int | None = None


class ListState(SQLModel, table=True):
    """Per list, the latest run that saw it (read at least one entry of it, or was healthy for
    it): entries that run saw keep ``records.last_seen`` None and their history interval open."""

    __tablename__ = "list_state"

    list: str = Field(primary_key=True)
    source: str
    last_seq: int
    last_run_id: str
    last_at: datetime = _time(nullable=False)


OPEN_SEQ = 2_147_483_647  # ``record_history.last_run_seq`` of an open interval (int4's largest)


class RecordHistory(SQLModel, table=True):
    """One version of an entry: its values and status over an unbroken interval of runs.

    ``data`` is the record as first read in this version, provenance included, so a past
    run's view rebuilds to the same bytes however many runs later it is asked for. The interval
    of the version the list's latest run saw is open: ``last_run_seq`` is ``OPEN_SEQ`` (and
    ``last_at`` its first run's time) until a run misses the entry or reads other values, so
    an unchanged entry costs no write per run.
    """

    __tablename__ = "record_history"
    __table_args__ = (
        Index("ix_record_history_record_runs", "record_id", "last_run_seq"),
        # Detection extends the intervals that ended at the previous run of a source.
        Index("ix_record_history_source_last_run", "source", "last_run_seq"),
    )

    id: int | None = Field(default=None, primary_key=True)
    record_id: int
    source: str
    list: str
    first_run_seq: int
    last_run_seq: int
    first_at: datetime = _time(nullable=False)
    last_at: datetime = _time(nullable=False)
    status: str
    content_hash: str
    data: JSONObject = Field(sa_column=Column(JSONType, nullable=False))


class Event(SQLModel, table=True):
    """What change detection reported, in SCHEMA.md's event shape; ``id`` gives their order."""

    __tablename__ = "events"

    id: int | None = Field(default=None, primary_key=True)
    event_id: str = Field(unique=True)
    event: str  # listed · delisted · modified · relisted
    source: str = Field(index=True)
    list: str
    record_key: str
    entity_id: str = Field(index=True)  # an entity's events, across lists and sources
    entity_name: str | None = None
    case_number: str | None = None
    title: str | None = None
    cause: str | None = None
    changes: JSONObject | None = _json()
    baseline: bool = False
    run_id: str = Field(index=True)
    at: datetime = _time(nullable=False, index=True)
    evidence: JSONObject | None = _json()


class PendingDelisting(SQLModel, table=True):
    """An entry whose ``disappeared`` delisting the mass-delisting guard held for a maintainer.

    A healthy run that would delist more than the list's ``delisting_guard`` allows leaves the
    entries' records as they were and holds them here (``state`` ``pending``), with the
    holding run's clock and absence evidence. ``creditwatch pending release`` raises their
    ``delisted`` events (as the holding run); ``discard`` drops them. Entries that a later run
    sees again leave by themselves (``returned``), as do those the portal removes meanwhile by
    a published removal (``superseded``). ``status_before`` ``expired``: an entry whose
    delisting was already reported, so its release removes it without an event.
    """

    __tablename__ = "pending_delistings"
    __table_args__ = (
        # One hold per entry and run; (list, record_key) first: "is this entry held?"
        UniqueConstraint("list", "record_key", "run_id"),
        Index("ix_pending_delistings_state_source", "state", "source"),
    )

    id: int | None = Field(default=None, primary_key=True)
    source: str
    list: str
    record_key: str
    entity_id: str
    entity_name: str | None = None
    run_id: str = Field(index=True)  # the holding run
    held_at: datetime = _time(nullable=False)  # the holding run's clock
    status_before: str  # active · expired: the record's status when held
    state: str = "pending"  # pending · released · discarded · returned · superseded
    decided_at: datetime | None = _time()
    decided_by: str | None = None  # who released or discarded, or "run:<id>" for returned
    note: str | None = None
    guard: JSONObject | None = _json()  # active, would_delist, share, min_count of the hold
    evidence: JSONObject | None = _json()  # the holding run's absence evidence for the list


class SubscriptionRow(SQLModel, table=True):
    """A watchdog group's subscription (``alerts.subscriptions.Subscription.as_dict``)."""

    __tablename__ = "subscriptions"

    id: str = Field(primary_key=True)
    data: JSONObject = Field(sa_column=Column(JSONType, nullable=False))
    origin: str | None = None  # "cli", or the file it was imported from
    updated_at: datetime | None = _time()


class Alert(SQLModel, table=True):
    """The outbox: one row per alert to deliver, written with the events that cause it.

    ``alert_key`` is the idempotency key receivers see (webhook header, e-mail Message-ID);
    it is unique, so an event never alerts a subscription's channel twice. Digest items wait
    as ``queued`` until their window closes, then one ``digest`` row carries them. A sender
    claims a row before delivering it (``claimed_by`` until ``claimed_until``), so two senders
    at once never deliver it twice; ``blocked`` rows wait for a configuration fix, untried.
    """

    __tablename__ = "alerts"
    __table_args__ = (Index("ix_alerts_status_next", "status", "next_attempt_at"),)

    id: int | None = Field(default=None, primary_key=True)
    alert_key: str = Field(unique=True)
    subscription: str = Field(index=True)
    channel: str
    kind: str  # event · digest_item · digest · health
    status: str  # pending · queued · bundled · collapsed · delivered · failed · blocked
    run_id: str | None = None
    event_ids: list[str] | None = _json()
    match: JSONObject | None = _json()
    payload: JSONObject | None = _json()  # health alerts: what went wrong
    digest_id: int | None = None  # for digest items: the digest that carried them
    window_start: datetime | None = _time()
    due_at: datetime = _time(nullable=False)
    next_attempt_at: datetime = _time(nullable=False)
    attempts: int = 0
    created_at: datetime = _time(nullable=False)
    delivered_at: datetime | None = _time()
    receipt: str | None = None
    last_error: str | None = None
    claimed_by: str | None = None  # HOST:PID:TOKEN of the sender delivering it now
    claimed_until: datetime | None = _time()  # its lease: after this, any sender may take it


class SchedulerJob(SQLModel, table=True):
    """APScheduler's job store (``SQLAlchemyJobStore``), declared here so migrations own it:
    one row per scheduled job, its pickled state and its next run (epoch seconds, UTC)."""

    __tablename__ = "scheduler_jobs"

    id: str = Field(sa_column=Column(Unicode(191), primary_key=True))
    next_run_time: float | None = Field(default=None, sa_column=Column(Float(25), index=True))
    job_state: bytes = Field(sa_column=Column(LargeBinary, nullable=False))


def table_of(model: type[SQLModel]) -> Table:
    """The ``Table`` of a table model, typed. SQLModel's metaclass sets ``__table__`` but does
    not declare it to type checkers; the mapper's ``local_table`` is the same object."""
    table = inspect(model).local_table
    if not isinstance(table, Table):
        raise TypeError(f"{model.__name__} is not a table model")
    return table
