"""CLI: `creditwatch entity`: one organisation across every source and list.

An entity is its USCC, or (without one) its name key + jurisdiction (``storage.entities``):
the command lists every entry it is or was on, with its status now, the dates it was
listed and delisted, the cause, and the evidence (source page, archived response).
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from pipeline.cli.console import JsonFlag, connect, fail, listing, out, print_json_lines
from storage.entities import Entity, find

app = typer.Typer()

FORMATS = ("table", "jsonl")


def _describe(entity: Entity) -> str:
    names = " / ".join(entity.names) or "—"
    if entity.kind == "uscc":
        return f"USCC {entity.uscc}: {names}"
    if entity.kind == "person":
        return f"person {entity.entity_ids[0]}: {names}"
    return f"{names} (no USCC; jurisdiction {entity.jurisdiction or 'national/unknown'})"


def _table(entity: Entity) -> Table:
    table = listing(
        "list", "kind", "entry", "status", "listed", "delisted", "cause", "evidence",
        title=escape(_describe(entity)), title_justify="left",
    )  # fmt: skip
    for entry in entity.listings:
        s = entry.summary
        evidence = " ".join(
            x for x in (s["source_url"], s["raw_sha256"] and f"sha256:{s['raw_sha256']}") if x
        )
        table.add_row(
            escape(s["list"]),
            escape(s["list_kind"] or "—"),
            escape(s["case_number"] or s["title"] or s["record_key"]),
            escape(s["status"]),
            escape(s["listed_at"] or "—"),
            escape(s["delisted_at"] or "—"),
            escape(s["delisted_cause"] or "—"),
            escape(evidence or "—"),
        )
    return table


def _narrowing(query: str, entities: list[Entity]) -> str:
    lines = [f"{len(entities)} entities are called {query!r}:"]
    for entity in entities:
        lines.append(f"  {_describe(entity)}; entries: {len(entity.listings)}")
    lines.append(
        "Narrow it: give the USCC (creditwatch entity CODE), or the jurisdiction "
        "(--region, a GB/T 2260 code or prefix, e.g. 3502)."
    )
    return "\n".join(lines)


@app.command()
def entity(
    query: Annotated[str, typer.Argument(help="A USCC (统一社会信用代码), or a name.")],
    region: Annotated[
        str | None,
        typer.Option(
            "--region", help="Jurisdiction of a name: a GB/T 2260 code or prefix (e.g. 3502)."
        ),
    ] = None,
    format_: Annotated[str, typer.Option("--format", help="table or jsonl.")] = "table",
    as_json: JsonFlag = False,
) -> None:
    """Every list an organisation is or was on, across all sources, with dates and evidence.

    By USCC (the same code in every source is one entity), else by name: names compare as
    their name key (full/half width, traditional/simplified, spaces) and, without a USCC,
    the same name in two jurisdictions is two entities. Exits 1 when nothing matches; when a
    name matches several entities they are listed, and --region or the USCC narrows it.
    """
    if format_ not in FORMATS:
        raise fail(f"--format is one of {', '.join(FORMATS)} (got {format_!r})")
    if region is not None and not (region.isdigit() and 2 <= len(region) <= 6):
        raise fail(f"--region takes a GB/T 2260 code or prefix of 2 to 6 digits (got {region!r})")
    with connect(reading=True) as conn:
        found = find(conn, query.strip(), region)
    if not found:
        where = f" in region {region}" if region else ""
        raise fail(f"no entity matches {escape(query)!r}{where}", code=1)
    if len(found) > 1:
        raise fail(escape(_narrowing(query, found)), code=1)
    (one,) = found
    if as_json or format_ == "jsonl":
        print_json_lines(
            {"entity": one.key, **entry.summary, "events": entry.events} for entry in one.listings
        )
        return
    out.print(_table(one))
