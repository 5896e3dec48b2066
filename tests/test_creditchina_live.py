"""Credit China from the command line: live without network fails fast; the probe; replay.

The live tests run with the network guard: name lookups of non-loopback hosts fail at once,
as on a machine without network. Whether the site's scripts still clear the live WAF cannot
be shown here (``creditwatch probe creditchina`` is for a maintainer with network).
"""

from __future__ import annotations

import copy
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pipeline.cli import app
from tests.creditchina_support import CC, CC_DAY1, CC_DAY2, WATCHLIST, needs_chromium
from tests.helpers import load_cassette, save_cassette

runner = CliRunner()


def env_for(tmp_path: Path) -> dict[str, str]:
    return {"CREDITWATCH_DATA_DIR": str(tmp_path / "data"), "DATABASE_URL": ""}


@pytest.mark.replay
def test_live_crawl_without_network_fails_fast_naming_the_host(
    tmp_path: Path, netguard: Path
) -> None:
    started = time.monotonic()
    result = runner.invoke(
        app, ["crawl", "creditchina", "--watchlist", str(WATCHLIST)], env=env_for(tmp_path)
    )
    took = time.monotonic() - started
    assert result.exit_code == 1, result.output
    assert took < 30, f"took {took:.1f} s"
    assert "cannot reach www.creditchina.gov.cn" in result.output
    assert "--replay" in result.output  # says what to do without network
    assert "run creditchina:1 failed" in result.output
    attempts = netguard.read_text().splitlines()
    assert attempts and all("creditchina.gov.cn" in line for line in attempts)


def test_probe_without_network_says_which_host(tmp_path: Path, netguard: Path) -> None:
    result = runner.invoke(app, ["probe", "creditchina"], env=env_for(tmp_path))
    assert result.exit_code == 1
    assert "reach hosts" in result.output and "www.creditchina.gov.cn" in result.output


@needs_chromium
def test_probe_steps_against_a_cassette(tmp_path: Path, netguard: Path) -> None:
    result = runner.invoke(
        app,
        ["probe", "creditchina", "--replay", str(CC_DAY1), "--keyword", "福州闽江明远建材有限公司"],
        env=env_for(tmp_path),
    )
    assert result.exit_code == 0, result.output
    steps = [line.split()[0:3] for line in result.output.splitlines()]
    names = [" ".join(s[:2]) for s in steps]
    assert names[:5] == ["portal page", "list sxbzxr", "list xzfj", "list xzhc", "list zdsswf"]
    assert {"subject search", "subject details"} <= set(names)
    assert "cookies: https_waf_cookie" in result.output  # set by the page's own script
    assert netguard.read_text() == ""


@needs_chromium
@pytest.mark.parametrize(
    ("page", "code", "words"),
    [
        ("challenge-412.html", 1, ["portal", "page", "waf_challenge", "412"]),
        ("challenge-412-clears.html", 0, ["portal", "page", "ok", "412"]),
    ],
)
def test_probe_names_the_challenge(tmp_path: Path, page: str, code: int, words: list[str]) -> None:
    data = load_cassette(CC_DAY2)
    portal = next(i for i in data["interactions"] if i["request"]["uri"].endswith("index.html"))
    challenge = copy.deepcopy(portal)
    challenge["response"]["status"] = {"code": 412, "message": "Precondition Failed"}
    challenge["response"]["body"] = {"string": (CC / page).read_text(encoding="utf-8")}
    data["interactions"].insert(data["interactions"].index(portal), challenge)
    cassette = save_cassette(data, tmp_path / "challenge.yaml")
    result = runner.invoke(
        app, ["probe", "creditchina", "--replay", str(cassette)], env=env_for(tmp_path)
    )
    assert result.exit_code == code, result.output
    assert result.output.split()[:4] == words


@needs_chromium
def test_cli_replay_summary_names_the_capped_list(tmp_path: Path) -> None:
    args = ["crawl", "creditchina", "--replay", str(CC_DAY1), "--watchlist", str(WATCHLIST)]
    result = runner.invoke(app, args, env=env_for(tmp_path))
    assert result.exit_code == 0, result.output
    # The capped list is read in part by design (coverage: partial): the run is healthy, and
    # says so with "(partial)" and a note of how much it read (no longer "degraded").
    assert "run creditchina:1 (replay) healthy (partial)" in result.output
    assert "· read 50 of 57 entries (at most 50 a run)" in result.output
    assert "creditchina.zdsswf healthy (partial)" in " ".join(result.output.split())
    assert "creditchina.watch_xzcf healthy" in result.output.replace("  ", " ")


def test_cli_rejects_a_missing_watchlist_and_a_command_solver_without_command(
    tmp_path: Path,
) -> None:
    missing = runner.invoke(
        app,
        ["crawl", "creditchina", "--watchlist", str(tmp_path / "nope.txt")],
        env=env_for(tmp_path),
    )
    assert missing.exit_code == 2 and "does not exist" in missing.output
    bare = runner.invoke(
        app, ["crawl", "creditchina", "--captcha", "command"], env=env_for(tmp_path)
    )
    assert bare.exit_code == 2 and "--captcha-command" in bare.output
    unknown = runner.invoke(
        app, ["crawl", "creditchina", "--captcha", "ocr-cloud"], env=env_for(tmp_path)
    )
    assert unknown.exit_code == 2 and "module:factory" in unknown.output
