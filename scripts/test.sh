#!/usr/bin/env bash
# Set up everything (virtualenv, Chromium, PostgreSQL) and run all checks: ruff, import
# layers, mypy, then pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh --browser --postgres
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/lint-imports
.venv/bin/mypy core storage
.venv/bin/python -m pytest "$@"
