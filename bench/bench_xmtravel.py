"""Benchmark the Xiamen pipeline on the shipped cassettes.

Prints (1) detail pages per second for parse + normalise, on the replayed detail pages with
their subject profiles already read, on one core; and (2) wall seconds for full replay runs
(fetch from cassette, archive, parse, normalise, store, detect) of day 1 then day 2 into a
fresh SQLite database.

    python bench/bench_xmtravel.py [--rounds 200]
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import yaml
from scrapy.http import HtmlResponse, Request

from core.items import RawEntry
from core.normalise import content_hash, normalise_entry
from crawlers.sources.xmtravel.spider import XmtravelSpider
from pipeline.run import CrawlSpec, crawl

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "xmtravel"
DAYS = [FIXTURES / "xmtravel-day1.yaml", FIXTURES / "xmtravel-day2.yaml"]


def responses(cassette: Path) -> list[HtmlResponse]:
    out = []
    for item in yaml.safe_load(cassette.read_text(encoding="utf-8"))["interactions"]:
        url = item["request"]["uri"]
        body = item["response"]["body"]["string"]
        body = body if isinstance(body, bytes) else body.encode("utf-8")
        headers = item["response"]["headers"]
        out.append(HtmlResponse(url, body=body, headers=headers, request=Request(url)))
    return out


def parse_normalise_rate(rounds: int) -> tuple[int, float]:
    spider = XmtravelSpider()
    source = spider.source()
    pages = [r for day in DAYS for r in responses(day)]
    for page in pages:
        if "subject/info.html" in page.url:
            list(spider.parse_subject(page, subject_url=page.url))
    details = [p for p in pages if "-detail.html" in p.url]
    kinds = {lst.id: lst for lst in source.lists}
    start = time.perf_counter()
    count = 0
    for _ in range(rounds):
        for page in details:
            list_id = "xmtravel.warning" if "xygs-" in page.url else "xmtravel.good"
            lst = kinds[list_id]
            for item in spider.parse_detail(page, list_id):
                if isinstance(item, RawEntry):
                    record = normalise_entry(
                        item,
                        list_kind=lst.list_kind,
                        record_key_rule=lst.record_key,
                        domain=source.domain,
                        label_overrides=source.label_overrides,
                    )
                    content_hash(record)
            count += 1
    return count, time.perf_counter() - start


def replay_wall_seconds() -> list[float]:
    times = []
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'bench.sqlite'}"
        for day in DAYS:
            start = time.perf_counter()
            crawl(CrawlSpec("xmtravel", mode="replay", cassette=day, delist_after=1), url=url)
            times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=200, help="passes over the detail pages")
    args = parser.parse_args()
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}"
    )
    count, seconds = parse_normalise_rate(args.rounds)
    print(
        f"parse+normalise: {count} detail pages in {seconds:.2f} s = "
        f"{count / seconds:,.0f} detail pages/s (one core)"
    )
    day1, day2 = replay_wall_seconds()
    print(f"full replay run, day 1: {day1:.2f} s wall")
    print(f"full replay run, day 2: {day2:.2f} s wall")


if __name__ == "__main__":
    main()
