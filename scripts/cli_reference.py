"""Write docs/cli.md, the command-line reference, from the CLI itself.

Run from anywhere: ``python scripts/cli_reference.py`` (``--check`` only says whether
docs/cli.md is up to date, exit status 1 if not). It walks the Typer app of
``pipeline.cli`` (``typer.main.get_command``), recursing into command groups, and
writes every command's usage, help text, arguments and options with their help and
defaults. The output depends on nothing but the code: no terminal width, no colour,
no environment.
"""

from __future__ import annotations

import inspect
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TARGET = ROOT / "docs" / "cli.md"
PROGRAM = "creditwatch"
REGENERATE = "python scripts/cli_reference.py"

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def _context(command: Any, name: str, parent: Any = None) -> Any:
    # The command's own context class: Typer ships its own copy of Click.
    return command.context_class(
        command, info_name=name, parent=parent, terminal_width=100, max_content_width=100
    )


def _subcommands(command: Any, ctx: Any) -> list[tuple[str, Any]]:
    if not hasattr(command, "list_commands"):
        return []
    found = []
    for name in command.list_commands(ctx):
        sub = command.get_command(ctx, name)
        if sub is not None and not getattr(sub, "hidden", False):
            found.append((name, sub))
    return found


def _walk(command: Any, ctx: Any) -> list[tuple[Any, Any]]:
    """Every command under ``command`` (itself first), depth first, in declaration order."""
    found = [(command, ctx)]
    for name, sub in _subcommands(command, ctx):
        found += _walk(sub, _context(sub, name, ctx))
    return found


def _text(help_text: str | None) -> str:
    """A docstring as Markdown paragraphs: lines of a paragraph joined, Click's \\b dropped."""
    if not help_text:
        return ""
    help_text = inspect.cleandoc(help_text.split("\f", 1)[0])
    paragraphs = []
    for block in help_text.split("\n\n"):
        lines = [line.strip() for line in block.splitlines() if line.strip() != "\b"]
        if lines:
            paragraphs.append(" ".join(line for line in lines if line))
    return "\n\n".join(paragraphs)


def _markdown(text: str) -> str:
    """Help text as Markdown: ``<`` and ``>`` outside code spans escaped (not HTML tags)."""
    parts = text.split("`")
    for i in range(0, len(parts), 2):  # the even parts are outside code spans
        parts[i] = parts[i].replace("<", "\\<").replace(">", "\\>")
    return "`".join(parts)


def _code(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _cell(text: str) -> str:
    return _markdown(" ".join(text.split())).replace("|", "\\|")


def _params(command: Any, ctx: Any, kind: str) -> list[tuple[str, str]]:
    rows = []
    for param in command.get_params(ctx):
        if param.param_type_name != kind:
            continue
        record = param.get_help_record(ctx)
        if record is not None:
            rows.append(record)
    return rows


def _anchor(path: str) -> str:
    return path.replace(" ", "-")


def _section(command: Any, ctx: Any) -> str:
    path = ctx.command_path
    level = "#" * min(2 + max(path.count(" ") - 1, 0), 4)
    lines = [f"{level} `{path}`", ""]
    help_text = _text(command.help)
    if help_text:
        lines += [_markdown(help_text), ""]
    usage = " ".join([path, *command.collect_usage_pieces(ctx)])
    lines += ["```text", usage, "```", ""]
    for kind, title in (("argument", "Arguments"), ("option", "Options")):
        rows = _params(command, ctx, kind)
        if rows:
            lines += [f"| {title.lower()[:-1]} | meaning |", "|---|---|"]
            lines += [f"| `{_code(name)}` | {_cell(text)} |" for name, text in rows]
            lines.append("")
    subs = _subcommands(command, ctx)
    if subs:
        lines += ["| command | what it does |", "|---|---|"]
        for name, sub in subs:
            short = _cell(_text(sub.help).split("\n\n", 1)[0]) if sub.help else ""
            lines.append(f"| [`{name}`](#{_anchor(f'{path} {name}')}) | {short} |")
        lines.append("")
    return "\n".join(lines)


def render() -> str:
    """The whole of docs/cli.md, as a string."""
    import typer

    from pipeline.cli import app

    root = typer.main.get_command(app)
    root_ctx = _context(root, PROGRAM)
    commands = _walk(root, root_ctx)
    header = [
        "# Command-line reference",
        "",
        "<!-- Generated from the CLI itself; do not edit. "
        f"Run `{REGENERATE}` after changing a command. -->",
        "",
        f"Every `{PROGRAM}` command with its arguments, options and defaults, as `--help` gives",
        f"them. This page is generated from the code by `{REGENERATE}`; `tests/test_docs.py`",
        "fails when it is out of date. What the commands are for, with examples, is in the",
        "other pages of [the manual](README.md).",
        "",
    ]
    body = [_section(command, ctx) for command, ctx in commands]
    return "\n".join(header) + "\n" + "\n".join(body).rstrip("\n") + "\n"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    text = render()
    if "--check" in args:
        current = TARGET.read_text(encoding="utf-8") if TARGET.exists() else ""
        if current != text:
            print(f"{TARGET.relative_to(ROOT)} is out of date: run `{REGENERATE}`")
            return 1
        return 0
    TARGET.write_text(text, encoding="utf-8")
    print(f"wrote {TARGET.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
