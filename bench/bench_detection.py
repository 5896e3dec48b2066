"""Benchmark change detection on a large synthetic list, against two anchors.

For each database (SQLite in a temporary file; PostgreSQL in a database of its own on the
server of ``DATABASE_URL``, default ``postgresql://postgres@127.0.0.1:5432/test``), in a child
process of its own so that its peak memory is its own:

* run 1 stages N entries and detects (the baseline), run 2 stages the same list with 1%
  modified, 1% gone and 1% new and detects, as ``pipeline.finalize`` would: the finish checks
  (counts, fill rates, repeated keys, entries seen again, changed entries),
  then ``storage.lifecycle.apply_run``;
* it prints seconds for staging, checks and detection, entries per second and the peak RSS
  of the process (the database server's own memory is not in it).

Anchors, on the same keys of run 1 and run 2: DuckDB's ``EXCEPT`` both ways (new and gone keys)
and ``comm -3`` over the two key files sorted by ``sort``; detection's ratio to each is printed.

    python bench/bench_detection.py --entries 1000000 10000000 [--databases sqlite postgresql]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

LIST = "xmtravel.warning"
START = datetime(2025, 11, 21, 2, 0, tzinfo=UTC)
STEP = 100  # 1 in STEP: gone, modified, and as many new
DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/test"
FILL_FIELDS = ["entity_name", "case_number", "fine_yuan", "valid_until"]  # as lists declare


def key(i: int) -> str:
    return f"厦文旅罚(2025){i}号"


def entry(i: int, fine: int) -> dict[str, Any]:
    return {
        "source": "xmtravel",
        "list": LIST,
        "record_key": key(i),
        "entity_id": f"xmtravel-n{i:032x}",
        "entity_name": f"厦门测试{i}旅行社有限公司",
        "case_number": key(i),
        "title": None,
        "uscc": None,
        "fine_yuan": fine,
        "valid_until": "2027-01-01",
        "source_url": f"http://credit.xmtravel.gov.cn/detail?id={i}",
        "raw_sha256": f"{i:064x}",
        "extra": {},
    }


def day1(n: int) -> Iterator[int]:
    return iter(range(n))


def day2(n: int) -> Iterator[int]:
    """Run 2's entries: every STEP-th gone, the one after it modified, n/STEP new."""
    yield from (i for i in range(n) if i % STEP != 0)
    yield from range(n, n + n // STEP)


def fine_on_day2(i: int) -> int:
    return 2000 if i % STEP == 1 else 1000


# -- one database, in its own process ---------------------------------------------------------


def load_baseline(url: str, run_id: str, at: datetime) -> None:
    """``--quick-baseline``: store run 1's staged entries as a baseline run would leave them
    (records, hot state, open history intervals, the list's latest run) with a few INSERT …
    SELECT, without its events. Only the second run is what the benchmark measures; at ten
    million the baseline through ``apply_run`` (ten million ``listed`` events) takes many
    minutes and, on SQLite, a write-ahead log of tens of GB in one transaction."""
    from sqlalchemy import insert, literal, null, select

    from storage.engine import get_engine
    from storage.lifecycle import HISTORY, LIST_STATE, RECORDS, STAGED, STATE
    from storage.models import OPEN_SEQ

    staged, rec = STAGED.c, RECORDS.c
    with get_engine(url).begin() as conn:
        conn.execute(
            insert(RECORDS).from_select(
                ["source", "list", "record_key", "entity_id", "entity_name", "uscc",
                 "case_number", "title", "valid_until", "status", "first_seen", "last_seen",
                 "absent_runs", "content_hash", "last_run_id", "data"],
                select(
                    staged.source, staged.list, staged.record_key, staged.entity_id,
                    staged.data["entity_name"].as_string(), staged.data["uscc"].as_string(),
                    staged.data["case_number"].as_string(), staged.data["title"].as_string(),
                    staged.valid_until, literal("active"), literal(at, rec.first_seen.type),
                    null(), literal(0), staged.content_hash, staged.run_id, staged.data,
                ).where(staged.run_id == run_id),
            )
        )  # fmt: skip
        conn.execute(
            insert(STATE).from_select(
                ["list", "record_key", "record_id", "content_hash", "prov_hash", "status",
                 "absent_runs", "last_seen_seq"],
                select(
                    rec.list, rec.record_key, rec.id, rec.content_hash, staged.prov_hash,
                    rec.status, literal(0), null(),
                ).join(
                    STAGED,
                    (staged.run_id == run_id)
                    & (staged.list == rec.list)
                    & (staged.record_key == rec.record_key),
                ),
            )
        )  # fmt: skip
        conn.execute(
            insert(HISTORY).from_select(
                ["record_id", "source", "list", "first_run_seq", "last_run_seq", "first_at",
                 "last_at", "status", "content_hash", "data"],
                select(
                    rec.id, rec.source, rec.list, literal(1), literal(OPEN_SEQ),
                    literal(at, HISTORY.c.first_at.type), literal(at, HISTORY.c.last_at.type),
                    rec.status, rec.content_hash, rec.data,
                ),
            )
        )  # fmt: skip
        conn.execute(
            insert(LIST_STATE).values(
                list=LIST, source="xmtravel", last_seq=1, last_run_id=run_id, last_at=at
            )
        )
        conn.execute(STAGED.delete())


def one_run(
    url: str, entries: Iterator[dict[str, Any]], day: int, *, quick: bool = False
) -> dict[str, float]:
    from core.normalise import content_hash
    from core.registry import get_source
    from storage.engine import get_engine
    from storage.lifecycle import RunDetection, apply_run
    from storage.runlog import RunWriter
    from storage.runs import (
        changed_entries,
        create_run,
        get_run,
        repeated_keys,
        seen_again_counts,
        staged_counts,
        staged_fill_rates,
    )

    engine = get_engine(url)
    run_id = create_run(
        engine, get_source("xmtravel"), mode="replay", cassette=None, delist_after=1
    )
    # Staging is the writer's time alone: making the records and their content hashes is
    # the crawler's normalising work, timed apart as "producing".
    writer = RunWriter(engine, run_id, batch_size=20_000)
    staged, producing, staging = 0, 0.0, 0.0
    while True:
        start = time.perf_counter()
        record = next(entries, None)
        digest = content_hash(record) if record is not None else ""
        middle = time.perf_counter()
        producing += middle - start
        if record is None:
            break
        writer.add_record(record, digest)
        staged += 1
        staging += time.perf_counter() - middle
    start = time.perf_counter()
    writer.flush()
    staging += time.perf_counter() - start
    times = {"entries": staged, "producing": producing, "staging": staging}
    at = START + timedelta(days=day)
    if quick:
        start = time.perf_counter()
        load_baseline(url, run_id, at)
        times.update(checks=0.0, detection=time.perf_counter() - start, changed=0)
        times["events"] = {"baseline loaded by SQL, no events": 0}  # type: ignore[assignment]
        return times
    start = time.perf_counter()
    with engine.begin() as conn:
        staged_counts(conn, run_id)
        staged_fill_rates(conn, run_id, FILL_FIELDS)
        repeated_keys(conn, run_id)
        seen_again_counts(conn, run_id)
        changed = sum(1 for _ in changed_entries(conn, run_id, page=10_000))
    times["checks"] = time.perf_counter() - start
    start = time.perf_counter()
    with engine.begin() as conn:
        counts = apply_run(
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
    times["detection"] = time.perf_counter() - start
    times["changed"] = changed
    times["events"] = dict(counts)  # type: ignore[assignment]
    return times


def measure(database: str, n: int, quick: bool = False) -> dict[str, Any]:
    """Both runs on a fresh database; returns the timings and the peak RSS."""
    from storage.engine import get_engine, upgrade

    with tempfile.TemporaryDirectory() as tmp:
        if database == "sqlite":
            url, drop = f"sqlite:///{Path(tmp) / 'bench.sqlite'}", None
        else:
            url, drop = _fresh_postgres(os.environ.get("DATABASE_URL") or DEFAULT_PG)
        try:
            upgrade(url)
            first = one_run(url, (entry(i, 1000) for i in day1(n)), 0, quick=quick)
            second = one_run(url, (entry(i, fine_on_day2(i)) for i in day2(n)), 1)
        finally:
            get_engine(url).dispose()
            if drop:
                drop()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"database": database, "n": n, "run1": first, "run2": second, "peak_rss": peak}


def _fresh_postgres(server_url: str) -> tuple[str, Any]:
    import psycopg

    name = f"cw_bench_{os.getpid()}"
    plain = server_url.replace("postgresql+psycopg://", "postgresql://", 1)
    with psycopg.connect(plain, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name}")
        conn.execute(f"CREATE DATABASE {name}")
    base = plain.rsplit("/", 1)[0]

    def drop() -> None:
        with psycopg.connect(plain, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    return f"{base.replace('postgresql://', 'postgresql+psycopg://', 1)}/{name}", drop


# -- anchors ---------------------------------------------------------------------------------


def duckdb_except(n: int) -> float:
    """Seconds for DuckDB to find the new and the gone keys with ``EXCEPT`` (tables built
    first, not timed)."""
    import duckdb

    con = duckdb.connect()
    gone, new = STEP, n // STEP
    con.execute(
        "CREATE TABLE a AS SELECT '厦文旅罚(2025)' || i || '号' AS k FROM range(?) t(i)", [n]
    )
    con.execute(
        "CREATE TABLE b AS SELECT '厦文旅罚(2025)' || i || '号' AS k FROM range(?) t(i) "
        "WHERE i % ? <> 0 OR i >= ?",
        [n + new, gone, n],
    )
    start = time.perf_counter()
    except_ = "SELECT count(*) FROM (SELECT k FROM {} EXCEPT SELECT k FROM {})"
    added = con.execute(except_.format("b", "a")).fetchone()
    removed = con.execute(except_.format("a", "b")).fetchone()
    seconds = time.perf_counter() - start
    assert added and removed and added[0] == new and removed[0] == len(range(0, n, STEP))
    return seconds


def sort_comm(n: int, tmp: Path) -> tuple[float, float]:
    """Seconds for ``sort`` of the two key files and for ``comm -3`` of the sorted files."""
    files = []
    for name, keys in (("a", day1(n)), ("b", day2(n))):
        path = tmp / name
        with path.open("w", encoding="utf-8") as out:
            for i in keys:
                out.write(key(i) + "\n")
        files.append(path)
    env = {**os.environ, "LC_ALL": "C"}
    start = time.perf_counter()
    for path in files:
        subprocess.run(["sort", "-o", f"{path}.sorted", str(path)], check=True, env=env)
    sorted_at = time.perf_counter()
    with open(os.devnull, "w") as sink:
        subprocess.run(
            ["comm", "-3", f"{files[0]}.sorted", f"{files[1]}.sorted"],
            check=True,
            env=env,
            stdout=sink,
        )
    return sorted_at - start, time.perf_counter() - sorted_at


# -- report ----------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, nargs="+", default=[1_000_000])
    parser.add_argument("--databases", nargs="+", default=["sqlite", "postgresql"])
    parser.add_argument(
        "--quick-baseline",
        action="store_true",
        help="load run 1 by SQL (no events) instead of through detection; run 2 is measured",
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        database, n = args.child.split(":")
        print(json.dumps(measure(database, int(n), args.quick_baseline)))
        return
    rows = []
    for n in args.entries:
        with tempfile.TemporaryDirectory() as tmp:
            anchor = duckdb_except(n)
            sorting, comm = sort_comm(n, Path(tmp))
        print(
            f"{n:,} entries: anchors DuckDB EXCEPT {anchor:.2f} s, sort {sorting:.2f} s + "
            f"comm {comm:.2f} s",
            flush=True,
        )
        for database in args.databases:
            quick = ["--quick-baseline"] if args.quick_baseline else []
            child = subprocess.run(
                [sys.executable, __file__, "--child", f"{database}:{n}", *quick],
                check=True,
                capture_output=True,
                text=True,
            )
            result = json.loads(child.stdout.strip().splitlines()[-1])
            rows.append((result, anchor, sorting + comm))
            print(_line(result, anchor, sorting + comm), flush=True)
    print()
    print(_table(rows))


def _line(result: dict[str, Any], anchor: float, comm: float) -> str:
    out = []
    for name in ("run1", "run2"):
        r = result[name]
        total = r["staging"] + r["checks"] + r["detection"]
        out.append(
            f"  {result['database']} {name}: {r['entries']:,} produced {r['producing']:.1f} s, "
            f"staged {r['staging']:.1f} s, "
            f"checks {r['checks']:.1f} s, detection {r['detection']:.1f} s "
            f"({r['entries'] / r['detection']:,.0f}/s), total {total:.1f} s; events {r['events']}"
        )
    out.append(f"  {result['database']}: peak RSS {result['peak_rss'] / 2**20:,.0f} MiB")
    return "\n".join(out)


def _table(rows: list[tuple[dict[str, Any], float, float]]) -> str:
    """The README's table: run 2 (the 1% changes) per database and size."""
    head = (
        "| entries | database | staging | checks | detection | detection entries/s | "
        "stage+check+detect | peak RSS | ÷ DuckDB EXCEPT | ÷ sort+comm |\n"
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|"
    )
    lines = [head]
    for result, anchor, comm in rows:
        r = result["run2"]
        total = r["staging"] + r["checks"] + r["detection"]
        lines.append(
            f"| {result['n']:,} | {result['database']} | {r['staging']:.1f} s | "
            f"{r['checks']:.1f} s | {r['detection']:.1f} s | "
            f"{r['entries'] / r['detection']:,.0f} | {total:.1f} s | "
            f"{result['peak_rss'] / 2**20:,.0f} MiB | {r['detection'] / anchor:.0f}× | "
            f"{r['detection'] / comm:.0f}× |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
