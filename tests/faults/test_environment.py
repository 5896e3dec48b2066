"""Issue 20, item 3b: a broken environment (damaged, foreign, read-only or unreachable
database, a data dir that is not one, a full disk, a schema from another version, a broken
registry or subscriptions file). Each fault runs the real ``creditwatch`` command in a
subprocess and checks: exit status not 0, stderr ONE line naming the problem (no traceback),
nothing lost (the database as it was), and, where there is something to repair, that the
command succeeds after the repair and gives the records an undisturbed run gives.

Each is tallied as kind ``environment``; ``seen`` is what the subprocess did (its exit status,
the number of stderr lines and whether the line named the problem) and what was read back.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from storage.engine import alembic_config, get_engine
from tests.faults.tally import tally
from tests.helpers import DAY1, DAY2, FIXTURES, SHIPPED_SOURCES, exported

pytestmark = pytest.mark.replay

CLI = str(Path(sys.executable).with_name("creditwatch"))
NOBODY = 65534
ONE_LINE = "exit 1, one line"
# CW_ENV_FAULT_REPAIRS=all: after each registry fault, crawl day 2 on the repaired registry
# too (five crawls more); by default the repair is checked by the registry loading again.
FULL_REPAIRS = os.environ.get("CW_ENV_FAULT_REPAIRS") == "all"


def run_cli(
    *args: str, data: Path | None = None, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """``creditwatch ARGS`` in a fresh process, on the data dir ``data``."""
    environment = {**os.environ, "HOME": "/tmp"}
    environment.pop("DATABASE_URL", None)
    environment.update(env or {})
    if data is not None:
        environment["CREDITWATCH_DATA_DIR"] = str(data)
    return subprocess.run(
        [CLI, *args],
        env=environment,
        cwd="/tmp",
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def as_nobody(*args: str, data: Path) -> subprocess.CompletedProcess[str]:
    """``creditwatch ARGS`` as a user who cannot write ``data`` (root writes anything)."""
    prefix: list[str] = []
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root without setpriv: cannot drop to an unprivileged user")
        prefix = [setpriv, f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
    environment = {**os.environ, "HOME": "/tmp", "CREDITWATCH_DATA_DIR": str(data)}
    environment.pop("DATABASE_URL", None)
    return subprocess.run(
        [*prefix, CLI, *args], env=environment, cwd="/tmp", capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip


@pytest.fixture
def open_tmp() -> Iterator[Path]:
    """A temporary directory ``nobody`` can reach (pytest's own are root's, mode 0700)."""
    base = Path(tempfile.mkdtemp(prefix="cw-env-", dir="/tmp"))
    base.chmod(0o755)
    yield base
    for path in (base, *base.rglob("*")):
        if path.is_dir() and not path.is_symlink():
            path.chmod(0o755)
    shutil.rmtree(base)


@dataclass(frozen=True)
class Outcome:
    """What a failed command did, as read from the process."""

    code: int
    lines: list[str]
    traceback: bool

    @classmethod
    def of(cls, done: subprocess.CompletedProcess[str]) -> Outcome:
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        return cls(done.returncode, lines, "Traceback" in done.stderr)

    def seen(self, names: str) -> str:
        """``exit N, one line`` when the command failed in one line naming ``names``."""
        if self.traceback:
            return f"exit {self.code}, traceback"
        shape = "one line" if len(self.lines) == 1 else f"{len(self.lines)} lines"
        named = all(self.lines) and names.lower() in " ".join(self.lines).lower()
        return f"exit {self.code}, {shape}" + ("" if named else f" not naming {names!r}")


def keys(data: Path) -> list[tuple[str, str, str, str]]:
    """The records the data dir's database exports, as comparable keys."""
    url = f"sqlite:///{data / 'creditwatch.sqlite'}"
    try:
        records = exported(url)
    finally:
        get_engine(url).dispose()
    return sorted((r["list"], r["record_key"], r["raw_sha256"], r["status"]) for r in records)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass(frozen=True)
class Baseline:
    day1: Path  # a data dir after day 1, checkpointed (one file)
    day1_keys: list[tuple[str, str, str, str]]
    day2_keys: list[tuple[str, str, str, str]]  # day 1 then day 2, undisturbed


@pytest.fixture(scope="module")
def baseline(tmp_path_factory: pytest.TempPathFactory) -> Baseline:
    """Day 1 crawled by the command line, and day 1 + day 2 as the undisturbed reference."""
    root = tmp_path_factory.mktemp("env-baseline")
    day1, both = root / "day1", root / "both"
    done = run_cli("crawl", "xmtravel", "--replay", str(DAY1), data=day1)
    assert done.returncode == 0, done.stderr
    shutil.copytree(day1, both)
    done = run_cli("crawl", "xmtravel", "--replay", str(DAY2), data=both)
    assert done.returncode == 0, done.stderr
    assert not list(day1.glob("creditwatch.sqlite-*"))  # checkpointed: the file is the database
    return Baseline(day1, keys(day1), keys(both))


def fresh_day1(baseline: Baseline, where: Path) -> Path:
    data = where / "data"
    shutil.copytree(baseline.day1, data)
    return data


def crawl_day2_after_repair(data: Path, baseline: Baseline) -> tuple[int, int, int]:
    """Crawl day 2 on the repaired data dir: (exit status, records lost, records invented)
    against the undisturbed day 1 + day 2."""
    done = run_cli("crawl", "xmtravel", "--replay", str(DAY2), data=data)
    got = set(keys(data)) if done.returncode == 0 else set()
    want = set(baseline.day2_keys)
    return done.returncode, len(want - got), len(got - want)


def check(
    name: str,
    done: subprocess.CompletedProcess[str],
    names: str,
    *,
    expected: str = ONE_LINE,
    kept: bool,
    repaired: tuple[int, int, int] | None = None,
) -> None:
    """Tally and assert one fault: the command's outcome, the database kept, the repair."""
    seen = Outcome.of(done).seen(names)
    lost = invented = 0
    expected_all, seen_all = expected + ", kept", seen + (", kept" if kept else ", CHANGED")
    if repaired is not None:
        code, lost, invented = repaired
        expected_all += ", repaired run ok"
        seen_all += ", repaired run ok" if code == 0 else f", repaired run exit {code}"
    tally("environment", name, expected=expected_all, seen=seen_all, lost=lost, invented=invented)
    assert seen_all == expected_all, done.stderr
    assert lost == invented == 0


# -- the database ----------------------------------------------------------------------------


def test_garbage_bytes_as_the_database(baseline: Baseline, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    db = data / "creditwatch.sqlite"
    db.write_bytes(os.urandom(64 * 1024))
    before = digest(db)
    done = run_cli("crawl", "xmtravel", "--replay", str(DAY1), data=data)
    kept = digest(db) == before
    db.rename(tmp_path / "garbage.sqlite")  # the repair: move it aside, start again
    shutil.copy(baseline.day1 / "creditwatch.sqlite", db)  # ... from the backup
    check("database file of garbage bytes", done, "damaged", kept=kept,
          repaired=crawl_day2_after_repair(data, baseline))  # fmt: skip


def test_truncated_database(baseline: Baseline, tmp_path: Path) -> None:
    data = fresh_day1(baseline, tmp_path)
    db = data / "creditwatch.sqlite"
    whole = db.read_bytes()
    db.write_bytes(whole[: len(whole) // 3])
    before = digest(db)
    done = run_cli("export", "xmtravel", data=data)
    kept = digest(db) == before
    db.write_bytes(whole)  # restored from the backup
    check("truncated SQLite file (export)", done, "damaged", kept=kept,
          repaired=crawl_day2_after_repair(data, baseline))  # fmt: skip


def test_a_database_that_is_not_creditwatchs(baseline: Baseline, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    db = data / "creditwatch.sqlite"
    with sqlite3.connect(db) as conn:
        conn.execute("create table runs (what text)")
        conn.execute("insert into runs values ('a marathon')")
    done = run_cli("crawl", "xmtravel", "--replay", str(DAY1), data=data)
    with sqlite3.connect(db) as conn:
        tables = [row[0] for row in conn.execute("select name from sqlite_master")]
        rows = conn.execute("select what from runs").fetchall()
    # Compared by content: opening it switched its journal to WAL (see the report).
    kept = tables == ["runs"] and rows == [("a marathon",)]
    check("a SQLite file that is not creditwatch's", done, "not a creditwatch database", kept=kept)


def test_schema_from_the_future(baseline: Baseline, tmp_path: Path) -> None:
    data = fresh_day1(baseline, tmp_path)
    db = data / "creditwatch.sqlite"
    with sqlite3.connect(db) as conn:
        (head,) = conn.execute("select version_num from alembic_version").fetchone()
        conn.execute("update alembic_version set version_num = '9999_from_the_future'")
    before = digest(db)
    done = run_cli("crawl", "xmtravel", "--replay", str(DAY2), data=data)
    kept = digest(db) == before
    with sqlite3.connect(db) as conn:  # the repair: the right creditwatch for it
        conn.execute("update alembic_version set version_num = ?", (head,))
    check("schema revision from a newer creditwatch", done, "newer creditwatch", kept=kept,
          repaired=crawl_day2_after_repair(data, baseline))  # fmt: skip


def test_schema_behind_is_migrated(baseline: Baseline, tmp_path: Path) -> None:
    """Migrations pending on a writable database are applied by the command itself."""
    from alembic import command

    data = fresh_day1(baseline, tmp_path)
    url = f"sqlite:///{data / 'creditwatch.sqlite'}"
    command.downgrade(alembic_config(url), "-1")
    get_engine(url).dispose()
    code, lost, invented = crawl_day2_after_repair(data, baseline)
    seen = f"exit {code}, migrated" + ("" if lost == invented == 0 else ", records differ")
    tally("environment", "schema behind (migrations pending)", expected="exit 0, migrated",
          seen=seen, lost=lost, invented=invented)  # fmt: skip
    assert seen == "exit 0, migrated"


def test_schema_behind_on_a_read_only_database(baseline: Baseline, open_tmp: Path) -> None:
    from alembic import command

    tmp_path = open_tmp
    data = fresh_day1(baseline, tmp_path)
    url = f"sqlite:///{data / 'creditwatch.sqlite'}"
    command.downgrade(alembic_config(url), "-1")
    get_engine(url).dispose()
    (data / "creditwatch.sqlite").chmod(0o444)
    data.chmod(0o555)
    before = digest(data / "creditwatch.sqlite")
    done = as_nobody("changes", data=data)
    kept = digest(data / "creditwatch.sqlite") == before
    data.chmod(0o755)
    (data / "creditwatch.sqlite").chmod(0o644)
    check("schema behind on a read-only database", done, "db upgrade", kept=kept,
          repaired=crawl_day2_after_repair(data, baseline))  # fmt: skip


def test_read_only_database_file(baseline: Baseline, open_tmp: Path) -> None:
    tmp_path = open_tmp
    data = fresh_day1(baseline, tmp_path)
    db = data / "creditwatch.sqlite"
    data.chmod(0o777)  # the directory is writable: only the file is not
    db.chmod(0o444)
    before = digest(db)
    done = as_nobody("crawl", "xmtravel", "--replay", str(DAY2), data=data)
    kept = digest(db) == before and keys(data) == baseline.day1_keys
    db.chmod(0o644)
    data.chmod(0o755)
    check("read-only database file", done, "read-only", kept=kept,
          repaired=crawl_day2_after_repair(data, baseline))  # fmt: skip


def test_read_only_data_dir(baseline: Baseline, open_tmp: Path) -> None:
    tmp_path = open_tmp
    data = fresh_day1(baseline, tmp_path)
    data.chmod(0o555)
    done = as_nobody("watch", "import", str(FIXTURES / "demo-subscriptions.yml"), data=data)
    data.chmod(0o755)
    with sqlite3.connect(data / "creditwatch.sqlite") as conn:
        (subscriptions,) = conn.execute("select count(*) from subscriptions").fetchone()
    kept = subscriptions == 0 and keys(data) == baseline.day1_keys
    check("read-only data dir (watch import)", done, "read-only", kept=kept,
          repaired=crawl_day2_after_repair(data, baseline))  # fmt: skip


def test_data_dir_is_a_file(baseline: Baseline, tmp_path: Path) -> None:
    blocker = tmp_path / "data"
    blocker.write_text("not a directory\n")
    done = run_cli("runs", data=blocker)
    kept = blocker.read_text() == "not a directory\n"
    check("data dir is a file (CREDITWATCH_DATA_DIR)", done, "not a directory", kept=kept)


def test_data_dir_inside_a_file(baseline: Baseline, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    done = run_cli("crawl", "xmtravel", "--replay", str(DAY1), data=blocker / "data")
    check("data dir under a file (crawl)", done, "not a directory",
          kept=blocker.read_text() == "x")  # fmt: skip


def test_data_dir_option_names_a_file(tmp_path: Path) -> None:
    blocker = tmp_path / "data"
    blocker.write_text("x")
    done = run_cli("--data-dir", str(blocker), "changes")
    check("--data-dir names a file", done, "is a file", expected="exit 2, one line",
          kept=blocker.read_text() == "x")  # fmt: skip


def test_missing_data_dir_is_made_by_a_crawl(baseline: Baseline, tmp_path: Path) -> None:
    """A data dir that does not exist yet is the first run's: the crawl makes it."""
    data = tmp_path / "new" / "data"
    done = run_cli("crawl", "xmtravel", "--replay", str(DAY1), data=data)
    got = set(keys(data)) if done.returncode == 0 else set()
    want = set(baseline.day1_keys)
    seen = f"exit {done.returncode}, made" if data.is_dir() else f"exit {done.returncode}"
    tally("environment", "data dir missing (crawl)", expected="exit 0, made", seen=seen,
          lost=len(want - got), invented=len(got - want))  # fmt: skip
    assert seen == "exit 0, made" and got == want, done.stderr


def _mount_tmpfs(where: Path, size: int) -> bool:
    where.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], capture_output=True
    )
    return mounted.returncode == 0


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Callable[[int], Path]]:
    """``small_disk(bytes)``: a tmpfs of that size (needs root in a container that allows
    mounting; skipped, saying so, elsewhere)."""
    mounts: list[Path] = []

    def make(size: int) -> Path:
        where = tmp_path / f"disk{len(mounts)}"
        if not _mount_tmpfs(where, size):
            pytest.skip("cannot mount a tmpfs here (not root, or no CAP_SYS_ADMIN)")
        mounts.append(where)
        return where

    yield make
    for where in mounts:
        subprocess.run(["umount", str(where)], check=False)


def test_full_disk(baseline: Baseline, tmp_path: Path, small_disk: Callable[[int], Path]) -> None:
    source = baseline.day1 / "creditwatch.sqlite"
    size = source.stat().st_size
    disk = small_disk(size + 48 * 1024)  # the database and a few pages more: then ENOSPC
    data = disk / "data"
    shutil.copytree(baseline.day1, data)
    done = run_cli("crawl", "xmtravel", "--replay", str(DAY2), data=data)
    kept = keys(data) == baseline.day1_keys
    # The repair: the data dir moved to a disk with room.
    roomy = tmp_path / "roomy"
    shutil.copytree(data, roomy)
    check("full disk (tmpfs) under the database", done, "disk", kept=kept,
          repaired=crawl_day2_after_repair(roomy, baseline))  # fmt: skip


def test_postgresql_that_does_not_answer() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed when the block ends: nothing listens there
    done = run_cli("runs", env={"DATABASE_URL": f"postgresql://cw:secret@127.0.0.1:{port}/cw"})
    check("PostgreSQL URL that does not answer", done, "cannot connect",
          kept="secret" not in done.stderr)  # fmt: skip


# -- the registry ----------------------------------------------------------------------------

REGISTRY_FAULTS = {
    "registry YAML syntax error": (
        lambda text: text.replace("name_en: ", "name_en: [", 1), "invalid YAML"),
    "registry value of the wrong type": (
        lambda text: text.replace("concurrency: 1", "concurrency: lots", 1), "valid integer"),
    "registry unknown key": (lambda text: text + "colour: blue\n", "unknown key 'colour'"),
    "registry missing required field": (
        lambda text: "\n".join(
            line for line in text.splitlines() if not line.startswith("base_url:")),
        "missing 'base_url'"),
    "source dir without source.yml": (None, "has no source.yml"),
}  # fmt: skip


@pytest.mark.parametrize("name", list(REGISTRY_FAULTS))
def test_broken_registry(name: str, baseline: Baseline, tmp_path: Path) -> None:
    edit, names = REGISTRY_FAULTS[name]
    sources = tmp_path / "sources"
    shutil.copytree(SHIPPED_SOURCES, sources)
    declaration = sources / "xmtravel" / "source.yml"
    good = declaration.read_text(encoding="utf-8")
    if edit is None:
        declaration.unlink()
    else:
        changed = edit(good)
        assert changed != good
        declaration.write_text(changed, encoding="utf-8")
    data = fresh_day1(baseline, tmp_path)
    env = {"CREDITWATCH_SOURCES_DIR": str(sources)}
    done = run_cli("crawl", "xmtravel", "--replay", str(DAY2), data=data, env=env)
    kept = keys(data) == baseline.day1_keys
    declaration.write_text(good, encoding="utf-8")  # the repair
    if FULL_REPAIRS:
        repaired = run_cli("crawl", "xmtravel", "--replay", str(DAY2), data=data, env=env)
        got, want = set(keys(data)), set(baseline.day2_keys)
        outcome = (repaired.returncode, len(want - got), len(got - want))
    else:  # the registry loads again: what the crawl refused on
        outcome = (run_cli("sources", env=env).returncode, 0, 0)
    check(name, done, names, expected="exit 2, one line", kept=kept, repaired=outcome)


# -- subscriptions ---------------------------------------------------------------------------

GOOD_SUBSCRIPTION = "subscriptions:\n  - id: a\n    channels: [feed:a.atom]\n    names: [x]\n"
SUBSCRIPTION_FAULTS = {
    "subscriptions file YAML syntax error": (
        "subscriptions:\n  - id: a\n    channels: [feed:a.atom\n", "not valid"),
    "subscriptions value of the wrong type": (
        "subscriptions:\n  - id: a\n    channels: [feed:a.atom]\n    names: 5\n",
        "must be a list"),
    "subscriptions unknown channel": (
        "subscriptions:\n  - id: a\n    channels: [pigeon:coop]\n    names: [x]\n",
        "not a channel"),
    "subscriptions webhook with a bad URL": (
        "subscriptions:\n  - id: a\n    channels: ['webhook:ht!tp://a b']\n    names: [x]\n",
        "http(s) URL"),
}  # fmt: skip


def _subscription_ids(data: Path) -> list[str]:
    with sqlite3.connect(data / "creditwatch.sqlite") as conn:
        return [row[0] for row in conn.execute("select id from subscriptions order by id")]


@pytest.mark.parametrize("name", list(SUBSCRIPTION_FAULTS))
def test_broken_subscriptions_file(name: str, baseline: Baseline, tmp_path: Path) -> None:
    text, names = SUBSCRIPTION_FAULTS[name]
    data = fresh_day1(baseline, tmp_path)
    path = tmp_path / "subscriptions.yml"
    path.write_text(text, encoding="utf-8")
    done = run_cli("watch", "import", str(path), data=data)
    kept = _subscription_ids(data) == [] and keys(data) == baseline.day1_keys
    path.write_text(GOOD_SUBSCRIPTION, encoding="utf-8")  # the repair
    repaired = run_cli("watch", "import", str(path), data=data)
    ok = repaired.returncode == 0 and _subscription_ids(data) == ["a"]
    check(name, done, names, expected="exit 2, one line", kept=kept,
          repaired=(0 if ok else repaired.returncode or 1, 0, 0))  # fmt: skip


def test_missing_subscriptions_file(baseline: Baseline, tmp_path: Path) -> None:
    data = fresh_day1(baseline, tmp_path)
    done = run_cli("watch", "import", str(tmp_path / "nowhere.yml"), data=data)
    check("subscriptions file given but missing", done, "does not exist",
          expected="exit 2, one line", kept=_subscription_ids(data) == [])  # fmt: skip


def test_data_dir_the_user_cannot_reach(baseline: Baseline, open_tmp: Path) -> None:
    locked = open_tmp / "locked"
    locked.mkdir()
    data = fresh_day1(baseline, locked)
    locked.chmod(0o700)  # root's: nobody cannot pass through it
    done = as_nobody("changes", data=data)
    locked.chmod(0o755)
    check("data dir behind a directory the user cannot enter", done, "permission denied",
          kept=keys(data) == baseline.day1_keys)  # fmt: skip


def test_serve_on_a_damaged_database(baseline: Baseline, tmp_path: Path) -> None:
    data = fresh_day1(baseline, tmp_path)
    db = data / "creditwatch.sqlite"
    db.write_bytes(os.urandom(4096) + db.read_bytes()[4096:])  # the header overwritten
    before = digest(db)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    done = run_cli("serve", "--port", str(port), data=data, timeout=60)
    check("serve start-up on a damaged database", done, "damaged", kept=digest(db) == before)
