"""What every command module shares: the consoles, the error exit, the database connection
and date options. Command modules import this; it imports none of them."""

from __future__ import annotations

import sys
from datetime import date
from typing import Any

import typer
from rich.console import Console

from storage.engine import get_engine, upgrade

# Piped output (CI logs, files) gets a wide fixed width instead of rich's 80 columns.
out = Console(width=None if sys.stdout.isatty() else 200, soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


def fail(message: str, code: int = 2) -> typer.Exit:
    err.print(f"[red]error:[/red] {message}")
    return typer.Exit(code)


def connect() -> Any:
    upgrade()
    return get_engine().connect()


def parse_date(value: str | None, option: str) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise fail(f"{option} takes a date, YYYY-MM-DD (got {value!r})") from None
