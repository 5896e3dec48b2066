"""`creditwatch alerts` (delivering alerts) and `creditwatch feed`."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from alerts.channels import ChannelError, parse_channel, replace_file
from alerts.feed import feed_document
from alerts.links import base_url
from alerts.messages import sample_message
from alerts.sender import send_pending
from alerts.subscriptions import Subscription
from pipeline.cli.console import JsonFlag, connect, err, fail, listing, out, print_json_lines
from storage.engine import (
    get_engine,
    upgrade,
)
from storage.outbox import (
    alert_log,
    alert_subscriptions,
    requeue,
    subscription_rows,
)

app = typer.Typer(help="Delivering alerts.", no_args_is_help=True)
feeds = typer.Typer()  # `feed` is a top-level command


@app.command("send")
def alerts_send() -> None:
    """One pass over the outbox: bundle closed digest windows, deliver what is due. Alerts
    a channel's configuration blocks stay queued (``blocked``) until it is fixed."""
    upgrade()
    report = send_pending(get_engine())
    out.print(
        f"delivered {report['delivered']}, retry later {report['retry']}, "
        f"failed {report['failed']}, blocked {report['blocked']}, "
        f"digests bundled {report['digests']}"
    )
    for problem, status in sorted(report.problems.items(), key=lambda item: item[1]):
        kept = " (its alerts stay queued until this is fixed)" if status == "blocked" else ""
        err.print(f"[red]{status}:[/red] {escape(problem)}{kept}")
    if report["failed"] or report["blocked"]:
        raise typer.Exit(1)


@app.command("retry")
def alerts_retry(
    failed: Annotated[
        bool, typer.Option("--failed", help="Also alerts that failed for good (tries start over).")
    ] = False,
    subscription: Annotated[str | None, typer.Option(help="Only this subscription.")] = None,
) -> None:
    """Put alerts blocked by a configuration error (and, with --failed, alerts that failed
    for good) back to pending, due now: the next `alerts send` delivers them."""
    upgrade()
    statuses = ("blocked", "failed") if failed else ("blocked",)
    with get_engine().begin() as conn:
        _known_subscription(conn, subscription)
        count = requeue(conn, statuses, subscription, datetime.now(UTC))
    out.print(f"{count} alert(s) back to pending")


@app.command("test")
def alerts_test(
    channel: Annotated[str, typer.Argument(help="A channel spec, as in a subscription.")],
    language: Annotated[str, typer.Option(help="zh or en.")] = "zh",
) -> None:
    """Send a sample alert to a channel, to check it is set up."""
    try:
        receipt = parse_channel(channel).deliver(sample_message(language, base_url=base_url()))
    except (ChannelError, ValueError) as exc:
        raise fail(f"{channel}: {exc}") from None
    out.print(f"sent: {receipt}", markup=False)


@app.command("log")
def alerts_log(
    subscription: Annotated[str | None, typer.Option(help="Only this subscription.")] = None,
    limit: Annotated[int, typer.Option(help="How many, newest first.")] = 50,
    as_json: JsonFlag = False,
) -> None:
    """What went where, when, with what result."""
    with connect() as conn:
        _known_subscription(conn, subscription)
        rows = alert_log(conn, subscription, limit)
    if as_json:
        print_json_lines(
            {
                "id": row.id, "kind": row.kind, "about": _about(row),
                "subscription": row.subscription, "channel": row.channel,
                "status": row.status, "attempts": row.attempts, "run_id": row.run_id,
                "event_ids": row.event_ids or [], "created_at": row.created_at,
                "delivered_at": row.delivered_at, "receipt": row.receipt,
                "last_error": row.last_error,
            }
            for row in rows
        )  # fmt: skip
        return
    table = listing(
        "id", "about", "subscription", "channel", "status", "tries", "delivered (UTC)", "result"
    )
    for row in rows:
        cells = (
            str(row.id), _about(row), row.subscription, row.channel, row.status,
            str(row.attempts),
            row.delivered_at.strftime("%Y-%m-%d %H:%M:%S") if row.delivered_at else "—",
            row.receipt or row.last_error or "",
        )  # fmt: skip
        table.add_row(*map(escape, cells))  # receipts quote servers, not rich markup
    out.print(table)


def _known_subscription(conn: Any, subscription: str | None, with_alerts: bool = True) -> None:
    """A usage error (exit 2) naming the subscriptions when ``subscription`` is none of them;
    unless ``with_alerts`` is off, a removed subscription whose alerts remain still counts."""
    if subscription is None:
        return
    removed_with_alerts = alert_subscriptions(conn) if with_alerts else []
    known = sorted({row.id for row in subscription_rows(conn)}.union(removed_with_alerts))
    if subscription not in known:
        raise fail(
            escape(f"no subscription {subscription!r} (known: {', '.join(known) or 'none'})")
        )


def _about(row: Any) -> str:
    """What an outbox row is about, from its frozen payload: the event and entity, the
    digest's size or the health problem."""
    payload = row.payload or {}
    if row.kind == "event":
        event = payload["context"]["event"]
        return f"{event['event']} {event.get('entity_name') or event['record_key']}"
    if row.kind == "digest":
        return f"digest of {len(row.event_ids or [])} event(s)"
    return f"health {payload.get('source')}: {payload.get('problem')}"


@feeds.command()
def feed(
    subscription: Annotated[str, typer.Argument(help="A subscription id.")],
    out_path: Annotated[Path, typer.Option("--out", help="Where to write the Atom file.")],
) -> None:
    """Write a subscription's alerts as an Atom feed (newest first)."""
    with connect() as conn:
        _known_subscription(conn, subscription, with_alerts=False)
        row = next(r for r in subscription_rows(conn) if r.id == subscription)
        data = feed_document(conn, Subscription.from_dict(row.data))
    replace_file(out_path, data)  # whole or not at all, readable by the feed reader
    out.print(f"wrote {out_path}")
