"""Benchmark a Parquet snapshot of a large synthetic list (issue 7: 1,000,000 records in
under 30 s and under 1 GB).

Set-up (not timed): one run stores N synthetic records of ``xmtravel.warning`` through the
real path (staging, change detection, record history) into a fresh SQLite file, or into the
database in DATABASE_URL. Then a child process writes the snapshot with
``export.snapshots.write_snapshot`` (as-of reconstruction, Parquet in row groups, manifest
with sha256): the benchmark prints its wall seconds, records/s and peak resident memory.

    python bench/bench_snapshot.py [--records 1000000] [--format parquet]
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
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from core.normalise import content_hash
from core.registry import get_source
from storage.engine import get_engine, upgrade
from storage.lifecycle import RunDetection, apply_run
from storage.runlog import RunWriter
from storage.runs import create_run, finish_run, get_run, store_health

LIST = "xmtravel.warning"
AT = datetime(2025, 11, 21, 2, 0, tzinfo=UTC)
REASONS = (
    "导游擅自变更旅游行程或者拒绝履行旅游合同",
    "未与旅游者签订书面旅游合同",
    "指定具体购物场所",
)


def record(i: int) -> dict[str, Any]:
    """A full schema record, varied enough that Parquet cannot compress it to nothing."""
    key = f"厦文旅罚(2025){i}号"
    return {
        "source": "xmtravel",
        "list": LIST,
        "list_kind": "warning",
        "record_key": key,
        "entity_id": f"xmtravel-n{i:032x}",
        "entity_name": f"厦门测试{i}旅行社有限公司",
        "entity_name_key": f"厦门测试{i}旅行社有限公司",
        "entity_type": "company",
        "uscc": None,
        "uscc_raw": None,
        "uscc_valid": None,
        "id_number_masked": None,
        "legal_representative": f"张{i % 997}",
        "registration_no": f"L-FJ-{i:08d}",
        "region_code": "350203",
        "case_number": f"厦文旅罚〔2025〕{i}号",
        "case_number_key": key,
        "title": None,
        "reason": REASONS[i % len(REASONS)],
        "reason_category": "itinerary",
        "basis": "《中华人民共和国旅游法》第一百条",
        "measure": f"罚款人民币{1000 + i % 50000}元",
        "penalty_types": ["fine"],
        "fine_yuan": 1000 + i % 50000,
        "confiscated_yuan": None if i % 3 else i % 5000,
        "authority": "厦门市文化和旅游局",
        "decided_on": (datetime(2024, 1, 1) + timedelta(days=i % 700)).date().isoformat(),
        "published_on": None,
        "valid_until": "2027-01-01",
        "source_url": f"http://credit.xmtravel.gov.cn/detail?id={i}",
        "raw_sha256": f"{i:064x}",
        "extra": {"处罚类别": "罚款", "序号": str(i)},
    }


def store(url: str, n: int) -> float:
    """One healthy run of ``n`` records; returns its seconds."""
    start = time.perf_counter()
    engine = get_engine(url)
    run_id = create_run(
        engine, get_source("xmtravel"), mode="replay", cassette=None, delist_after=1
    )
    writer = RunWriter(engine, run_id, batch_size=5000)
    for i in range(n):
        data = record(i)
        writer.add_record(data, content_hash(data))
    writer.flush()
    with engine.begin() as conn:
        apply_run(
            conn,
            RunDetection(
                run_id=run_id,
                source="xmtravel",
                seq=get_run(conn, run_id).seq,
                at=AT,
                run_date=(AT + timedelta(hours=8)).date(),
                lists=[LIST],
                healthy={LIST},
                delist_after=1,
            ),
        )
        store_health(
            conn,
            run_id,
            [{"list": LIST, "health": "healthy", "pages": 1, "rows_seen": n, "records": n}],
        )
        finish_run(conn, run_id, state="healthy", started_at=AT, ended_at=AT, records=n)
    return time.perf_counter() - start


CHILD = """
import json, sys, time
from pathlib import Path
from storage.engine import get_engine
from export.snapshots import write_snapshot
url, out, fmt = sys.argv[1:4]
start = time.perf_counter()
with get_engine(url).connect() as conn:
    manifest = write_snapshot(conn, Path(out), sources=["xmtravel"], lists=["xmtravel.warning"],
                              fmt=fmt)
print(json.dumps({"seconds": time.perf_counter() - start, "manifest": manifest}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--format", default="parquet")
    parser.add_argument(
        "--keep",
        type=Path,
        help="SQLite file to keep the stored records in; reused when it exists, so the "
        "writer can be timed again without the set-up",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = args.keep or Path(tmp) / "bench.sqlite"
        reuse = args.keep is not None and args.keep.exists()
        url = os.environ.get("DATABASE_URL") or f"sqlite:///{path}"
        upgrade(url)
        if reuse:
            print(f"reusing the records stored in {path}", flush=True)
        else:
            print(f"storing {args.records:,} records (set-up, not timed)…", flush=True)
            print(f"  stored in {store(url, args.records):.1f} s")
        out = Path(tmp) / "snapshot"
        child = subprocess.run(
            [sys.executable, "-c", CHILD, url, str(out), args.format],
            check=True,
            capture_output=True,
            text=True,
        )
        peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        result = json.loads(child.stdout.strip().splitlines()[-1])
        seconds = result["seconds"]
        rows = result["manifest"]["sources"][0]["lists"][0]["rows"]
        size = sum(item["bytes"] for item in result["manifest"]["files"])
        print(f"snapshot ({args.format}) of {rows:,} records: {seconds:.1f} s wall in the writer")
        print(f"  {rows / seconds:,.0f} records/s; files {size / 2**20:.1f} MiB")
        print(f"  peak resident memory of the snapshot process: {peak_kib / 1024:.0f} MiB")
        print("  target: < 30 s and < 1024 MiB for 1,000,000 records")


if __name__ == "__main__":
    main()
