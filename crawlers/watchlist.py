"""Watchlists: the subjects whose every record a source is asked for (watch mode).

A watchlist file holds one subject per line: a company name, or its 18-character unified
social credit code (USCC). Blank lines and ``#`` comments are ignored; a name and a code may
share a line separated by a tab or ``|`` (the code then picks the right hit among namesakes).
``db:`` instead of a path watches every subject with a valid USCC that the source's stored
records already name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine

from core.normalise import name_key
from storage.records import stored_usccs

USCC = re.compile(r"^[0-9A-HJ-NPQRTUWXY]{2}\d{6}[0-9A-HJ-NPQRTUWXY]{10}$")
DB = "db:"


class WatchlistError(ValueError):
    pass


@dataclass(frozen=True)
class WatchSubject:
    """One watched subject: what to search for, and how to recognise it among the hits."""

    name: str | None
    uscc: str | None

    @property
    def keyword(self) -> str:
        return self.uscc or self.name or ""

    @property
    def label(self) -> str:
        return " ".join(part for part in (self.name, self.uscc) if part)

    def matches(self, name: str, code: str | None) -> bool:
        if self.uscc:
            return (code or "").upper() == self.uscc
        return self.name is not None and name_key(name) == name_key(self.name)


def parse_line(line: str) -> WatchSubject | None:
    text = line.split("#", 1)[0].strip()
    if not text:
        return None
    name: str | None = None
    uscc: str | None = None
    for part in re.split(r"[\t|]", text):
        part = part.strip()
        if not part:
            continue
        if USCC.match(part.upper()):
            uscc = part.upper()
        elif name is None:
            name = part
        else:
            raise WatchlistError(f"two names on one watchlist line: {line!r}")
    return WatchSubject(name=name, uscc=uscc)


def read_watchlist(path: Path) -> list[WatchSubject]:
    """Subjects of a watchlist file, in file order, duplicates dropped."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise WatchlistError(f"cannot read watchlist {path}: {exc}") from exc
    seen: set[WatchSubject] = set()
    subjects = []
    for line in lines:
        subject = parse_line(line)
        if subject is not None and subject not in seen:
            seen.add(subject)
            subjects.append(subject)
    return subjects


def watchlist_from_db(engine: Engine, source: str) -> list[WatchSubject]:
    """Every subject with a valid USCC among the source's stored records."""
    with engine.connect() as conn:
        return [WatchSubject(name=None, uscc=code) for code in stored_usccs(conn, source)]


def load_watchlist(spec: str | None, engine: Engine | None, source: str) -> list[WatchSubject]:
    """A file path, ``db:``, or nothing (an empty watchlist)."""
    if not spec:
        return []
    if spec == DB:
        if engine is None:
            raise WatchlistError("db: watchlist needs the run's database")
        return watchlist_from_db(engine, source)
    return read_watchlist(Path(spec))
