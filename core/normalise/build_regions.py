"""Regenerate ``lexicon/regions.txt`` from the GB/T 2260 table shipped in python-stdnum.

python-stdnum keeps ``stdnum/cn/loc.dat`` (every division code since 1980 with the years each
name was in use) up to date with its releases; this script flattens it into the small table
the normaliser loads. Run it after upgrading python-stdnum and commit the result:

    python -m core.normalise.build_regions

It is a maintenance tool, never called while normalising.
"""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

OUT = Path(__file__).resolve().parent / "lexicon" / "regions.txt"
HEADER = "# code\tlatest name\tstill in use (1/0)\tformer names (comma-separated)\n"

_PROVINCE_RE = re.compile(r'^(\d{2}) province="')
_COUNTY_RE = re.compile(r'^\s+(\d{4}) county="([^"]*)"')
_PERIOD_RE = re.compile(r"^\[(\d{4})?-(\d{4})?\](.+)$")


def _names(names: str) -> tuple[str, bool, list[str]]:
    """The latest name of a code, whether it is still in use, and its former names.

    ``[1983-1994]郊区,[1995-]晋安区`` → (晋安区, True, [郊区]); ``[-2010]崇文区`` →
    (崇文区, False, []); an undated name has always been in use.
    """
    seen: list[tuple[str, bool]] = []
    for part in names.split(","):
        m = _PERIOD_RE.match(part)
        seen.append((part, True) if m is None else (m.group(3), m.group(2) is None))
    latest, current = seen[-1]
    former = [name for name, _ in seen[:-1] if name != latest]
    return latest, current, list(dict.fromkeys(former))


def build(loc_dat: str) -> str:
    """``loc.dat`` text → ``regions.txt`` text (sorted by code)."""
    rows: dict[str, tuple[str, bool, list[str]]] = {}
    province = ""
    for line in loc_dat.splitlines():
        if m := _PROVINCE_RE.match(line):
            province = m.group(1)
        elif (m := _COUNTY_RE.match(line)) and province:
            rows[province + m.group(1)] = _names(m.group(2))
    body = "".join(
        f"{code}\t{name}\t{int(current)}\t{','.join(former)}\n"
        for code, (name, current, former) in sorted(rows.items())
    )
    return HEADER + body


def stdnum_loc_dat() -> str:
    return (resources.files("stdnum") / "cn" / "loc.dat").read_text(encoding="utf-8")


def main() -> None:
    OUT.write_text(build(stdnum_loc_dat()), encoding="utf-8")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
