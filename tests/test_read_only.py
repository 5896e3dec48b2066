"""Issue 15 item 13: a read-only data directory. Reading commands (serve, export, snapshot,
changes) work on it; writing ones fail with one clear line, never a traceback.

Root can write anything, so as root the commands run as ``nobody`` (the database belongs
to root, with its directory and file made read-only).
"""

from __future__ import annotations

import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from storage.engine import get_engine
from tests.helpers import DAY1, DAY2, FIXTURES, replay

pytestmark = pytest.mark.replay

CLI = str(Path(sys.executable).with_name("creditwatch"))
NOBODY = 65534


@pytest.fixture(scope="module")
def read_only_dir() -> Iterator[Path]:
    base = Path(tempfile.mkdtemp(prefix="cw-readonly-", dir="/tmp"))
    base.chmod(0o755)
    data = base / "data"
    data.mkdir()
    url = f"sqlite:///{data / 'creditwatch.sqlite'}"
    replay(url, DAY1, delist_after=1)
    replay(url, DAY2, delist_after=1)
    get_engine(url).dispose()  # the last connection checkpoints the write-ahead log
    assert not list(data.glob("creditwatch.sqlite-*"))
    (data / "creditwatch.sqlite").chmod(0o444)
    data.chmod(0o555)
    out = base / "out"
    out.mkdir()
    out.chmod(0o777)
    yield data
    data.chmod(0o755)
    shutil.rmtree(base)


def run_cli(data: Path, *args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CREDITWATCH_DATA_DIR": str(data), "HOME": "/tmp"}
    env.pop("DATABASE_URL", None)
    return subprocess.run(
        [*as_reader(), CLI, *args],
        env=env,
        cwd="/tmp",
        capture_output=True,
        text=True,
        timeout=120,
        **kwargs,
    )


def as_reader() -> list[str]:
    """The command prefix that runs a program as a user who cannot write the database."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root without setpriv: cannot drop to an unprivileged user")
    return [setpriv, f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]


def test_the_database_is_really_read_only_for_the_commands(read_only_dir: Path) -> None:
    mode = (read_only_dir / "creditwatch.sqlite").stat().st_mode
    assert not mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)
    probe = subprocess.run(
        [*as_reader(), sys.executable, "-c", f"open({str(read_only_dir / 'x')!r}, 'w')"],
        capture_output=True,
    )
    assert probe.returncode != 0


@pytest.mark.parametrize(
    "args",
    [
        ("changes",),
        ("export", "xmtravel"),
        ("export", "xmtravel", "--format", "csv"),
        ("runs",),
        ("snapshot", "xmtravel", "--format", "jsonl", "--out", "{out}"),
    ],
)
def test_reading_commands_work(read_only_dir: Path, args: tuple[str, ...]) -> None:
    out = read_only_dir.parent / "out" / "-".join(a for a in args if not a.startswith("{"))
    done = run_cli(read_only_dir, *(a.format(out=out) for a in args))
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert done.stdout.strip() or any(out.iterdir())


def test_serve_starts_and_answers(read_only_dir: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "CREDITWATCH_DATA_DIR": str(read_only_dir), "HOME": "/tmp"}
    env.pop("DATABASE_URL", None)
    server = subprocess.Popen(
        [*as_reader(), CLI, "serve", "--port", str(port)],
        env=env,
        cwd="/tmp",
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as page:
                    assert page.status == 200
                    assert "厦门" in page.read().decode("utf-8")
                break
            except OSError:
                assert server.poll() is None, server.communicate()[1]
                assert time.monotonic() < deadline, "serve did not answer"
                time.sleep(0.5)
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.mark.parametrize(
    "args",
    [
        ("crawl", "xmtravel", "--replay", str(DAY1)),
        ("watch", "add", "w1", "--channel", "feed:/tmp/cw-readonly-feed.xml", "--name", "x"),
        ("watch", "import", str(FIXTURES / "demo-subscriptions.yml")),
    ],
)
def test_writing_commands_fail_with_one_clear_line(
    read_only_dir: Path, args: tuple[str, ...]
) -> None:
    done = run_cli(read_only_dir, *args)
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    assert "read-only" in lines[0]
