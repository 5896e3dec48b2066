"""Captcha solvers, alone and in a replayed Credit China run.

The portal answers the first list call with a captcha demand; the spider fetches the image
inside the page, hands it to the configured solver, submits the answer (checkVerify) and asks
again. A right answer keeps the run healthy; a wrong one, or no solver, is ``captcha_required``.
"""

from __future__ import annotations

import copy
import sqlite3
import sys
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from scrapy.settings import Settings

from crawlers.captcha import (
    CaptchaConfigError,
    CommandSolver,
    ManualSolver,
    NoSolver,
    solver_from_settings,
)
from tests.creditchina_support import (
    API,
    CC,
    CC_DAY1,
    CC_DAY2,
    answer,
    api_interaction,
    needs_chromium,
    replay_cc,
)
from tests.helpers import events, fetches, list_health, load_cassette, save_cassette

PNG = (CC / "captcha.png").read_bytes()
ANSWER = "K7Q2"
SOLVER = f"""import sys
image = sys.stdin.buffer.read()
print("{ANSWER}" if image.startswith(b"\\x89PNG") else "")
"""


def script(tmp_path: Path, source: str) -> str:
    path = tmp_path / "solve.py"
    path.write_text(source, encoding="utf-8")
    return f"{sys.executable} {path}"


# --- The solvers alone --------------------------------------------------------------------


def test_command_solver_gets_the_image_and_prints_the_answer(tmp_path: Path) -> None:
    solver = CommandSolver(script(tmp_path, SOLVER).split())
    assert solver.solve(PNG, "image/png") == ANSWER
    assert solver.solve(b"not an image") is None  # empty output: no answer


def test_command_solver_failures_are_no_answer(tmp_path: Path) -> None:
    assert CommandSolver([sys.executable, "-c", "import sys; sys.exit(3)"]).solve(PNG) is None
    assert CommandSolver(["/nonexistent/solver"]).solve(PNG) is None
    slow = CommandSolver([sys.executable, "-c", "import time; time.sleep(5)"], timeout=0.5)
    assert slow.solve(PNG) is None


def test_manual_solver_never_blocks_without_a_terminal(tmp_path: Path) -> None:
    asked: list[str] = []

    def ask(prompt: str) -> str:
        asked.append(prompt)
        return " k7q2 \n"

    assert ManualSolver(interactive=False, image_dir=tmp_path, ask=ask).solve(PNG) is None
    assert asked == []
    assert (
        ManualSolver(interactive=True, image_dir=tmp_path, ask=ask).solve(PNG, "image/png")
        == "k7q2"
    )
    shown = list(tmp_path.glob("creditwatch-captcha-*.png"))
    assert len(shown) == 1 and shown[0].read_bytes() == PNG
    assert str(shown[0]) in asked[0]


def test_solver_from_settings() -> None:
    assert isinstance(solver_from_settings(Settings({})), ManualSolver)
    assert not solver_from_settings(Settings({})).interactive  # type: ignore[attr-defined]
    assert isinstance(solver_from_settings(Settings({"CW_CAPTCHA": "none"})), NoSolver)
    command = solver_from_settings(
        Settings({"CW_CAPTCHA": "command", "CW_CAPTCHA_COMMAND": "ocr --digits 'a b'"})
    )
    assert isinstance(command, CommandSolver) and command.argv == ["ocr", "--digits", "a b"]
    plugged = solver_from_settings(
        Settings({"CW_CAPTCHA": "tests.test_creditchina_captcha:fixed_solver"})
    )
    assert plugged.solve(PNG) == "PLUG"
    with pytest.raises(CaptchaConfigError):
        solver_from_settings(Settings({"CW_CAPTCHA": "command"}))
    with pytest.raises(CaptchaConfigError):
        solver_from_settings(Settings({"CW_CAPTCHA": "ocr-service"}))


class _Fixed:
    name = "fixed"

    def solve(self, image: bytes, content_type: str | None = None) -> str | None:
        return "PLUG"


def fixed_solver(settings: Any) -> _Fixed:
    return _Fixed()


# --- In a replayed run --------------------------------------------------------------------


def with_captcha(data: dict[str, Any]) -> str:
    """Day 2 whose first list call first demands a captcha, then (after K7Q2) answers."""
    target = api_interaction(data, "catalogSearchPerson", "credit_zgf_zrr_sxbzxr_jb", "page=1&")
    demand = copy.deepcopy(target)
    answer(demand, 400, '{"status":400,"message":"请输入验证码","data":null}', "application/json")
    image = copy.deepcopy(target)
    image["request"]["uri"] = API + "verify/getVerify"  # its _v is filtered like rcwCQitg
    answer(image, 200, PNG, "image/png")
    check = copy.deepcopy(target)
    check["request"].update(
        uri=API + "verify/checkVerify",
        method="POST",
        body=f"verifyInput={ANSWER}",
        headers={"Content-Type": ["application/x-www-form-urlencoded"]},
    )
    passed = (CC / "samples" / "verify_checkVerify_success.json").read_text(encoding="utf-8")
    answer(check, 200, passed, "application/json")
    at = data["interactions"].index(target)
    data["interactions"][at:at] = [demand, image, check]  # played before the data itself
    return target["request"]["uri"]


@pytest.fixture(scope="module")
def day1_database(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cc-captcha-day1") / "creditwatch.sqlite"
    replay_cc(f"sqlite:///{path}", CC_DAY1)
    return path


def day1_copy(template: Path, tmp_path: Path) -> str:
    target = tmp_path / "creditwatch.sqlite"
    with closing(sqlite3.connect(template)) as source, closing(sqlite3.connect(target)) as dest:
        source.backup(dest)
    return f"sqlite:///{target}"


@needs_chromium
def test_command_solver_clears_the_captcha_and_the_run_stays_healthy(
    day1_database: Path, tmp_path: Path, netguard: Path
) -> None:
    data = load_cassette(CC_DAY2)
    with_captcha(data)
    cassette = save_cassette(data, tmp_path / "day2-captcha.yaml")
    db_url = day1_copy(day1_database, tmp_path)
    run_id = replay_cc(
        db_url, cassette, captcha="command", captcha_command=script(tmp_path, SOLVER)
    )
    assert list_health(db_url, run_id)["creditchina.sxbzxr"].health == "healthy"
    logged = fetches(db_url, run_id)
    solved = [f for f in logged if f.outcome == "captcha_required"]
    assert [(f.list, f.detail) for f in solved] == [("creditchina.session", "solved")]
    assert any(f.url == API + "verify/checkVerify" and f.outcome == "ok" for f in logged)
    delisted = {e["list"] for e in events(db_url, run_id) if e["event"] == "delisted"}
    # The list-mode lists are read in part (coverage: partial): absence there delists nothing.
    assert delisted == {"creditchina.watch_xzcf"}
    assert netguard.read_text() == ""


@needs_chromium
def test_wrong_answer_is_captcha_required_and_delists_nothing(
    day1_database: Path, tmp_path: Path
) -> None:
    data = load_cassette(CC_DAY2)
    url = with_captcha(data)
    cassette = save_cassette(data, tmp_path / "day2-captcha.yaml")
    db_url = day1_copy(day1_database, tmp_path)
    wrong = script(tmp_path, "import sys; sys.stdin.buffer.read(); print('ZZZZ')")
    run_id = replay_cc(db_url, cassette, captcha="command", captcha_command=wrong)
    health = list_health(db_url, run_id)
    assert all(h.health != "healthy" for h in health.values())
    findings = health["creditchina.sxbzxr"].findings
    assert any(f.get("outcome") == "captcha_required" and url in f["urls"] for f in findings)
    assert [e for e in events(db_url, run_id) if e["event"] == "delisted"] == []
