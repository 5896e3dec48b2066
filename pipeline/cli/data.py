"""Commands that hand data out: records, dated snapshots, diffs between two dates and the
web app."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from core.registry import RegistryError, get_source, load_registry
from core.schema import RECORD_FIELDS
from export.formats import write_csv, write_jsonl
from export.snapshots import MANIFEST, SnapshotError, write_snapshot
from pipeline.cli.console import JsonFlag, connect, err, fail, listing, out, parse_date
from storage.asof import DIFF_FIELDS, export_records
from storage.asof import diff as diff_lists
from storage.engine import (
    upgrade,
)

app = typer.Typer()


@app.command()
def export(
    source: Annotated[str, typer.Argument(help="Source id.")],
    list_: Annotated[str | None, typer.Option("--list", help="Full list id or its suffix.")] = None,
    include_removed: Annotated[bool, typer.Option(help="Also entries now removed.")] = False,
    format: Annotated[str, typer.Option(help="jsonl or csv.")] = "jsonl",
    out_path: Annotated[Path | None, typer.Option("--out", help="File (default stdout).")] = None,
    raw: Annotated[
        bool, typer.Option(help="CSV: cells verbatim, even those a spreadsheet runs as formulas.")
    ] = False,
) -> None:
    """Records in the schema, one per row: what each list's latest healthy run saw."""
    try:
        src = get_source(source)
        lists = [src.list(list_).id] if list_ else list(src.list_ids)
    except RegistryError as exc:
        raise fail(escape(str(exc))) from None
    if format not in ("jsonl", "csv"):
        raise fail("--format is jsonl or csv")
    with connect(reading=True) as conn:
        records, unvouched = export_records(conn, src.id, lists, include_removed=include_removed)
    for list_id in unvouched:
        err.print(f"[yellow]warning:[/yellow] {list_id} has no healthy run yet; none exported")
    stream = out_path.open("w", encoding="utf-8", newline="") if out_path else sys.stdout
    try:
        if format == "csv":
            count = write_csv(records, stream, RECORD_FIELDS, raw=raw)
        else:
            count = write_jsonl(records, stream)
    finally:
        if out_path:
            stream.close()
    if out_path:
        err.print(f"{count} records → {out_path}")


def _sources_and_lists(source: str, list_: list[str] | None) -> tuple[list[str], list[str]]:
    """``all`` or one source id, and the full ids of the lists asked for (all when none)."""
    try:
        sources = sorted(load_registry()) if source == "all" else [get_source(source).id]
        if not list_:
            return sources, []
        found = []
        for ref in list_:
            matches = [
                lst.id
                for src in sources
                for lst in get_source(src).lists
                if ref in (lst.id, lst.short_id)
            ]
            if len(matches) != 1:
                raise RegistryError(
                    f"list {ref!r} " + ("is ambiguous" if matches else f"is not in {source}")
                )
            found.append(matches[0])
        return sources, found
    except RegistryError as exc:
        raise fail(escape(str(exc))) from None


@app.command()
def snapshot(
    source: Annotated[str, typer.Argument(help="A source id, or all.")] = "all",
    list_: Annotated[
        list[str] | None, typer.Option("--list", help="Only this list (repeatable).")
    ] = None,
    as_of: Annotated[
        str | None, typer.Option(help="YYYY-MM-DD (Asia/Shanghai); default: the newest.")
    ] = None,
    format: Annotated[str, typer.Option(help="parquet, csv, jsonl, xlsx or ftm.")] = "parquet",
    out_dir: Annotated[Path, typer.Option("--out", help="Directory to write into.")] = Path(
        "snapshot"
    ),
    redact: Annotated[bool, typer.Option(help="Shorten persons' names, drop masked IDs.")] = False,
    bom: Annotated[bool, typer.Option(help="CSV: a UTF-8 byte-order mark, for Excel.")] = False,
    raw: Annotated[
        bool, typer.Option(help="CSV: cells verbatim, even those a spreadsheet runs as formulas.")
    ] = False,
) -> None:
    """Dated, reproducible files of every list, with manifest.json and a data dictionary."""
    sources, lists = _sources_and_lists(source, list_)
    when = parse_date(as_of, "--as-of")
    try:
        with connect(reading=True) as conn:
            manifest = write_snapshot(
                conn, out_dir, sources=sources, lists=lists or None, as_of=when, fmt=format,
                redact=redact, bom=bom, raw=raw,
            )  # fmt: skip
    except SnapshotError as exc:
        raise fail(escape(str(exc))) from None
    for src in manifest["sources"]:
        for lst in src["lists"]:
            run = lst["run"]
            if run is None:
                err.print(f"[yellow]warning:[/yellow] {lst['list']}: {lst['note']}; not written")
            else:
                out.print(
                    f"{lst['list']:<28} {lst['rows']:>8} rows  as of {run['run_id']} "
                    f"({run['at'][:10]}, run {run['run_state']})",
                    markup=False,
                )
    out.print(f"wrote {len(manifest['files'])} file(s) and {MANIFEST} to {out_dir}")


def _diff_table(rows: list[dict[str, Any]]) -> Any:
    table = listing("change", "list", "entity", "case / title", "status", "cause / fields")
    for row in rows:
        status = f"{row['status_from'] or '—'} → {row['status_to'] or '—'}"
        detail = row["cause"] or ""
        if row["changes"]:
            detail = "; ".join(
                f"{name}: {json.dumps(old, ensure_ascii=False)} → "
                f"{json.dumps(new, ensure_ascii=False)}"
                for name, (old, new) in row["changes"].items()
            )
        cells = (
            row["change"], row["list"], row["entity_name"] or "",
            row["case_number"] or row["title"] or "", status, detail,
        )  # fmt: skip
        table.add_row(*map(escape, cells))
    return table


@app.command()
def diff(
    source: Annotated[str, typer.Argument(help="Source id.")],
    from_: Annotated[str, typer.Option("--from", help="YYYY-MM-DD, the earlier state.")],
    to: Annotated[str, typer.Option("--to", help="YYYY-MM-DD, the later state.")],
    list_: Annotated[
        list[str] | None, typer.Option("--list", help="Only this list (repeatable).")
    ] = None,
    format: Annotated[str, typer.Option(help="table, jsonl or csv.")] = "table",
    raw: Annotated[
        bool, typer.Option(help="CSV: cells verbatim, even those a spreadsheet runs as formulas.")
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """Entries added, removed (with the cause) and changed (field by field) between two dates."""
    if source == "all":
        raise fail("diff compares one source's lists: name the source")
    sources, lists = _sources_and_lists(source, list_)
    if format not in ("table", "jsonl", "csv"):
        raise fail("--format is table, jsonl or csv")
    if as_json:
        format = "jsonl"
    start, end = parse_date(from_, "--from"), parse_date(to, "--to")
    assert start is not None and end is not None
    if start > end:
        raise fail("--from is after --to")
    wanted = lists or list(get_source(sources[0]).list_ids)
    with connect(reading=True) as conn:
        rows, runs = diff_lists(conn, sources[0], wanted, start, end)
    for list_id, (before, after) in runs.items():
        err.print(
            f"{list_id}: {before.run_id if before else 'nothing vouched'} → "
            f"{after.run_id if after else 'nothing vouched'}",
            markup=False,
        )
    if format == "table":
        out.print(_diff_table(rows))
    elif format == "jsonl":
        write_jsonl(rows, sys.stdout)
    else:
        write_csv(rows, sys.stdout, DIFF_FIELDS, raw=raw)


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 8000,
    snapshots: Annotated[
        Path | None, typer.Option(help="Directory of snapshots to offer (default: DATA/snapshots).")
    ] = None,
    redact: Annotated[bool, typer.Option(help="Shorten persons' names, hide masked IDs.")] = False,
) -> None:
    """A read-only web app over the database: lists, search, entities, snapshots, JSON API."""
    from web.app import serve as run_server  # FastAPI only when serving

    upgrade()
    run_server(host=host, port=port, snapshots_dir=snapshots, redact=redact)
