"""Benchmark change detection (storage.lifecycle.apply_run) on a large synthetic list.

Run 1 stages N entries (the baseline); run 2 stages the same list with 1% modified, 1% gone
and 1% new, then detection runs. Prints staging and detection seconds and entries/s, on
SQLite by default or on the database in DATABASE_URL.

    python bench/bench_detection.py [--entries 200000]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from core.normalise import content_hash
from core.registry import get_source
from storage.engine import get_engine, upgrade
from storage.lifecycle import RunDetection, apply_run
from storage.models import Event
from storage.runlog import RunWriter
from storage.runs import create_run, get_run

LIST = "xmtravel.warning"
START = datetime(2025, 11, 21, 2, 0, tzinfo=UTC)


def entry(i: int, fine: int) -> dict[str, Any]:
    key = f"厦文旅罚(2025){i}号"
    return {
        "source": "xmtravel",
        "list": LIST,
        "record_key": key,
        "entity_id": f"xmtravel-n{i:032x}",
        "entity_name": f"厦门测试{i}旅行社有限公司",
        "case_number": key,
        "title": None,
        "uscc": None,
        "fine_yuan": fine,
        "valid_until": "2027-01-01",
        "source_url": f"http://credit.xmtravel.gov.cn/detail?id={i}",
        "raw_sha256": f"{i:064x}",
        "extra": {},
    }


def one_run(url: str, entries: list[dict[str, Any]], day: int) -> tuple[float, float]:
    engine = get_engine(url)
    run_id = create_run(
        engine, get_source("xmtravel"), mode="replay", cassette=None, delist_after=1
    )
    start = time.perf_counter()
    writer = RunWriter(engine, run_id, batch_size=5000)
    for e in entries:
        writer.add_record(e, content_hash(e))
    writer.flush()
    staged = time.perf_counter() - start
    at = START + timedelta(days=day)
    start = time.perf_counter()
    with engine.begin() as conn:
        apply_run(
            conn,
            RunDetection(
                run_id=run_id,
                source="xmtravel",
                seq=get_run(conn, run_id).seq,
                at=at,
                run_date=(at + timedelta(hours=8)).date(),
                lists=[LIST],
                healthy={LIST},
                delist_after=1,
            ),
        )
    return staged, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=200_000)
    args = parser.parse_args()
    n = args.entries
    with tempfile.TemporaryDirectory() as tmp:
        url = os.environ.get("DATABASE_URL") or f"sqlite:///{Path(tmp) / 'bench.sqlite'}"
        upgrade(url)
        print(f"database: {get_engine(url).dialect.name}, {n:,} entries")
        day1 = [entry(i, 1000) for i in range(n)]
        staged, detected = one_run(url, day1, 0)
        print(
            f"run 1 (baseline): staged {staged:.1f} s, detection {detected:.1f} s "
            f"= {n / detected:,.0f} entries/s"
        )
        step = 100
        day2 = [entry(i, 2000 if i % step == 1 else 1000) for i in range(n) if i % step != 0] + [
            entry(n + i, 1000) for i in range(n // step)
        ]
        staged, detected = one_run(url, day2, 1)
        with get_engine(url).connect() as conn:
            table = Event.__table__
            kinds = dict(
                conn.execute(
                    select(table.c.event, func.count())
                    .where(table.c.run_id == "xmtravel:2")
                    .group_by(table.c.event)
                ).all()
            )
        print(
            f"run 2 (1% new, 1% modified, 1% gone): staged {staged:.1f} s, detection "
            f"{detected:.1f} s = {len(day2) / detected:,.0f} entries/s; events {kinds}"
        )


if __name__ == "__main__":
    main()
