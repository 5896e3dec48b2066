"""The replayed-database cache (tests/replay_cache.py) leaves what replaying would have left:
the same records, the same run ids, and sequences that go on where the replays left them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.helpers import DAY1, DAY2, events, exported, replay, run_row
from tests.replay_cache import Replay, Replayed

pytestmark = pytest.mark.replay

EVENT_FIELDS = ("id", "run_id", "event", "list", "record_key", "case_number", "cause", "baseline")


def event_view(url: str, run_id: str) -> list[dict[str, Any]]:
    return [{name: e.get(name) for name in EVENT_FIELDS} for e in events(url, run_id)]


def test_a_copied_replay_is_the_replay_and_later_runs_continue_it(
    db_url: str, replayed: Replayed, tmp_path: Path
) -> None:
    reference = f"sqlite:///{tmp_path / 'reference.sqlite'}"
    day1 = replay(reference, DAY1, delist_after=1)
    after_day1 = exported(reference)
    day2 = replay(reference, DAY2, delist_after=1)

    (copied,) = replayed(db_url, Replay(DAY1, delist_after=1))
    assert copied == day1 and run_row(db_url, copied).state == "healthy"
    assert exported(db_url) == after_day1
    assert event_view(db_url, copied) == event_view(reference, day1)

    # A real crawl on top of the copy: new rows take the ids the replay would have given.
    again = replay(db_url, DAY2, delist_after=1)
    assert again == day2
    assert exported(db_url) == exported(reference) != after_day1
    assert event_view(db_url, again) == event_view(reference, day2) != []
