"""The ``creditwatch`` command line: one Typer app assembled from the command modules.

Each module (``sources``, ``runs``, ``data``, ``entity``, ``watch``, ``delivery``, ``health``,
``pending``, ``schedule``, ``database``) owns its commands and imports only ``console`` from
here, so the package has no import circle; this file only puts them together.
``python scripts/cli_reference.py`` writes the reference of every command to docs/cli.md."""

from __future__ import annotations

import os
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Annotated

import typer

from pipeline.cli import (
    data,
    database,
    delivery,
    doctor,
    entity,
    health,
    pending,
    runs,
    schedule,
    sources,
    watch,
    worker,
)
from pipeline.cli.console import fail, run
from storage.engine import DATA_DIR_ENV

app = typer.Typer(
    help="Scheduled spiders, one schema and change detection for China's public credit portals.",
    no_args_is_help=True,
    add_completion=False,
)
for commands in (runs.app, data.app, entity.app, delivery.feeds, health.app, schedule.app):
    app.add_typer(commands)
app.add_typer(doctor.app)
app.add_typer(worker.app)
app.add_typer(sources.app, name="sources")
app.add_typer(database.app, name="db")
app.add_typer(watch.app, name="watch")
app.add_typer(delivery.app, name="alerts")
app.add_typer(pending.app, name="pending")


def _version() -> str:
    """The installed distribution's version (its metadata, as pip installed it)."""
    try:
        return version("creditwatch")
    except PackageNotFoundError:  # a checkout run without installing it
        return "0+unknown"


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"creditwatch {_version()}")
        raise typer.Exit()


@app.callback()
def options(
    data_dir: Annotated[
        Path | None,
        typer.Option(
            "--data-dir",
            file_okay=False,
            help=f"The directory of the SQLite database (as {DATA_DIR_ENV}; default ./data), "
            "e.g. data/demo for the demo's.",
        ),
    ] = None,
    version_: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_print_version,
            is_eager=True,
            help="Print creditwatch's version and exit.",
        ),
    ] = False,
) -> None:
    # The options before the command; the app's help is the Typer's own (above).
    if data_dir is None:
        return
    if os.environ.get("DATABASE_URL"):
        raise fail("--data-dir names a SQLite database, but DATABASE_URL is set and wins: unset it")
    # Through the environment, so the crawl's child processes use the same directory.
    os.environ[DATA_DIR_ENV] = str(data_dir)


def main() -> None:
    """The console entry point: ``app``, with one line instead of a traceback for a usage
    mistake or a database that cannot be used (``console.run``)."""
    run(app)
