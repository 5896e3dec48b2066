"""The lifecycle table of SCHEMA.md, row by row, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from core.normalise import content_hash
from core.registry import get_source
from storage.engine import get_engine, upgrade
from storage.lifecycle import RunDetection, StagingOutOfDate, apply_run, event_id
from storage.models import OPEN_SEQ, EntryState, Event, Record, RecordHistory, RunRecord
from storage.runlog import RunWriter
from storage.runs import create_run, get_run

WARNING = "xmtravel.warning"
DAY = datetime(2025, 11, 21, 2, 0, tzinfo=UTC)


def entry(key: str, *, fine: int = 1000, valid_until: str | None = "2026-01-01") -> dict[str, Any]:
    return {
        "source": "xmtravel",
        "list": WARNING,
        "record_key": key,
        "entity_id": f"uscc-{key}",
        "entity_name": f"公司{key}",
        "uscc": None,
        "case_number": f"罚[{key}]号",
        "title": None,
        "fine_yuan": fine,
        "valid_until": valid_until,
        "source_url": f"http://example.test/{key}",
        "raw_sha256": "0" * 64,
        "extra": {"pages": [{"url": f"http://example.test/{key}", "sha256": key}]},
    }


class Ledger:
    """Runs synthetic crawls of the warning list straight through change detection."""

    def __init__(self, url: str) -> None:
        upgrade(url)
        self.url = url
        self.engine = get_engine(url)
        self.day = 0

    def run(
        self,
        entries: list[dict[str, Any]],
        *,
        healthy: bool = True,
        n: int = 2,
        removals: list[dict[str, Any]] = (),  # type: ignore[assignment]
        announced: bool = False,
        scope: dict[str, list[str]] | None = None,
        day: int | None = None,
    ) -> str:
        """One run through detection; ``scope`` makes it vouch for those subjects only (a
        shard), ``day`` dates it on that day instead of the day after the last run."""
        run_id = self.stage(entries, removals=removals, n=n)
        self.detect(run_id, healthy=healthy, n=n, announced=announced, scope=scope, day=day)
        return run_id

    def stage(
        self,
        entries: list[dict[str, Any]],
        *,
        removals: list[dict[str, Any]] = (),  # type: ignore[assignment]
        n: int = 2,
    ) -> str:
        """A new run with ``entries`` (and ``removals``) staged, not yet detected."""
        run_id = create_run(
            self.engine, get_source("xmtravel"), mode="replay", cassette=None, delist_after=n
        )
        writer = RunWriter(self.engine, run_id)
        for e in entries:
            writer.add_record(e, content_hash(e))
        for removal in removals:
            writer.add_removal(removal)
        writer.flush()
        return run_id

    def detect(
        self,
        run_id: str,
        *,
        healthy: bool = True,
        n: int = 2,
        announced: bool = False,
        scope: dict[str, list[str]] | None = None,
        day: int | None = None,
    ) -> None:
        """Change detection of a staged run."""
        if day is None:
            day, self.day = self.day, self.day + 1
        at = DAY + timedelta(days=day)
        with self.engine.begin() as conn:
            apply_run(
                conn,
                RunDetection(
                    run_id=run_id,
                    source="xmtravel",
                    seq=get_run(conn, run_id).seq,
                    at=at,
                    run_date=(at + timedelta(hours=8)).date(),
                    lists=[WARNING],
                    healthy={WARNING} if healthy and not announced else set(),
                    delist_after=n,
                    expire_unseen={WARNING} if announced else set(),
                    scope=scope or {},
                ),
            )

    def events(self, run_id: str) -> list[tuple[str, str, str | None]]:
        table = Event.__table__
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(table).where(table.c.run_id == run_id).order_by(table.c.id)
            ).all()
        return [(r.event, r.record_key, r.cause) for r in rows]

    def status(self) -> dict[str, str]:
        table = Record.__table__
        with self.engine.connect() as conn:
            return {r.record_key: r.status for r in conn.execute(select(table))}


@pytest.fixture
def ledger(db_url: str) -> Ledger:
    return Ledger(db_url)


def test_baseline_lists_active_entries_only(ledger: Ledger) -> None:
    run = ledger.run(
        [entry("a"), entry("old", valid_until="2025-01-01"), entry("open", valid_until=None)]
    )
    assert ledger.events(run) == [("listed", "a", None), ("listed", "open", None)]
    table = Event.__table__
    with ledger.engine.connect() as conn:
        assert all(conn.execute(select(table.c.baseline)).scalars())
    assert ledger.status() == {"a": "active", "old": "expired", "open": "active"}


def test_later_runs_list_modify_expire_and_relist(ledger: Ledger) -> None:
    ledger.run([entry("a"), entry("b"), entry("c", valid_until="2025-11-21")])
    second = ledger.run(
        [entry("a", fine=5000), entry("b"), entry("c", valid_until="2025-11-21"), entry("d")]
    )
    assert ledger.events(second) == [
        ("listed", "d", None),
        ("modified", "a", None),
        ("delisted", "c", "expired"),
    ]
    table = Event.__table__
    with ledger.engine.connect() as conn:
        changes = conn.execute(select(table.c.changes).where(table.c.event == "modified")).scalar()
        baseline = conn.execute(select(table.c.baseline).where(table.c.record_key == "d")).scalar()
    assert changes == {"fine_yuan": [1000, 5000]}
    assert baseline is False
    # The portal extends c's validity: relisted (and its valid_until change is a modification).
    third = ledger.run(
        [entry("a", fine=5000), entry("b"), entry("c", valid_until="2026-12-31"), entry("d")]
    )
    assert ledger.events(third) == [("relisted", "c", None), ("modified", "c", None)]
    assert ledger.status()["c"] == "active"


def test_disappeared_only_after_n_consecutive_healthy_absences(ledger: Ledger) -> None:
    ledger.run([entry("a"), entry("b")])
    assert ledger.events(ledger.run([entry("a")])) == []
    assert ledger.events(ledger.run([entry("a")], healthy=False)) == []  # does not count
    assert ledger.events(ledger.run([entry("a")])) == [("delisted", "b", "disappeared")]
    assert ledger.status() == {"a": "active", "b": "removed"}
    # Seen again: relisted.
    assert ledger.events(ledger.run([entry("a"), entry("b")])) == [("relisted", "b", None)]


def test_seeing_resets_the_absence_count(ledger: Ledger) -> None:
    ledger.run([entry("a"), entry("b")])
    ledger.run([entry("a")])
    ledger.run([entry("a"), entry("b")], healthy=False)  # any run's sighting counts
    assert ledger.events(ledger.run([entry("a")])) == []


def test_expired_entry_that_disappears_raises_nothing_more(ledger: Ledger) -> None:
    ledger.run([entry("a"), entry("x", valid_until="2025-01-01")])
    assert ledger.events(ledger.run([entry("a")], n=1)) == []
    assert ledger.status()["x"] == "removed"


def removed_in_row(key: str, on: str | None = "2025-11-20", **kw: Any) -> dict[str, Any]:
    record = entry(key, **kw)
    record["extra"] = {**record["extra"], "removal": {"removed_on": on, "reason": "信用修复"}}
    return record


def removal_row(key: str, *, by_case: bool = True, on: str | None = None) -> dict[str, Any]:
    """A removal announcement's row naming entry ``key`` (by case, or by subject only)."""
    row = entry(key) if by_case else {**entry(key), "record_key": f"subject-{key}"}
    row["case_number_key"] = row["case_number"] if by_case else None
    row["source_url"] = "http://example.test/removal.docx"
    row["extra"] = {"removal": {"removed_on": on, "reason": "信用修复"}}
    return row


def test_a_row_that_publishes_its_removal_delists_it(ledger: Ledger) -> None:
    ledger.run([entry("a"), entry("b"), removed_in_row("gone")])
    assert ledger.status() == {"a": "active", "b": "active", "gone": "removed"}
    run = ledger.run([removed_in_row("a"), entry("b"), removed_in_row("gone")], healthy=False)
    # Any run may report a published removal, and the removal fields are no modification.
    assert ledger.events(run) == [("delisted", "a", "published_removal")]
    assert ledger.status()["a"] == "removed"
    # A removal dated after the run's day is not in force yet.
    later = ledger.run([entry("a"), removed_in_row("b", on="2030-01-01"), removed_in_row("gone")])
    assert ledger.events(later) == [
        ("relisted", "a", None),  # the portal withdrew the removal
        ("modified", "a", None),
        ("modified", "b", None),
    ]
    assert ledger.status()["b"] == "active"


def test_removal_announcements_end_the_entries_they_name(ledger: Ledger) -> None:
    ledger.run([entry("a"), entry("b"), entry("c")], announced=True)
    run = ledger.run(
        [],
        removals=[removal_row("a"), removal_row("b", by_case=False), removal_row("nobody")],
        announced=True,
    )
    assert ledger.events(run) == [
        ("delisted", "a", "published_removal"),
        ("delisted", "b", "published_removal"),
    ]
    assert ledger.status() == {"a": "removed", "b": "removed", "c": "active"}
    table = Event.__table__
    with ledger.engine.connect() as conn:
        evidence = conn.execute(select(table.c.evidence).where(table.c.run_id == run)).scalars()
        assert {e["source_url"] for e in evidence} == {"http://example.test/removal.docx"}
    # Announced entries never disappear; they expire even when no page repeats them.
    assert ledger.events(ledger.run([], n=1, announced=True)) == []
    expiring = ledger.run(
        [entry("d", valid_until="2025-11-23")], announced=True
    )  # day 4: 2025-11-24
    assert ledger.events(expiring) == []
    assert ledger.status()["d"] == "expired"  # already expired when first seen: no event
    ledger.run([entry("e", valid_until="2025-11-25")], announced=True)
    assert ledger.events(ledger.run([], announced=True)) == [("delisted", "e", "expired")]


def test_unhealthy_runs_can_list_and_modify_but_not_delist(ledger: Ledger) -> None:
    ledger.run([entry("a"), entry("b")])
    run = ledger.run([entry("a", fine=9), entry("new")], healthy=False, n=1)
    assert ledger.events(run) == [("listed", "new", None), ("modified", "a", None)]
    assert ledger.status()["b"] == "active"


def test_provenance_changes_are_not_modifications(ledger: Ledger) -> None:
    ledger.run([entry("a")])
    moved = entry("a")
    moved["source_url"] = "http://example.test/elsewhere"
    moved["extra"]["pages"] = [{"url": "http://example.test/other", "sha256": "ff"}]
    assert ledger.events(ledger.run([moved])) == []


def test_history_keeps_one_interval_per_unchanged_version(ledger: Ledger) -> None:
    ledger.run([entry("a")])
    ledger.run([entry("a")])
    ledger.run([entry("a", fine=2)])
    ledger.run([])  # absent: the interval closes
    ledger.run([entry("a", fine=2)])
    table = RecordHistory.__table__
    with ledger.engine.connect() as conn:
        rows = conn.execute(select(table).order_by(table.c.id)).all()
    spans = [(r.first_run_seq, r.last_run_seq, r.data["fine_yuan"]) for r in rows]
    # The version the latest run saw stays open until a run misses it or reads other values.
    assert spans == [(1, 2, 1000), (3, 3, 2), (5, OPEN_SEQ, 2)]


def test_event_ids_are_stable_and_match_between_sql_and_python(ledger: Ledger) -> None:
    run = ledger.run([entry("a")])
    table = Event.__table__
    with ledger.engine.connect() as conn:
        stored = conn.execute(select(table.c.event_id)).scalar()
    assert stored == event_id(run, WARNING, "a", "listed")


def test_run_dates_are_shanghai_calendar_dates() -> None:
    # 2025-11-21 18:00 UTC is already the 22nd in Shanghai.
    from zoneinfo import ZoneInfo

    at = datetime(2025, 11, 21, 18, 0, tzinfo=UTC)
    assert at.astimezone(ZoneInfo("Asia/Shanghai")).date() == date(2025, 11, 22)


def _count_writes(engine: Any) -> Any:
    """SQLite triggers counting every INSERT and UPDATE of the tables detection keeps."""
    from sqlalchemy import text

    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE IF NOT EXISTS writes (tbl TEXT, n INTEGER)"))
        for table in ("records", "entry_state", "record_history"):
            for op in ("INSERT", "UPDATE"):
                conn.execute(
                    text(
                        f"CREATE TRIGGER IF NOT EXISTS count_{op}_{table} AFTER {op} ON {table} "
                        f"BEGIN INSERT INTO writes VALUES ('{table}', 1); END"
                    )
                )

    def writes() -> dict[str, int]:
        with engine.begin() as conn:
            got = dict(conn.execute(text("SELECT tbl, sum(n) FROM writes GROUP BY tbl")).all())
            conn.execute(text("DELETE FROM writes"))
        return got

    return writes


def test_entries_seen_again_unchanged_are_written_nowhere(ledger: Ledger) -> None:
    """The point of the hot state: a run that shows the list unchanged compares each entry
    once and writes no row of records, entry_state or record_history."""
    if ledger.engine.dialect.name != "sqlite":
        pytest.skip("counts row writes with SQLite triggers")
    ledger.run([entry("a"), entry("b"), entry("c")])
    writes = _count_writes(ledger.engine)
    ledger.run([entry("a"), entry("b"), entry("c")])
    assert writes() == {}
    ledger.run([entry("a"), entry("b", fine=9)])  # b modified, c missed (absence 1 of 2)
    got = writes()
    # b: its row (values, then status), its state (then its provenance digest) and a new
    # version (the old one closed); c: its sighting and absence, and its state.
    assert got["records"] == 4 and got["entry_state"] == 3 and got["record_history"] == 3
    ledger.run([entry("a"), entry("b", fine=9)])  # c delisted; a and b unchanged
    got = writes()
    assert got["records"] == 2 and got["entry_state"] == 1 and "record_history" not in got


def test_last_seen_is_the_latest_sighting_without_rewriting(ledger: Ledger) -> None:
    from storage.entities import RECORD_COLUMNS

    ledger.run([entry("a"), entry("b")])
    ledger.run([entry("a"), entry("b")])
    ledger.run([entry("a")])  # b missed
    with ledger.engine.connect() as conn:
        rows = conn.execute(select(*RECORD_COLUMNS)).all()
        raw = dict(
            conn.execute(select(Record.__table__.c.record_key, Record.__table__.c.last_seen)).all()
        )
    seen = {row.record_key: row.last_seen for row in rows}
    assert seen == {"a": DAY + timedelta(days=2), "b": DAY + timedelta(days=1)}
    # Stored: None while the list's latest run saw the entry; the sighting once missed.
    assert raw == {"a": None, "b": DAY + timedelta(days=1)}


def test_a_scoped_run_misses_only_its_own_subjects(ledger: Ledger) -> None:
    """A shard of a watchlist vouches for its subjects only: the other subjects' entries it
    did not read are neither missed nor counted absent."""
    ledger.run([entry("a"), entry("b")])
    for _ in range(3):
        assert ledger.events(ledger.run([entry("a")], scope={WARNING: ["uscc-a"]})) == []
    assert ledger.status() == {"a": "active", "b": "active"}


def test_each_shard_s_first_run_is_its_subjects_baseline(ledger: Ledger) -> None:
    """Two shards of a watchlist: the second shard's first run is its subjects' baseline
    (their entries were there before: not news), not a run of new listings."""

    def shard(keys: list[str], day: int) -> str:
        entries = [entry(key) for key in keys]
        return ledger.run(entries, scope={WARNING: [f"uscc-{key}" for key in keys]}, day=day)

    first, second = shard(["a"], 0), shard(["b"], 0)
    table = Event.__table__
    with ledger.engine.connect() as conn:
        got = conn.execute(select(table.c.run_id, table.c.record_key, table.c.baseline)).all()
    assert sorted(got) == [(first, "a", True), (second, "b", True)]
    assert ledger.events(shard(["b", "c"], 1)) == [("listed", "c", None)]


def test_entries_read_as_stored_are_staged_without_their_record(ledger: Ledger) -> None:
    """Staging keeps the record only where detection may need it (new, other content, other
    provenance); an entry read as stored that expires still raises its event with its name
    and evidence, read from the stored record."""
    ledger.run(
        [entry("same"), entry("fined"), entry("moved"), entry("due", valid_until="2025-11-21")]
    )
    moved = entry("moved") | {"source_url": "http://example.test/elsewhere"}
    run_id = ledger.stage(
        [entry("same"), entry("fined", fine=9), moved, entry("due", valid_until="2025-11-21"),
         entry("new")],
    )  # fmt: skip
    staged = RunRecord.__table__
    with ledger.engine.connect() as conn:
        kept = {
            row.record_key: row.data is not None
            for row in conn.execute(select(staged).where(staged.c.run_id == run_id))
        }
    assert kept == {"same": False, "due": False, "fined": True, "moved": True, "new": True}

    ledger.detect(run_id)
    table = Event.__table__
    with ledger.engine.connect() as conn:
        events = conn.execute(select(table).where(table.c.run_id == run_id)).all()
        stored = conn.execute(
            select(Record.__table__.c.data).where(Record.__table__.c.record_key == "moved")
        ).scalar_one()
    by_key = {(e.event, e.record_key): e for e in events}
    assert set(by_key) == {("listed", "new"), ("modified", "fined"), ("delisted", "due")}
    due = by_key[("delisted", "due")]
    assert (due.entity_name, due.case_number) == ("公司due", "罚[due]号")
    assert due.evidence["source_url"] == "http://example.test/due"
    assert stored["source_url"] == "http://example.test/elsewhere"
    assert ledger.status() == {
        "same": "active", "fined": "active", "moved": "active", "due": "expired", "new": "active"
    }  # fmt: skip


def test_a_store_that_moved_after_staging_is_refused(ledger: Ledger) -> None:
    """An entry staged as stored whose stored record then changed cannot be merged from the
    store: detection refuses the run (nothing written) instead of merging stale values."""
    ledger.run([entry("a", valid_until="2025-11-21"), entry("b")])
    run_id = ledger.stage([entry("a", valid_until="2025-11-21"), entry("b")])
    state = EntryState.__table__
    with ledger.engine.begin() as conn:
        conn.execute(state.update().where(state.c.record_key == "a").values(content_hash="x"))
    before = ledger.status()
    with pytest.raises(StagingOutOfDate, match="'a' was staged as stored"):
        ledger.detect(run_id)
    assert ledger.status() == before
    with ledger.engine.connect() as conn:
        assert (
            conn.execute(select(Event.__table__).where(Event.__table__.c.run_id == run_id)).all()
            == []
        )
