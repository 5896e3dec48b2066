"""CLI: `creditwatch worker`: a crawl worker taking jobs from the queue on PostgreSQL
(``pipeline/worker.py``); `creditwatch schedule --queue` fills it."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape

from pipeline.cli.console import fail
from pipeline.cli.schedule import daemon_logging


def worker(
    concurrency: Annotated[
        int, typer.Option(help="Crawls at once in this worker (each one a Scrapy process).")
    ] = 2,
    stop_timeout: Annotated[
        float,
        typer.Option(
            help="On SIGTERM, seconds to wait for crawls in progress before stopping them "
            "(their jobs go back to the queue)."
        ),
    ] = 900,
    heartbeat: Annotated[
        float,
        typer.Option(help="Seconds between this worker's heartbeats and its sweeps for dead ones."),
    ] = 10,
    stalled_after: Annotated[
        float,
        typer.Option(
            help="Seconds without a heartbeat after which a worker is taken for dead: its runs "
            "are aborted and its jobs retried (the same on every worker)."
        ),
    ] = 30,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Log procrastinate's own lines too.")
    ] = False,
) -> None:
    """Take crawl jobs from the queue (PostgreSQL only): any number of workers on any hosts
    share one database, and `creditwatch schedule --queue` decides when each source is
    crawled. The queue runs one crawl of a source at a time. A worker that dies (killed,
    host gone) is noticed by the others after --stalled-after seconds: its run is marked
    aborted and its crawl is run again. SIGTERM lets crawls in progress finish (up to
    --stop-timeout); a second SIGTERM stops them and puts their jobs back in the queue."""
    from pipeline.worker import CrawlWorker, WorkerError, WorkerOptions

    try:
        options = WorkerOptions(
            concurrency=concurrency,
            stop_timeout=stop_timeout,
            heartbeat=heartbeat,
            stalled_after=stalled_after,
        )
        crawl_worker = CrawlWorker(options)
    except WorkerError as exc:
        raise fail(escape(str(exc))) from None
    daemon_logging(verbose)
    code = crawl_worker.serve()
    if code:
        raise typer.Exit(code)


app = typer.Typer()
app.command("worker")(worker)
