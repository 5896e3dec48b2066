"""`creditwatch db`: the database's schema revision."""

from __future__ import annotations

import typer

from pipeline.cli.console import out
from storage.engine import (
    current_revision,
    database_url,
    upgrade,
)

app = typer.Typer(help="Database maintenance.", no_args_is_help=True)


@app.command("upgrade")
def db_upgrade() -> None:
    """Bring the database (DATABASE_URL, default ./data/creditwatch.sqlite) to the newest schema."""
    upgrade()
    out.print(f"{database_url()} at revision {current_revision()}")


@app.command("status")
def db_status() -> None:
    """Which database is in use and its schema revision."""
    out.print(f"{database_url()} at revision {current_revision() or '(empty)'}")
