"""``creditwatch health``: each source's standing and its last runs, for people and machines."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pipeline.cli import app
from tests.helpers import DAY1, replay
from tests.test_health_checks import make_runs

pytestmark = pytest.mark.replay

runner = CliRunner()


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Day 1 of Xiamen (healthy), then three unhealthy runs and one still running."""
    data_dir = tmp_path_factory.mktemp("health")
    url = f"sqlite:///{data_dir / 'creditwatch.sqlite'}"
    replay(url, DAY1, delist_after=1)
    make_runs(url, "xmtravel", ["degraded", "failed", "aborted", "running"])
    return {"CREDITWATCH_DATA_DIR": str(data_dir), "DATABASE_URL": ""}


def health(env: dict[str, str], *args: str) -> str:
    result = runner.invoke(app, ["health", *args], env=env)
    assert result.exit_code == 0, result.output
    return result.output


def test_health_shows_each_source_and_its_runs(env: dict[str, str]) -> None:
    text = health(env)
    lines = text.splitlines()
    xm = next(line for line in lines if line.startswith("xmtravel"))
    assert "FAILING" in xm and "3 runs in a row unhealthy: aborted, failed, degraded" in xm
    assert "last healthy: xmtravel:1 (2025-11-21 10:00)" in xm and "running: xmtravel:5" in xm
    day1 = next(line for line in lines if line.strip().startswith("xmtravel:1 "))
    assert "2025-11-21 10:00" in day1 and "healthy" in day1 and "records 31" in day1
    assert "events: listed 20" in day1
    assert "      lists: good healthy 8; warning healthy 23" in lines
    assert "      fetch outcomes: ok 52" in lines
    for source in ("caac", "ccgp", "creditchina", "gsxt", "mct_tourism", "mohrss"):
        assert f"{source}  never run" in lines


def test_health_of_one_source_and_fewer_runs(env: dict[str, str]) -> None:
    text = health(env, "xmtravel", "--runs", "2")
    assert "xmtravel:5" in text and "xmtravel:4" in text and "xmtravel:3" not in text
    assert "ccgp" not in text


def test_health_as_json(env: dict[str, str]) -> None:
    (report,) = json.loads(health(env, "xmtravel", "--json"))["sources"]
    assert report["state"] == "failing" and report["unhealthy_streak"] == 3
    assert report["failing_after"] == 3 and report["running"] == ["xmtravel:5"]
    assert report["last_healthy"]["run_id"] == "xmtravel:1"
    assert [r["run_id"] for r in report["runs"]] == [f"xmtravel:{n}" for n in (5, 4, 3, 2, 1)]
    day1 = report["runs"][-1]
    assert day1["state"] == "healthy" and day1["started_at_shanghai"] == "2025-11-21T10:00:00+08:00"
    assert day1["outcomes"] == {"ok": 52} and day1["events"]["listed"] == 20
    assert [(lst["list"], lst["health"], lst["records"]) for lst in day1["lists"]] == [
        ("xmtravel.good", "healthy", 8),
        ("xmtravel.warning", "healthy", 23),
    ]
    assert report["runs"][0]["state"] == "running" and report["runs"][0]["lists"] == []
    every = json.loads(health(env, "--json"))["sources"]
    assert {s["source"]: s["state"] for s in every}["ccgp"] == "never_run"


def test_unknown_source_is_a_usage_error(env: dict[str, str], tmp_path: Path) -> None:
    result = runner.invoke(app, ["health", "nowhere"], env=env)
    assert result.exit_code == 2 and "unknown source" in result.output
