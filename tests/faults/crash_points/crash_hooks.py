"""The statement counter behind ``sitecustomize.py``: see there."""

from __future__ import annotations

import atexit
import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

# Reads change nothing a kill could leave behind, and the conductor polls one (progress)
# as often as time allows: outside ``send`` (where a delivery sits between any two
# statements) only writes are kill points, so every undisturbed run has the same ones.
READS = ("SELECT", "PRAGMA")


def phase() -> str:
    """Which process this is, read at its first statement (``sys.argv`` is complete then)."""
    argv = sys.argv
    if argv and "scrapy" in argv[0]:
        return "fetch"
    if argv[1:3] == ["alerts", "send"]:
        return "send"
    return "conduct"


class Counter:
    def __init__(self, count_dir: str | None, kill_at: str | None, batch: int | None) -> None:
        self.count_dir = count_dir
        self.kill_phase, self.kill_n = None, 0
        if kill_at:
            name, n = kill_at.rsplit(":", 1)
            self.kill_phase, self.kill_n = name, int(n)
        self.batch = batch
        self.phase: str | None = None
        self.points: list[str] = []
        self.fetch_started_at: int | None = None

    def statement(self, text: str) -> None:
        if self.phase is None:
            self.phase = phase()
            if self.phase == "fetch":
                self._count_staging()
        text = " ".join(text.split())
        if self.phase != "send" and text.upper().startswith(READS):
            return
        self.points.append(text[:80])
        if self.phase == self.kill_phase and len(self.points) == self.kill_n:
            os.kill(os.getpid(), signal.SIGKILL)

    def before_execute(self, *args: Any) -> None:
        self.statement(args[2])

    def _count_staging(self) -> None:
        """SQLite staging runs on the driver's cursor, unseen by SQLAlchemy's events: count
        it too, and (``CW_CRASH_BATCH``) write in small batches so a short crawl has many."""
        runlog = sys.modules.get("storage.runlog")
        if runlog is None:
            return
        insert: Callable[..., None] = runlog._insert_records_sqlite

        def counted_insert(conn: Any, rows: list[Any]) -> None:
            self.statement("INSERT INTO run_records (driver executemany)")
            insert(conn, rows)

        runlog._insert_records_sqlite = counted_insert
        if self.batch:
            batch = self.batch

            def maybe_flush(writer: Any) -> None:
                if writer._pending() >= min(writer.batch_size, batch):
                    writer.flush()

            runlog.RunWriter._maybe_flush = maybe_flush

    def child_started(self) -> None:
        if self.fetch_started_at is None:
            self.fetch_started_at = len(self.points)

    def write(self) -> None:
        if not self.count_dir or self.phase is None:
            return
        data = {"phase": self.phase, "points": self.points, "fetch_at": self.fetch_started_at}
        path = Path(self.count_dir) / f"{self.phase}-{os.getpid()}.json"
        path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")


def install(count_dir: str | None, kill_at: str | None, batch: int | None) -> None:
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    counter = Counter(count_dir, kill_at, batch)
    event.listen(Engine, "before_cursor_execute", counter.before_execute)
    atexit.register(counter.write)
    popen_init = subprocess.Popen.__init__

    def noting_popen(self: subprocess.Popen[Any], *args: Any, **kwargs: Any) -> None:
        counter.child_started()
        popen_init(self, *args, **kwargs)

    subprocess.Popen.__init__ = noting_popen  # type: ignore[method-assign]
