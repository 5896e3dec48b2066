"""`creditwatch watch`: subscriptions, who hears about what."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from alerts.channels import parse_channel
from alerts.subscriptions import Subscription, load_file
from core.clock import TIMEZONE_NAME
from pipeline.cli.console import JsonFlag, connect, fail, listing, out, print_json_lines
from storage.engine import (
    get_engine,
    upgrade,
)
from storage.outbox import (
    delete_subscription,
    save_subscription,
    subscription_rows,
)

app = typer.Typer(help="Subscriptions: who hears about what.", no_args_is_help=True)


Many = Annotated[list[str] | None, typer.Option()]


@app.command("add")
def watch_add(
    subscription_id: Annotated[str, typer.Argument(metavar="ID")],
    channel: Annotated[
        list[str], typer.Option(help="email:…, webhook:…, feed:PATH, or an apprise URL.")
    ],
    uscc: Many = None,
    name: Annotated[list[str] | None, typer.Option(help="Exact entity name.")] = None,
    fuzzy_name: Annotated[list[str] | None, typer.Option(help="Fuzzy entity name.")] = None,
    threshold: Annotated[float, typer.Option(help="Fuzzy score to reach (0-100).")] = 90.0,
    keyword: Annotated[list[str] | None, typer.Option(help="Word(s) in reason or measure.")] = None,
    region: Annotated[list[str] | None, typer.Option(help="GB/T 2260 code prefix.")] = None,
    source: Many = None,
    list_id: Annotated[list[str] | None, typer.Option("--list", help="Full list id.")] = None,
    kind: Annotated[list[str] | None, typer.Option(help="list_kind, e.g. blacklist.")] = None,
    event: Annotated[
        list[str] | None, typer.Option(help="listed, relisted, modified, delisted.")
    ] = None,
    mode: Annotated[str, typer.Option(help="immediate, hourly or daily.")] = "immediate",
    timezone: Annotated[str, typer.Option(help="Time zone of digest windows.")] = TIMEZONE_NAME,
    language: Annotated[str, typer.Option(help="zh or en.")] = "zh",
    baseline: Annotated[bool, typer.Option(help="Also alert a list's baseline.")] = False,
    health: Annotated[bool, typer.Option(help="Maintainers: also source-health alerts.")] = False,
    health_only: Annotated[
        bool, typer.Option(help="Maintainers: source-health alerts and no events.")
    ] = False,
    title: Annotated[str | None, typer.Option(help="Its feeds' title (one line).")] = None,
    base_url: Annotated[
        str | None,
        typer.Option(help="The web app its alerts link to (else CREDITWATCH_BASE_URL)."),
    ] = None,
) -> None:
    """Add (or replace) a subscription."""
    data: dict[str, Any] = {
        "id": subscription_id, "channels": channel, "uscc": uscc or [], "names": name or [],
        "fuzzy_names": fuzzy_name or [], "fuzzy_threshold": threshold, "keywords": keyword or [],
        "regions": region or [], "sources": source or [], "lists": list_id or [],
        "list_kinds": kind or [], "mode": mode, "timezone": timezone, "language": language,
        "include_baseline": baseline, "health": health or health_only,
        "title": title, "base_url": base_url,
    }  # fmt: skip
    if event or health_only:
        data["events"] = [] if health_only else event
    _save_subscriptions([_subscription(data)], origin="cli")
    out.print(f"subscription {subscription_id} saved")


def _subscription(data: dict[str, Any]) -> Subscription:
    try:
        subscription = Subscription.from_dict(data)
        for spec in subscription.channels:
            parse_channel(spec)
    except ValueError as exc:
        raise fail(escape(str(exc))) from None
    return subscription


def _save_subscriptions(subscriptions: list[Subscription], origin: str) -> None:
    now = datetime.now(UTC)
    upgrade()
    with get_engine().begin() as conn:
        for subscription in subscriptions:
            save_subscription(conn, subscription.as_dict(), origin, now)


@app.command("import")
def watch_import(path: Annotated[Path, typer.Argument(exists=True, dir_okay=False)]) -> None:
    """Add or replace the subscriptions of a YAML or TOML file (kept in git by a group)."""
    try:
        subscriptions = load_file(path)
        for subscription in subscriptions:
            for spec in subscription.channels:
                parse_channel(spec)
    except ValueError as exc:
        raise fail(escape(str(exc))) from None
    _save_subscriptions(subscriptions, origin=str(path))
    out.print(f"{len(subscriptions)} subscription(s) saved from {path}")


@app.command("list")
def watch_list(as_json: JsonFlag = False) -> None:
    """The subscriptions, what each follows and where it goes."""
    with connect() as conn:
        rows = subscription_rows(conn)
    if as_json:
        print_json_lines({**row.data, "id": row.id, "origin": row.origin} for row in rows)
        return
    table = listing("id", "follows", "scope", "mode", "lang", "channels", "origin")
    for row in rows:
        d = row.data
        follows = (
            "; ".join(
                f"{name}: {', '.join(map(str, d[name]))}"
                for name in ("uscc", "names", "fuzzy_names", "keywords", "regions")
                if d.get(name)
            )
            or "whole lists"
        )
        scope = "; ".join(
            f"{name}: {', '.join(d[name])}"
            for name in ("sources", "lists", "list_kinds", "events")
            if d.get(name)
        )
        cells = (
            row.id, follows, scope, d["mode"], d["language"], "\n".join(d["channels"]),
            row.origin or "",
        )  # fmt: skip
        table.add_row(*map(escape, cells))  # user text, not rich markup
    out.print(table)


@app.command("remove")
def watch_remove(subscription_id: Annotated[str, typer.Argument(metavar="ID")]) -> None:
    """Remove a subscription (alerts already in the outbox are still delivered)."""
    upgrade()
    with get_engine().begin() as conn:
        if not delete_subscription(conn, subscription_id):
            raise fail(f"no subscription {subscription_id!r}")
    out.print(f"subscription {subscription_id} removed")
