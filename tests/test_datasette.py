"""The SQLite database opens in Datasette with the shipped metadata: tables described, the
staging tables hidden, the canned queries answering."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import yaml
from datasette.app import Datasette

from tests.helpers import DAY1, DAY2, replay

pytestmark = pytest.mark.replay

METADATA = Path(__file__).resolve().parent.parent / "docs" / "datasette.yml"


def test_the_database_opens_in_datasette(tmp_path: Path) -> None:
    path = tmp_path / "creditwatch.sqlite"
    url = f"sqlite:///{path}"
    replay(url, DAY1, delist_after=1)
    replay(url, DAY2, delist_after=1)
    metadata = yaml.safe_load(METADATA.read_text(encoding="utf-8"))

    async def visit() -> dict[str, Any]:
        ds = Datasette([str(path)], metadata=metadata)
        await ds.invoke_startup()
        pages = {
            "tables": "/creditwatch.json",
            "good": "/creditwatch/records.json?_shape=array&list=xmtravel.good",
            "query": "/creditwatch/list_entries.json?_shape=array&list=xmtravel.warning",
            "events": "/creditwatch/events_since.json?_shape=array&since=2000-01-01",
            "page": "/creditwatch/records",
        }
        return {name: await ds.client.get(url) for name, url in pages.items()}

    got = asyncio.run(visit())
    assert all(r.status_code == 200 for r in got.values()), {
        k: r.status_code for k, r in got.items()
    }
    tables = {t["name"]: t for t in got["tables"].json()["tables"]}
    assert {"records", "events", "record_history", "runs"} <= set(tables)
    assert tables["run_records"]["hidden"] and not tables["records"]["hidden"]
    assert len(got["good"].json()) == 9  # every entry ever seen, removed ones included
    warning = got["query"].json()
    assert warning and all(row["status"] != "removed" for row in warning)
    kinds = {row["event"] for row in got["events"].json()}
    assert {"listed", "delisted", "modified"} <= kinds
    assert "The current state of every entry ever seen" in got["page"].text
