"""Crash safety (issue 20, item 3): SIGKILL at deterministic kill points of every phase of a
crawl and of ``alerts send``, then an undisturbed run; the result must be the undisturbed one.

The kill points are database statements (``crash_points/sitecustomize.py``, on the
children's PYTHONPATH): an undisturbed day 2 of Xiamen counts those of each phase (the fetch
child writing archive, fetch log and staging; the conductor starting the run, then judging
health, detecting change and queueing alerts; ``alerts send``), and the tests kill at points
spread over each (seeded, printed). After a kill the same command runs again undisturbed
(then ``alerts send``), and the database and receivers are compared with the undisturbed
run: records (every column), events (all but ids), the archive, and alerts, each applied
once by a receiver on 127.0.0.1 (webhook idempotency key, SMTP Message-ID) and none missing.
A few kills of the whole ``creditwatch crawl`` process group at random moments add what
statement counting cannot reach (between statements, inside Scrapy).

``CW_KILL_POINTS`` (default 50) is the total number of kill points; ``CW_KILL_SEED`` the seed.
"""

from __future__ import annotations

import json
import math
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from alerts.sender import send_pending
from storage.engine import get_engine
from storage.models import Alert, RawBody, RawResponse, Run, table_of
from tests.alert_receivers import Applied, smtp_receiver, webhook_receiver
from tests.faults.tally import tally
from tests.helpers import DAY1, DAY2, events, exported
from tests.test_alerts_delivery import SECRET, subscribe, three_subscriptions

pytestmark = pytest.mark.replay

CRASH_POINTS = Path(__file__).resolve().parent / "crash_points"
TOTAL = int(os.environ.get("CW_KILL_POINTS", "50"))
SEED = int(os.environ.get("CW_KILL_SEED", "20"))
BATCH = 8  # the fetch child writes every 8 rows, so day 2 has ~45 fetch kill points
PER_TEST = 4  # kill points per test, so xdist spreads a phase over its workers

# Shares of the kill points; the rest are random kills of the crawl's process group.
SHARES = {"fetch": 0.22, "start": 0.04, "detect": 0.24, "send": 0.42}
NAMES = {
    "fetch": "SIGKILL during crawl staging (fetch child)",
    "start": "SIGKILL while a crawl starts (conductor)",
    "detect": "SIGKILL during health, detection and outbox",
    "send": "SIGKILL during alerts send",
    "group": "SIGKILL of the crawl's process group at a random moment",
}
EXPECTED = "same records, events, archive; alerts once"


def planned() -> dict[str, int]:
    counts = {phase: max(1, round(TOTAL * share)) for phase, share in SHARES.items()}
    counts["group"] = max(1, TOTAL - sum(counts.values()))
    return counts


PLAN = planned()
SLOTS = [(phase, k) for phase, n in PLAN.items() for k in range(math.ceil(n / PER_TEST))]


# -- running the commands -------------------------------------------------------------------


def cli(args: list[str], env: dict[str, str], kill_after: float | None = None) -> int:
    """``creditwatch ARGS`` in a session of its own; returns its status once every process
    of the session (an orphaned fetch child too) is gone, so the next run starts alone.
    ``kill_after``: SIGKILL the whole session after that many seconds."""
    script = "from pipeline.cli import app; app()"
    process = subprocess.Popen(
        [sys.executable, "-c", script, *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        process.wait(timeout=kill_after)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
    _, errors = process.communicate(timeout=180)
    deadline = time.monotonic() + 120
    while _session_alive(process.pid):
        assert time.monotonic() < deadline, f"session of {args} still alive"
        time.sleep(0.1)
    # A run whose fetch child was killed ends `aborted`: the command says so and exits 1.
    said = errors.decode(errors="replace")
    if process.returncode not in (0, 1, -signal.SIGKILL) or "Traceback" in said:
        raise AssertionError(f"{args} exited {process.returncode}: {said[-3000:]}")
    return process.returncode


def _session_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def crawl_args(cassette: Path) -> list[str]:
    return ["crawl", "xmtravel", "--replay", str(cassette), "--delist-after", "1"]


# -- what a run leaves behind ---------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """Everything compared, each a multiset of canonical JSON lines."""

    records: Counter[str]
    events: Counter[str]
    archive: Counter[str]
    alerts: Counter[str]

    def differences(self, expected: Outcome) -> tuple[int, int]:
        """(lost, invented): lines in ``expected`` missing here, and lines here that it lacks."""
        lost = invented = 0
        for name in ("records", "events", "archive", "alerts"):
            mine, theirs = getattr(self, name), getattr(expected, name)
            lost += sum((theirs - mine).values())
            invented += sum((mine - theirs).values())
        return lost, invented


def canonical(data: Any) -> str:
    return json.dumps(data, ensure_ascii=False, sort_keys=True, default=str)


def outcome(url: str, hooked: Applied, mailed: Applied) -> Outcome:
    """Read back from the database and the receivers (never from what was expected)."""
    every_run_events = []
    with get_engine(url).connect() as conn:
        run_ids = conn.execute(select(table_of(Run).c.run_id)).scalars().all()
        responses = table_of(RawResponse)
        archive = conn.execute(
            select(responses.c.url, responses.c.method, responses.c.status, responses.c.sha256)
        ).all()
        bodies = set(conn.execute(select(table_of(RawBody).c.sha256)).scalars())
    for run_id in run_ids:
        every_run_events += events(url, run_id)
    ignored = {"event_id", "run_id"}
    return Outcome(
        records=Counter(canonical(r) for r in exported(url)),
        events=Counter(
            canonical({k: v for k, v in e.items() if k not in ignored}) for e in every_run_events
        ),
        # An interrupted run archives what it fetched too: the same responses, kept once.
        archive=Counter(
            {canonical([*row]): 1 for row in archive if row.sha256 in bodies}
            | {
                canonical(["body missing", row.sha256]): 1
                for row in archive
                if row.sha256 not in bodies
            }
        ),
        alerts=applied_alerts(hooked, mailed),
    )


def applied_alerts(hooked: Applied, mailed: Applied) -> Counter[str]:
    """What the receivers applied, as a person would see it: a webhook body without its
    ids, a mail's recipient and subject. The same alert applied under two keys counts twice."""
    seen: Counter[str] = Counter()
    with hooked.lock:
        for body in hooked.applied.values():
            events_ = [
                {k: v for k, v in e.items() if k not in ("event_id", "run_id")}
                for e in body["events"]
            ]
            seen[canonical(["webhook", body["subscription"], events_])] += 1
    with mailed.lock:
        for message in mailed.applied.values():
            seen[canonical(["email", str(message["To"]), str(message["Subject"])])] += 1
    return seen


def duplicates(alerts: Counter[str]) -> int:
    return sum(n - 1 for n in alerts.values() if n > 1)


def outbox_unsent(url: str) -> list[str]:
    table = table_of(Alert)
    with get_engine(url).connect() as conn:
        rows = conn.execute(select(table.c.alert_key, table.c.status)).all()
    return [f"{row.alert_key}: {row.status}" for row in rows if row.status != "delivered"]


# -- the undisturbed runs, once per worker ----------------------------------------------------


@dataclass
class Bench:
    folder: Path
    env: dict[str, str]
    hook: str
    hooked: Applied
    mailed: Applied
    day1: Path  # subscriptions and day 1: where a day-2 crawl starts
    day2: Path  # and day 2 crawled: where `alerts send` starts
    reference: Outcome
    points: dict[str, list[int]]  # kill points of each phase (statement numbers)
    labels: dict[str, list[str]]  # what each statement of each phase is

    def fresh(self, template: Path, name: str) -> str:
        target = self.folder / f"{name}.sqlite"
        copy_database(template, target)
        self.clear_receivers()
        return f"sqlite:///{target}"

    def clear_receivers(self) -> None:
        for applied in (self.hooked, self.mailed):
            with applied.lock:
                applied.received.clear()
                applied.applied.clear()


def copy_database(source: Path, target: Path) -> None:
    """A consistent copy (SQLite's backup: the write-ahead log included)."""
    for leftover in target.parent.glob(target.name + "*"):
        leftover.unlink()
    with closing(sqlite3.connect(source)) as src, closing(sqlite3.connect(target)) as dst:
        src.backup(dst)


def counted(env: dict[str, str], folder: Path, args: list[str]) -> dict[str, dict[str, Any]]:
    """Run ``args`` undisturbed, counting the kill points of each of its processes."""
    folder.mkdir()
    cli(args, {**env, "CW_CRASH_COUNT_DIR": str(folder)})
    found = {}
    for path in folder.glob("*.json"):
        data = json.loads(path.read_text(encoding="utf-8"))
        assert data["phase"] not in found, f"two {data['phase']} processes"
        found[data["phase"]] = data
    return found


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bench]:
    folder = tmp_path_factory.mktemp("crash")
    with (
        webhook_receiver(SECRET) as (hook, hooked),
        smtp_receiver() as (port, mailed),
        pytest.MonkeyPatch.context() as patch,
    ):
        channels = {
            "CREDITWATCH_WEBHOOK_SECRET": SECRET,
            "CREDITWATCH_SMTP_HOST": "127.0.0.1",
            "CREDITWATCH_SMTP_PORT": str(port),
            "CREDITWATCH_SMTP_STARTTLS": "0",
            "CREDITWATCH_SMTP_FROM": "creditwatch@example.org",
        }
        for name, value in channels.items():  # this process delivers too
            patch.setenv(name, value)
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(CRASH_POINTS), os.environ.get("PYTHONPATH", "")]),
            "CW_CRASH_BATCH": str(BATCH),
        }
        for name in ("CW_CRASH_AT", "CW_CRASH_COUNT_DIR", "CREDITWATCH_DATA_DIR"):
            env.pop(name, None)
        day1, day2 = folder / "day1.sqlite", folder / "day2.sqlite"
        url1 = f"sqlite:///{day1}"
        subscribe(url1, three_subscriptions(hook, "en"), "en")
        cli(crawl_args(DAY1), {**env, "DATABASE_URL": url1})
        copy_database(day1, day2)
        url2 = f"sqlite:///{day2}"
        crawl = counted({**env, "DATABASE_URL": url2}, folder / "count-crawl", crawl_args(DAY2))
        copy_database(day2, folder / "day2-sent.sqlite")
        sent_url = f"sqlite:///{folder / 'day2-sent.sqlite'}"
        send = counted({**env, "DATABASE_URL": sent_url}, folder / "count-send", ["alerts", "send"])
        reference = outcome(sent_url, hooked, mailed)
        assert reference.alerts and duplicates(reference.alerts) == 0
        assert outbox_unsent(sent_url) == []
        start = crawl["conduct"]["fetch_at"]
        conduct = crawl["conduct"]["points"]
        bench = Bench(
            folder=folder,
            env=env,
            hook=hook,
            hooked=hooked,
            mailed=mailed,
            day1=day1,
            day2=day2,
            reference=reference,
            points={
                "fetch": list(range(1, len(crawl["fetch"]["points"]) + 1)),
                "start": list(range(1, start + 1)),
                "detect": list(range(start + 1, len(conduct) + 1)),
                "send": list(range(1, len(send["send"]["points"]) + 1)),
            },
            labels={
                "fetch": crawl["fetch"]["points"],
                "start": conduct,
                "detect": conduct,
                "send": send["send"]["points"],
            },
        )
        yield bench


def chosen(bench: Bench, phase: str, slot: int) -> list[int]:
    """This test's share of the phase's kill points: a seeded sample spread over the phase
    (every point when there are fewer than planned)."""
    every = bench.points[phase]
    rng = random.Random(f"{SEED}:{phase}")
    sample = sorted(rng.sample(every, min(PLAN[phase], len(every))))
    return sample[slot * PER_TEST : (slot + 1) * PER_TEST]


def moments(slot: int) -> list[float]:
    rng = random.Random(f"{SEED}:group")
    every = [round(rng.uniform(0.5, 7.0), 2) for _ in range(PLAN["group"])]
    return every[slot * PER_TEST : (slot + 1) * PER_TEST]


# -- the tests ------------------------------------------------------------------------------


def after_a_crawl_kill(bench: Bench, url: str, env: dict[str, str]) -> Outcome:
    """The next crawl of day 2, undisturbed, then delivery (in this process)."""
    assert cli(crawl_args(DAY2), env) == 0
    report = send_pending(get_engine(url))
    assert not report["failed"] and not report["blocked"], report.problems
    assert outbox_unsent(url) == []
    get_engine(url).dispose()
    return outcome(url, bench.hooked, bench.mailed)


@dataclass(frozen=True)
class Trial:
    label: str
    code: int
    result: Outcome


def kill_and_rerun(bench: Bench, url: str, phase: str, point: float) -> Trial:
    """Kill ``phase`` at ``point`` (a statement number, or seconds for ``group``), then run
    the same command undisturbed (and deliver). The database at ``url`` holds the
    subscriptions and day 1, and day 2 too for ``send``."""
    env = {**bench.env, "DATABASE_URL": url}
    if phase == "send":
        label = f"near {bench.labels['send'][min(int(point), len(bench.labels['send'])) - 1]}"
        code = cli(["alerts", "send"], {**env, "CW_CRASH_AT": f"send:{point}"})
        assert code == -signal.SIGKILL, f"send point {point} was never reached"
        assert cli(["alerts", "send"], env) == 0
        assert outbox_unsent(url) == []
        return Trial(label, code, outcome(url, bench.hooked, bench.mailed))
    if phase == "group":
        code = cli(crawl_args(DAY2), env, kill_after=point)
        return Trial(f"after {point} s", code, after_a_crawl_kill(bench, url, env))
    process = "fetch" if phase == "fetch" else "conduct"
    labels = bench.labels[phase]
    label = labels[min(int(point), len(labels)) - 1]
    code = cli(crawl_args(DAY2), {**env, "CW_CRASH_AT": f"{process}:{point}"})
    # A killed fetch child leaves its conductor to abort the run and exit 1.
    assert code != 0, f"{process} point {point} was never reached"
    return Trial(label, code, after_a_crawl_kill(bench, url, env))


def judge(bench: Bench, name: str, phase: str, trials: list[tuple[float, Trial]]) -> None:
    """Tally the phase's points, then fail on any that differs from the undisturbed run."""
    lost = invented = dupes = 0
    problems = []
    for point, trial in trials:
        print(f"{name}: kill point {point} ({trial.label}): status {trial.code}")
        missing, extra = trial.result.differences(bench.reference)
        twice = duplicates(trial.result.alerts)
        if missing or extra or twice:
            problems.append(
                f"{phase} point {point} ({trial.label}): lost {missing}, invented {extra}, "
                f"duplicate alerts {twice}:\n{_diff(trial.result, bench.reference)}"
            )
        lost, invented, dupes = lost + missing, invented + extra, dupes + twice
    seen = EXPECTED if not problems else f"{len(problems)} of {len(trials)} points differ"
    tally(
        "crash",
        name,
        expected=EXPECTED,
        seen=seen,
        tried=len(trials),
        lost=lost,
        invented=invented,
        duplicate_alerts=dupes,
    )
    assert problems == [], "\n".join(problems)
    assert seen == EXPECTED


@pytest.mark.parametrize(("phase", "slot"), SLOTS, ids=[f"{p}-{k}" for p, k in SLOTS])
def test_a_sigkill_then_an_undisturbed_run_gives_the_undisturbed_result(
    bench: Bench, phase: str, slot: int
) -> None:
    points: list[float] = moments(slot) if phase == "group" else chosen(bench, phase, slot)
    if not points:
        pytest.skip(f"{phase} has fewer kill points than slot {slot} needs")
    trials = []
    for point in points:
        template = bench.day2 if phase == "send" else bench.day1
        url = bench.fresh(template, f"{phase}-{point}")
        trials.append((point, kill_and_rerun(bench, url, phase, point)))
    judge(bench, NAMES[phase], phase, trials)


PG_PHASES = ["fetch", "detect", "send", "group"][: int(os.environ.get("CW_KILL_POINTS_PG", "4"))]


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
@pytest.mark.parametrize("phase", PG_PHASES)
def test_on_postgresql_a_sigkill_then_an_undisturbed_run_gives_the_sqlite_result(
    bench: Bench, db_url: str, phase: str
) -> None:
    """One kill point of each phase on PostgreSQL (``CW_KILL_POINTS_PG``, default 4: one per
    phase), at the same share of the phase as a seeded point on SQLite; the result must be
    the undisturbed SQLite one (both databases give the same records, events and alerts)."""
    bench.clear_receivers()
    subscribe(db_url, three_subscriptions(bench.hook, "en"), "en")
    get_engine(db_url).dispose()
    env = {**bench.env, "DATABASE_URL": db_url}
    assert cli(crawl_args(DAY1), env) == 0
    rng = random.Random(f"{SEED}:postgresql:{phase}")
    if phase == "group":
        point: float = round(rng.uniform(0.5, 7.0), 2)
    else:
        if phase == "send":
            assert cli(crawl_args(DAY2), env) == 0
            bench.clear_receivers()
        # PostgreSQL stages with COPY: fewer fetch statements than SQLite.
        every = bench.points[phase][: 4 if phase == "fetch" else None]
        point = rng.choice(every)
    trial = kill_and_rerun(bench, db_url, phase, point)
    get_engine(db_url).dispose()
    judge(bench, f"{NAMES[phase]} on PostgreSQL", phase, [(point, trial)])


def _diff(result: Outcome, reference: Outcome) -> str:
    parts = []
    for name in ("records", "events", "archive", "alerts"):
        mine, theirs = getattr(result, name), getattr(reference, name)
        for line in (theirs - mine).elements():
            parts.append(f"- {name} {line[:300]}")
        for line in (mine - theirs).elements():
            parts.append(f"+ {name} {line[:300]}")
    return "\n".join(parts[:12])
