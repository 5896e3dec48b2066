"""Is the process that holds a run still working on it? Read from ``/proc`` (Linux), used
by the scheduler's sweep and by every crawl's start, which abort runs left ``running`` by a
process that died and finish those it left ``fetched``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Row

from storage.runs import pid_running


def proc_file(pid: int, name: str) -> bytes | None:
    try:
        return Path(f"/proc/{pid}/{name}").read_bytes()
    except OSError:
        return None


def process_alive(run: Row[Any]) -> bool:
    """Whether the process recorded for ``run`` may still be working on it. The pid is the
    crawl process's (or the process that created the run, before the crawl process starts and
    once it has exited and that process finishes the run). A pid that no longer
    exists, a zombie, a crawl process of another run (a reused pid), or this very process
    (a run left by an earlier process with the same pid) are all gone."""
    pid = run.pid
    if not pid or pid == os.getpid() or not pid_running(pid):
        return False
    cmdline = proc_file(pid, "cmdline")
    if cmdline is not None:
        args = cmdline.split(b"\0")
        if any(arg.startswith(b"CW_RUN_ID=") for arg in args):
            return f"CW_RUN_ID={run.run_id}".encode() in args
    return True


def parent_of(pid: int) -> int | None:
    stat = proc_file(pid, "stat")
    if stat is None:
        return None
    return int(stat.rsplit(b")", 1)[-1].split()[1])
