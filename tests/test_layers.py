"""The architecture as tests: layers in one direction, SQL only in storage, and no import
tucked inside a function to dodge a circle (docs/architecture.md)."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("core", "storage", "crawlers", "alerts", "export", "web", "pipeline")
# What building SQL takes; a connection or an engine passed through is fine anywhere.
SQL_BUILDERS = frozenset(
    {"select", "insert", "update", "delete", "text", "func", "and_", "or_", "case", "cast",
     "literal", "tuple_", "exists", "union", "union_all", "bindparam", "column", "table"}
)  # fmt: skip
# Imports made inside a function on purpose: each defers a heavy third-party library to the
# commands that need it. Anything else inside a function is a circle being dodged.
DEFERRED = {
    ("core/normalise/__init__.py", "segment"): "jieba's dictionary, only for name keys",
    ("export/dictionary.py", "export.parquet"): "pyarrow, only for the Parquet types",
    ("export/snapshots.py", "export.ftm"): "followthemoney, only for FtM snapshots",
    ("pipeline/cli/data.py", "web.app"): "FastAPI and uvicorn, only for `serve`",
    ("pipeline/cli/runs.py", "pipeline.probe"): "Playwright, only for `probe`",
    ("pipeline/cli/schedule.py", "pipeline.daemon"): "APScheduler, only for `schedule`",
    ("pipeline/cli/worker.py", "pipeline.worker"): "procrastinate, only for `worker`",
    ("pipeline/probe.py", "crawlers.browser"): "Playwright, only when a probe runs",
    ("pipeline/probe.py", "crawlers.cassette"): "vcrpy, only when a probe replays",
}


def modules(*packages: str) -> Iterator[tuple[str, ast.Module]]:
    for package in packages:
        for path in sorted((ROOT / package).rglob("*.py")):
            if "migrations" not in path.parts:
                yield path.relative_to(ROOT).as_posix(), ast.parse(path.read_text("utf-8"))


def test_the_import_contracts_hold() -> None:
    """pyproject.toml's import-linter contracts: layers, a pure core, no circles."""
    lint = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run(
        [str(lint)], cwd=ROOT, capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_sql_is_built_only_in_storage() -> None:
    found = []
    for name, tree in modules(*(p for p in PACKAGES if p != "storage")):
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("sqlalchemy"):
                names = {alias.name for alias in node.names}
                if node.module.startswith("sqlalchemy.sql") or names & SQL_BUILDERS:
                    found.append(f"{name}:{node.lineno} from {node.module} import {names}")
    assert not found, "SQL belongs in storage/:\n" + "\n".join(found)


def test_imports_inside_functions_only_defer_heavy_libraries() -> None:
    found = []
    for name, tree in modules(*PACKAGES):
        for function in ast.walk(tree):
            if not isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            for node in ast.walk(function):
                if not isinstance(node, ast.ImportFrom) or not node.module:
                    continue
                project = node.level > 0 or node.module.split(".")[0] in PACKAGES
                if project and (name, node.module) not in DEFERRED:
                    found.append(f"{name}:{node.lineno} from {node.module}")
    assert not found, "move these imports to the top of their module:\n" + "\n".join(found)
