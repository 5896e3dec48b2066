"""Running one crawl of a source: create the run, fetch in a child process, finish it here.

The fetch runs in its own process (``python -m scrapy crawl``): Twisted's reactor cannot
restart, so this keeps ``crawl`` callable any number of times from one program (tests, the
scheduler), and a crawl that dies cannot take its caller down. The child records what it
fetched (archive, fetch log, staging) and marks the run ``fetched``; after it exits, this
process (the conductor) runs the finish step (``pipeline/finalize.py``: health, detection,
alerts). A child that exits without marking the run fails it; a conductor that dies after
the child marked it leaves it ``fetched``, and the next crawl of the source (or the
scheduler's start-up sweep) finishes it.

Shards. ``CrawlSpec.shard`` (``K/N``) makes the run one shard of the watchlist
(``crawlers.watchlist.Shard``): this process reads the watchlist (a file, or ``db:`` as it
stands now), keeps the shard's subjects and records them on the run (the shard in its
summary from its first moment), and its child watches only those, from a file of their
own. Shard 1 also reads the source's list-mode lists (they have no subjects to split); the
others read only the watch lists. Every shard is a crawl process of its own, so each has
the source's whole politeness budget (download delay, concurrency, ``session.min_interval``):
N shards ask the portal N times as often, which is why ``watch.max_shards`` caps N.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from core.health import VOID
from core.registry import SourceDef, get_source
from crawlers.captcha import MODES as CAPTCHA_MODES
from crawlers.watchlist import (
    Shard,
    WatchlistError,
    WatchSubject,
    load_watchlist,
    watch_lists,
    write_watchlist,
)
from pipeline.finalize import finish_fetched, finish_left_runs
from pipeline.preflight import Unreachable, cassette_problem, nothing_played, unreachable
from storage.archive import responses_of_run
from storage.engine import database_url, get_engine, require_writable, upgrade
from storage.runlog import RunWriter
from storage.runs import (
    create_run,
    fail_run,
    fetch_rows,
    get_run,
    mark_fetched,
    set_clock,
    set_error,
    set_pid,
)
from storage.shards import SHARD

MODES = ("live", "replay", "record")
# Crash tests: the conductor stops itself (SIGSTOP) once the child has fetched, before the
# finish step, so a test can kill it at exactly that point.
STOP_AFTER_FETCH = "CREDITWATCH_TEST_STOP_AFTER_FETCH"


class CrawlError(RuntimeError):
    pass


class NothingToCrawl(CrawlError):
    """A shard with nothing to read (no subject of the watchlist falls in it, and it is not
    the shard that reads the list-mode lists): no run is made."""


@dataclass(frozen=True)
class CrawlSpec:
    source: str
    mode: str = "live"
    cassette: Path | None = None
    delist_after: int | None = None  # None: the source's (registry), 2 unless declared
    log_level: str = "WARNING"
    settings: dict[str, str] = field(default_factory=dict)  # Scrapy overrides, e.g. for tests
    watchlist: str | None = None  # watch mode: a file of names/USCCs, or "db:"
    captcha: str | None = None  # manual · command · none · module:factory
    captcha_command: str | None = None  # the program of the `command` solver
    interactive: bool = False  # a person at a terminal can answer a `manual` captcha
    shard: str | None = None  # "K/N": only the K-th of N parts of the watchlist

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise CrawlError(f"mode must be one of {MODES}")
        if self.mode != "live" and self.cassette is None:
            raise CrawlError(f"{self.mode} needs a cassette path")
        if self.mode == "replay" and not self.cassette.is_file():  # type: ignore[union-attr]
            raise CrawlError(f"cassette {self.cassette} does not exist")
        if self.delist_after is not None and self.delist_after < 1:
            raise CrawlError("--delist-after must be at least 1")
        if self.watchlist and self.watchlist != "db:" and not Path(self.watchlist).is_file():
            raise CrawlError(f"watchlist {self.watchlist} does not exist")
        if self.captcha and self.captcha not in CAPTCHA_MODES and ":" not in self.captcha:
            raise CrawlError(
                f"--captcha is one of {', '.join(CAPTCHA_MODES)} or module:factory, "
                f"not {self.captcha!r}"
            )
        if self.captcha == "command" and not self.captcha_command:
            raise CrawlError("--captcha command needs --captcha-command PROGRAM")
        if self.shard is not None:
            self.parsed_shard()
            if not self.watchlist:
                raise CrawlError("--shard splits the watchlist: --watchlist is needed")

    def parsed_shard(self) -> Shard | None:
        try:
            return Shard.parse(self.shard) if self.shard is not None else None
        except WatchlistError as exc:
            raise CrawlError(str(exc)) from None


@dataclass(frozen=True)
class ShardPlan:
    """What one shard run reads: its lists and its watched subjects."""

    shard: Shard
    watchlist: str
    lists: list[str]
    subjects: list[tuple[str | None, str | None]]  # (name, USCC)
    of_total: int  # subjects on the whole watchlist

    def record(self) -> dict[str, Any]:
        """The run's ``summary.shard`` (``watched`` is dropped once the run is finished)."""
        return {
            "index": self.shard.index,
            "count": self.shard.count,
            "watchlist": self.watchlist,
            "lists": self.lists,
            "subjects": len(self.subjects),
            "of_subjects": self.of_total,
            "watched": [list(pair) for pair in self.subjects],
        }


def plan_shard(engine: Any, source: SourceDef, spec: CrawlSpec, shard: Shard) -> ShardPlan:
    """The shard's subjects (the watchlist read now: a file, or ``db:`` as stored) and
    lists. Shard 1 also reads the list-mode lists, and says so when the whole watchlist is
    empty (as an unsharded run would); another shard without a subject reads nothing."""
    watched = watch_lists(source)
    if not watched:
        raise CrawlError(f"{source.id} has no watch list: --shard splits a watchlist")
    if shard.count > source.max_shards:
        raise CrawlError(
            f"{source.id} allows at most {source.max_shards} shards (watch.max_shards): each "
            "one asks the portal at the source's full politeness rate"
        )
    try:
        everyone = load_watchlist(spec.watchlist, engine, source.id)
    except WatchlistError as exc:
        raise CrawlError(str(exc)) from None
    mine = shard.select(everyone)
    lists = [lid for lid in source.list_ids if lid not in watched] if shard.index == 1 else []
    if mine or (not everyone and shard.index == 1):
        lists += watched
    if not lists:
        raise NothingToCrawl(
            f"{source.id} shard {shard}: none of the watchlist's {len(everyone)} subject(s) "
            "falls in it: nothing to crawl"
        )
    return ShardPlan(
        shard=shard,
        watchlist=spec.watchlist or "",
        lists=lists,
        subjects=[(s.name, s.uscc) for s in mine],
        of_total=len(everyone),
    )


def scrapy_command(spec: CrawlSpec, run_id: str) -> list[str]:
    cmd = [
        sys.executable, "-m", "scrapy", "crawl", spec.source,
        "-s", f"CW_RUN_ID={run_id}",
        "-s", f"CW_DELIST_AFTER={spec.delist_after}",
        "-s", f"LOG_LEVEL={spec.log_level}",
    ]  # fmt: skip
    if spec.cassette is not None:
        cmd += ["-s", f"CW_CASSETTE={spec.cassette.resolve()}"]
        cmd += ["-s", f"CW_CASSETTE_MODE={spec.mode}"]
    if spec.watchlist:
        watchlist = spec.watchlist
        if watchlist != "db:":
            watchlist = str(Path(watchlist).resolve())
        cmd += ["-s", f"CW_WATCHLIST={watchlist}"]
    if spec.captcha:
        cmd += ["-s", f"CW_CAPTCHA={spec.captcha}"]
    if spec.captcha_command:
        cmd += ["-s", f"CW_CAPTCHA_COMMAND={spec.captcha_command}"]
    if spec.interactive:
        cmd += ["-s", "CW_INTERACTIVE=1"]
    for name, value in spec.settings.items():
        cmd += ["-s", f"{name}={value}"]
    return cmd


def crawl(
    spec: CrawlSpec,
    *,
    url: str | None = None,
    progress: Callable[[int], None] | None = None,
) -> str:
    """One run of ``spec.source``: fetch, archive, normalise, store, detect. Returns its id.

    Runs of the source whose process is gone are closed first (``finish_left_runs``), so
    the runs of a source are finished in the order they were made. A cassette that cannot be
    the source's raises ``CrawlError`` before any run is made; a live crawl whose host does
    not answer, and a replay that nothing in its cassette answered, end at once
    (``pipeline.preflight``)."""
    url = url or database_url()
    require_writable(url)
    source = get_source(spec.source)
    if spec.mode == "replay":
        problem = cassette_problem(spec.cassette, source)  # type: ignore[arg-type]
        if problem is not None:
            raise CrawlError(problem)
    if spec.delist_after is None:
        spec = replace(spec, delist_after=source.delist_after)
    upgrade(url)
    engine = get_engine(url)
    # A run its process left `running` (killed, machine rebooted) would stay so for ever, and
    # one left `fetched` would never be finished.
    finish_left_runs(engine, source=source.id, why="marked aborted before this run")
    shard = spec.parsed_shard()
    plan = plan_shard(engine, source, spec, shard) if shard is not None else None
    cassette = str(spec.cassette) if spec.cassette else None
    delist_after = spec.delist_after if spec.delist_after is not None else source.delist_after
    run_id = create_run(
        engine,
        source,
        mode=spec.mode,
        cassette=cassette,
        delist_after=delist_after,
        summary={SHARD: plan.record()} if plan is not None else None,
    )
    if spec.mode != "replay":
        down = unreachable(source.base_url)
        if down is not None:
            _end_unreachable(engine, run_id, source.base_url, down)
            return run_id
    env = {**os.environ, "DATABASE_URL": url, "SCRAPY_SETTINGS_MODULE": "crawlers.settings"}
    # A replay's log is held until the child ends: a void run replaces it with one line.
    hold = spec.mode == "replay" and _quiet(spec)
    with tempfile.TemporaryFile() as log, tempfile.TemporaryDirectory() as scratch:
        child_spec = spec if plan is None else _shard_spec(spec, plan, Path(scratch))
        child = subprocess.Popen(
            scrapy_command(child_spec, run_id), env=env, stderr=log if hold else None
        )
        set_pid(engine, run_id, child.pid)
        while True:  # returns the moment the child exits; reports progress meanwhile
            try:
                child.wait(timeout=None if progress is None else 0.3)
                break
            except subprocess.TimeoutExpired:
                if progress is not None:
                    progress(_responses_so_far(url, run_id))
        with engine.connect() as conn:
            state = get_run(conn, run_id).state
            fetches = fetch_rows(conn, run_id) if spec.mode == "replay" else []
        if state == "fetched" and nothing_played(fetches):
            _end_void(engine, run_id, spec.cassette, fetches)  # type: ignore[arg-type]
            state = VOID
        elif hold:
            log.seek(0)
            sys.stderr.flush()
            shutil.copyfileobj(log, getattr(sys.stderr, "buffer", None) or _TextSink())
    if state == "fetched":
        # The run is this process's now: a sweep elsewhere sees it alive until it is finished.
        set_pid(engine, run_id, os.getpid())
        if os.environ.get(STOP_AFTER_FETCH):
            os.kill(os.getpid(), signal.SIGSTOP)
        finish_fetched(engine, run_id)
    elif state == "running":
        # Status 0 with the run still open is Scrapy's graceful stop (SIGTERM) arriving
        # before the spider opened: stopped like a kill, not broken like a crash.
        code = child.returncode
        if code < 0:
            state, reason = "aborted", f"killed by signal {-code}"
        elif code == 0:
            state, reason = "aborted", "stopped before its spider opened (see its log)"
        else:
            state, reason = "failed", f"exited with status {code} before finishing the run"
        fail_run(engine, run_id, state, f"crawl process {reason}", datetime.now(UTC))
    return run_id


def _shard_spec(spec: CrawlSpec, plan: ShardPlan, folder: Path) -> CrawlSpec:
    """The child's spec of a shard run: its subjects as a watchlist file of their own, and
    the lists it reads (``CW_LISTS``)."""
    path = folder / "watchlist.txt"
    write_watchlist(path, [WatchSubject(name=name, uscc=code) for name, code in plan.subjects])
    settings = {**spec.settings, "CW_SHARD": str(plan.shard), "CW_LISTS": ",".join(plan.lists)}
    return replace(spec, watchlist=str(path), settings=settings)


def _responses_so_far(url: str, run_id: str) -> int:
    with get_engine(url).connect() as conn:
        return responses_of_run(conn, run_id)


def _quiet(spec: CrawlSpec) -> bool:
    return spec.log_level.upper() not in ("DEBUG", "INFO")


class _TextSink:
    """``sys.stderr`` without a byte buffer (a test's capture): bytes written as text."""

    def write(self, data: bytes) -> int:
        return sys.stderr.write(data.decode("utf-8", "replace"))


def _end_unreachable(engine: Any, run_id: str, base_url: str, down: Unreachable) -> None:
    """The run's one fetch is the first hop that did not answer; the finish step judges it
    as any other run (its lists failed: no page was read) and queues its health alerts."""
    set_clock(engine, run_id, datetime.now(UTC), "wall")  # as the fetcher would have
    writer = RunWriter(engine, run_id)
    writer.add_fetch(url=base_url, outcome=down.outcome, list_id=None, detail=down.detail)
    writer.flush()
    mark_fetched(engine, run_id)
    finish_fetched(engine, run_id)
    set_error(engine, run_id, down.detail)


def _end_void(engine: Any, run_id: str, cassette: Path, fetches: Sequence[Any]) -> None:
    """Nothing in the cassette answered the run: it says nothing of the source. The run ends
    ``void`` (``health`` does not count it), saying what it asked first."""
    asked = [row.url for row in fetches if urlsplit(row.url).path != "/robots.txt"]
    fail_run(
        engine,
        run_id,
        VOID,
        f"the cassette {cassette} answered none of the run's {len(asked)} request(s) "
        f"(first: {asked[0]}): another source's cassette, or one recorded before the "
        "spider changed?",
        datetime.now(UTC),
        states=("fetched",),
    )
