"""``creditwatch sources``: the declared sources, and ``sources add`` to start a new one.

``creditwatch sources`` alone lists them (as it always did). ``creditwatch sources add ID
--family F`` scaffolds a room, ``ID/source.yml`` in the sources directory
(``CREDITWATCH_SOURCES_DIR`` when set), from the family's commented template
(``crawlers/sources/_templates/<family>.yml``): a family is given a template by adding its
file there, no code. The scaffold is checked by the registry before it is written, it never
replaces an existing room, and the command prints the next steps (endpoints, a recorded
cassette, expected values)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from string import Template
from typing import Annotated, get_args

import typer
from rich.markup import escape
from rich.table import Table

from core.registry import (
    SHIPPED_SOURCES,
    SOURCE_FILE,
    ListKind,
    RegistryError,
    SourceDef,
    broken_sources,
    load_registry,
    parse_source,
    read_yaml,
    sources_dir,
)
from pipeline.cli.console import err, fail, out

TEMPLATES = SHIPPED_SOURCES / "_templates"
SOURCE_ID = re.compile(r"[a-z][a-z0-9_]*\Z")
REGION_CODE = re.compile(r"\d{6}\Z")
LIST_KINDS: tuple[str, ...] = get_args(ListKind)

# What a list of each kind is called and keyed by, unless told otherwise: decisions (penalties,
# licences) by their 决定书文号, everything else by its subject.
_KIND_NAMES = {
    "penalty": ("penalties", "行政处罚", "Administrative penalties"),
    "license": ("licences", "行政许可", "Administrative licences"),
    "blacklist": ("blacklist", "黑名单", "Blacklist"),
    "redlist": ("redlist", "红名单", "Red list"),
    "warning": ("warnings", "警示信息", "Warnings"),
    "good": ("good", "良好信息", "Good records"),
    "other": ("entries", "公示信息", "Published entries"),
}
_CASE_KINDS = ("penalty", "license")


class ScaffoldError(ValueError):
    """A scaffold that cannot be written: its message says why."""


def template_families(directory: Path = TEMPLATES) -> list[str]:
    """The families with a template: one ``<family>.yml`` each."""
    if not directory.is_dir():
        return []
    return sorted(path.stem for path in directory.glob("*.yml"))


@dataclass(frozen=True)
class Scaffold:
    """What a new source's declaration starts from."""

    source_id: str
    family: str
    name_zh: str
    name_en: str
    jurisdiction: str
    region_code: str
    base_url: str
    list_kind: str = "penalty"

    def values(self) -> dict[str, str]:
        """The template's fields, each a YAML scalar (JSON strings are YAML too, so a name
        holding ``:`` or ``#`` stays one value)."""
        list_id, list_zh, list_en = _KIND_NAMES[self.list_kind]
        by_case = self.list_kind in _CASE_KINDS
        required = (
            ["entity_name", "case_number", "decided_on"]
            if by_case
            else [
                "entity_name",
                "decided_on",
            ]
        )
        text = {
            "id": self.source_id,
            "name_zh": self.name_zh,
            "name_en": self.name_en,
            "jurisdiction": self.jurisdiction,
            "region_code": self.region_code,
            "base_url": self.base_url,
            "list_id": list_id,
            "list_name_zh": list_zh,
            "list_name_en": list_en,
            "list_kind": self.list_kind,
            "record_key": "case" if by_case else "subject",
        }
        values = {key: json.dumps(value, ensure_ascii=False) for key, value in text.items()}
        values["required_fields"] = json.dumps(required)
        return values


def render(scaffold: Scaffold, templates: Path = TEMPLATES) -> str:
    """The declaration's text, checked by the registry as it would be loaded."""
    families = template_families(templates)
    if scaffold.family not in families:
        raise ScaffoldError(
            f"no template for family {scaffold.family!r}; families: {', '.join(families)}"
        )
    if not SOURCE_ID.match(scaffold.source_id):
        raise ScaffoldError(
            f"source id {scaffold.source_id!r}: lower-case letters, digits and _, "
            "starting with a letter (it names the spider and fixtures/<id>/)"
        )
    if not REGION_CODE.match(scaffold.region_code):
        raise ScaffoldError(f"region code {scaffold.region_code!r}: six digits (GB/T 2260)")
    if scaffold.list_kind not in _KIND_NAMES:
        raise ScaffoldError(f"list kind {scaffold.list_kind!r}; kinds: {', '.join(LIST_KINDS)}")
    if not re.match(r"https?://[^/\s]+/", scaffold.base_url):
        raise ScaffoldError(f"base URL {scaffold.base_url!r}: http(s)://host/ …, ending in /")
    template = Template((templates / f"{scaffold.family}.yml").read_text(encoding="utf-8"))
    try:
        text = template.substitute(scaffold.values())
    except (KeyError, ValueError) as exc:
        raise ScaffoldError(f"template {scaffold.family}.yml: unknown field {exc}") from exc
    try:
        data, lines = read_yaml(text)
        parse_source(data, lines)
    except RegistryError as exc:
        raise ScaffoldError(f"template {scaffold.family}.yml does not validate: {exc}") from exc
    return text


def scaffold_room(scaffold: Scaffold, directory: Path, templates: Path = TEMPLATES) -> Path:
    """Write ``<directory>/<id>/source.yml``; an existing room is never touched."""
    text = render(scaffold, templates)
    room = directory / scaffold.source_id
    if room.exists():
        raise ScaffoldError(f"{room} already exists: a source's room is never overwritten")
    if not directory.is_dir():
        raise ScaffoldError(f"no sources directory {directory}")
    room.mkdir()
    path = room / SOURCE_FILE
    path.write_text(text, encoding="utf-8")
    return path


def next_steps(source_id: str, path: Path, family: str) -> str:
    fixtures = f"fixtures/{source_id}"
    return "\n".join(
        [
            f"Next steps for {source_id}:",
            f"  1. Edit {path}: the list's {family} block (its page, paging, key fields and",
            "     Referer) and labels: (the portal's labels → schema fields) where the shared",
            "     ones miss. `creditwatch sources` checks it (file, line, problem).",
            "  2. On a machine with network, record two days (a week apart) of the portal:",
            f"     creditwatch crawl {source_id} --record {fixtures}/{source_id}-day1.yaml",
            f"     (later: … --record {fixtures}/{source_id}-day2.yaml); or model the portal",
            f"     with a data-only {fixtures}/build.py on fixtures/{family}_model.py.",
            f"  3. Write {fixtures}/expected.json (records by day, events_day2) and a",
            "     README.md saying what is real and what is modelled; tests/test_conformance.py",
            "     then replays both days. See docs/sources.md, 'Adding a city portal'.",
        ]
    )


app = typer.Typer(
    name="sources",
    invoke_without_command=True,
    help="List the declared sources and their lists. Declarations that do not load are listed "
    "on stderr (file, line, problem) and make the exit status 1: the others still run. "
    "`sources add` starts a new source.",
)


def family_of(source: SourceDef) -> str:
    """The platform and the spider serving it: ``xygs (html_list)``; ``own spider`` when the
    source's room holds its spider."""
    spider = source.spider or "own spider"
    return f"{source.platform} ({spider})" if source.platform else spider


@app.callback()
def sources(ctx: typer.Context) -> None:
    """List the declared sources and their lists. Declarations that do not load are listed
    on stderr (file, line, problem) and make the exit status 1: the others still run."""
    if ctx.invoked_subcommand is not None:
        return
    table = Table("source", "name", "jurisdiction", "family", "lists", "schedule")
    for source in load_registry().values():
        table.add_row(
            source.id,
            f"{source.name_zh}\n{source.name_en}",
            f"{source.jurisdiction} ({source.region_code})",
            family_of(source),
            "\n".join(f"{lst.id} [{lst.list_kind}]" for lst in source.lists),
            f"{source.cron} {source.timezone}",
        )
    out.print(table)
    broken = broken_sources()
    for problem in broken:
        err.print(f"[red]broken:[/red] {escape(str(problem))}")
    if broken:
        raise typer.Exit(1)


@app.command("add")
def add(
    source_id: Annotated[
        str, typer.Argument(metavar="ID", help="The new source's id (lower case, digits, _).")
    ],
    family: Annotated[
        str,
        typer.Option(
            help="The family spider serving it; its template is "
            "crawlers/sources/_templates/FAMILY.yml (json_api, …)."
        ),
    ],
    jurisdiction: Annotated[str, typer.Option(help="The jurisdiction's name (北京市).")],
    region: Annotated[
        str, typer.Option(help="The jurisdiction's GB/T 2260 code (six digits: 110000).")
    ],
    base_url: Annotated[
        str, typer.Option(help="The portal's base URL (https://host/), ending in /.")
    ],
    name_zh: Annotated[
        str | None, typer.Option(help="Chinese name [default: JURISDICTION + the list's].")
    ] = None,
    name_en: Annotated[
        str | None, typer.Option(help="English name [default: ID — the list's].")
    ] = None,
    list_kind: Annotated[
        str,
        typer.Option(help=f"The list's kind ({', '.join(LIST_KINDS)}); sets its record key."),
    ] = "penalty",
) -> None:
    """Scaffold crawlers/sources/ID/source.yml (in CREDITWATCH_SOURCES_DIR when set) from the
    family's commented template, checked by the registry; an existing room is never
    overwritten. Prints the next steps: endpoints, a recorded cassette, expected values."""
    _, list_zh, list_en = _KIND_NAMES.get(list_kind, _KIND_NAMES["other"])
    scaffold = Scaffold(
        source_id=source_id,
        family=family,
        name_zh=name_zh or f"{jurisdiction} {list_zh}",
        name_en=name_en or f"{source_id} — {list_en}",
        jurisdiction=jurisdiction,
        region_code=region,
        base_url=base_url,
        list_kind=list_kind,
    )
    try:
        path = scaffold_room(scaffold, sources_dir())
    except ScaffoldError as exc:
        raise fail(escape(str(exc))) from exc
    out.print(f"wrote {escape(str(path))}")
    out.print(escape(next_steps(source_id, path, family)), highlight=False)
