"""CLI: `creditwatch pending`: delistings held by the mass-delisting guard, and deciding them.

A healthy run that would delist more of a list than its ``delisting_guard`` allows holds
those entries as ``pending`` and alerts the maintainers (``storage.lifecycle``). Here a
maintainer lists them, then releases them (the ``delisted`` events are raised as by the
holding run, and their alerts queued) or discards them (no event; absences count anew).
"""

from __future__ import annotations

import getpass
import os
from collections import Counter
from typing import Annotated, Any

import typer
from rich.markup import escape

from alerts.outbox import enqueue_run
from core.clock import SHANGHAI
from core.registry import RegistryError, get_source, load_registry
from pipeline.cli.console import (
    connect,
    fail,
    hint_if_empty,
    known_source,
    listing,
    out,
    print_json_lines,
)
from storage.pending import STATES, Selection, discard, list_pending, release

app = typer.Typer(
    help="Delistings held by the mass-delisting guard: list, release, discard.",
    no_args_is_help=True,
)

RunOpt = Annotated[str | None, typer.Option("--run", help="Held by this run (e.g. xmtravel:2).")]
ListOpt = Annotated[
    str | None, typer.Option("--list", help="Of this list: full id, or suffix with --source.")
]
SourceOpt = Annotated[str | None, typer.Option("--source", help="Only this source.")]
AllOpt = Annotated[bool, typer.Option("--all", help="Every pending delisting (of --source).")]
ByOpt = Annotated[str | None, typer.Option("--by", help="Who decides (default: your login).")]
NoteOpt = Annotated[str | None, typer.Option("--note", help="Why, kept with the decision.")]


def release_pending(
    conn: Any, selection: Any, *, by: str | None = None, note: str | None = None
) -> Any:
    """Release the selected held delistings and queue the alerts of their events, in the
    caller's transaction; returns the ``storage.pending.Decision``."""
    decision = release(conn, selection, by=by, note=note)
    decision.alerts = sum(
        enqueue_run(conn, run_id, event_ids=ids) for run_id, ids in decision.events.items() if ids
    )
    return decision


def _resolve_list(list_ref: str | None, source: str | None) -> str | None:
    if list_ref is None:
        return None
    try:
        if source:
            return get_source(source).list(list_ref).id
        if "." in list_ref:
            return list_ref
        found = [
            lst.id
            for src in load_registry().values()
            for lst in src.lists
            if lst.short_id == list_ref
        ]
    except RegistryError as exc:
        raise fail(escape(str(exc))) from None
    if len(found) != 1:
        where = f"lists {', '.join(found)}" if found else "no list"
        raise fail(f"--list {list_ref!r} names {where}: give the full id or --source")
    return found[0]


def _selection(run: str | None, list_ref: str | None, source: str | None, everything: bool):
    if not (run or list_ref or everything):
        raise fail("say which held delistings: --run RUN, --list LIST or --all")
    known_source(source)
    return Selection(
        run_id=run,
        list_id=_resolve_list(list_ref, source),
        source=source,
        everything=everything,
    )


def _who(by: str | None) -> str:
    if by:
        return by
    try:
        return getpass.getuser()
    except Exception:  # no login name (containers): say so rather than fail
        return os.environ.get("USER") or "unknown"


def _local(value: Any) -> str:
    return value.astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M") if value else "—"


def _row_json(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "source": row.source,
        "list": row.list,
        "record_key": row.record_key,
        "entity_id": row.entity_id,
        "entity_name": row.entity_name,
        "run_id": row.run_id,
        "held_at": row.held_at.isoformat() if row.held_at else None,
        "status_before": row.status_before,
        "state": row.state,
        "decided_at": row.decided_at.isoformat() if row.decided_at else None,
        "decided_by": row.decided_by,
        "note": row.note,
        "guard": row.guard,
    }


@app.command("list")
def pending_list(
    source: SourceOpt = None,
    list_ref: ListOpt = None,
    run: RunOpt = None,
    state: Annotated[
        str,
        typer.Option(help="pending, released, discarded, returned, superseded, or all."),
    ] = "pending",
    entries: Annotated[bool, typer.Option("--entries", help="Every held entry too.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="JSON Lines, one held entry each.")] = (
        False
    ),
) -> None:
    """Held delistings by holding run and list (with --entries or --json: each entry)."""

    if state != "all" and state not in STATES:
        raise fail(f"--state is one of {', '.join(STATES)} or all")
    list_id = _resolve_list(list_ref, source)
    with connect() as conn:
        source = known_source(source, conn)
        hint_if_empty(conn)
        rows = list_pending(
            conn,
            source=source,
            list_id=list_id,
            run_id=run,
            state=None if state == "all" else state,
        )
    if as_json:
        print_json_lines(map(_row_json, rows))
        return
    if not rows:
        out.print(f"no {'' if state == 'all' else state + ' '}held delistings")
        return
    groups: dict[tuple[str, str, str], list[Any]] = {}
    for row in rows:
        groups.setdefault((row.run_id, row.list, row.state), []).append(row)
    table = listing("held by run", "held at (Shanghai)", "list", "state", "entries", "guard")
    for (run_id, list_id_, row_state), members in groups.items():
        kinds = Counter(m.status_before for m in members)
        guard = members[0].guard or {}
        measure = (
            f"{guard.get('would_delist')} of {guard.get('active')} active "
            f"(> {guard.get('share', 0):.0%} and ≥ {guard.get('min_count')})"
            if guard
            else "—"
        )
        count = ", ".join(f"{n} {k}" for k, n in sorted(kinds.items()))
        table.add_row(run_id, _local(members[0].held_at), list_id_, row_state, count, measure)
    out.print(table)
    if entries:
        detail = listing("run", "list", "record_key", "entity", "was", "state", "decided")
        for row in rows:
            decided = f"{_local(row.decided_at)} {row.decided_by or ''}".strip()
            detail.add_row(
                *map(escape, (
                    row.run_id, row.list, row.record_key, row.entity_name or "—",
                    row.status_before, row.state, decided if row.decided_at else "—",
                ))
            )  # fmt: skip
        out.print(detail)


def _report(verb: str, decision: Any) -> None:
    if not decision.total:
        out.print("no pending held delistings match: nothing done")
        return
    for (run_id, list_id), count in sorted(decision.rows.items()):
        out.print(f"{verb} {count} held entries of {list_id} (held by {run_id})")


@app.command("release")
def pending_release(
    run: RunOpt = None,
    list_ref: ListOpt = None,
    source: SourceOpt = None,
    everything: AllOpt = False,
    by: ByOpt = None,
    note: NoteOpt = None,
) -> None:
    """The portal really dropped them: raise their `delisted` events (cause disappeared, as
    the holding run) and queue the alerts; their records become removed."""
    selection = _selection(run, list_ref, source, everything)
    with connect() as conn, conn.begin():
        decision = release_pending(conn, selection, by=_who(by), note=note)
    _report("released", decision)
    if decision.total:
        out.print(f"{decision.event_count} delisted events raised, {decision.alerts} alerts queued")


@app.command("discard")
def pending_discard(
    run: RunOpt = None,
    list_ref: ListOpt = None,
    source: SourceOpt = None,
    everything: AllOpt = False,
    by: ByOpt = None,
    note: NoteOpt = None,
) -> None:
    """The run was wrong: drop the holds without any event; the entries' absences count
    again from zero."""
    selection = _selection(run, list_ref, source, everything)
    with connect() as conn, conn.begin():
        decision = discard(conn, selection, by=_who(by), note=note)
    _report("discarded", decision)
