"""Watchlists: the subjects whose every record a source is asked for (watch mode).

A watchlist file holds one subject per line: a company name, or its 18-character unified
social credit code (USCC). Blank lines and ``#`` comments are ignored; a name and a code may
share a line separated by a tab or ``|`` (the code then picks the right hit among namesakes).
``db:`` instead of a path watches every subject with a valid USCC that the source's stored
records already name.

Shards. A long watchlist can be split into N shards, each crawled by a run of its own (a
worker each, with its own politeness budget): shard K of N (``Shard``, written ``K/N``) holds
the subjects whose stable hash (``shard_of``: sha256 of the USCC, else of the folded name)
falls in it, so a subject always lands in the same shard whatever the file's order or the
other subjects, and the N shards partition the list.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine

from core.normalise import name_key
from core.registry import SourceDef
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

    @property
    def identity(self) -> str:
        """What the shard hash reads: the code when there is one (a line ``name|code`` and a
        line ``code`` are one subject), else the folded name (spelling variants alike)."""
        return f"uscc:{self.uscc}" if self.uscc else f"name:{name_key(self.name or '')}"

    def line(self) -> str:
        """The subject as a watchlist line (``parse_line`` reads it back)."""
        return "|".join(part for part in (self.name, self.uscc) if part)


@dataclass(frozen=True)
class Shard:
    """Part ``index`` (1-based) of ``count`` of a watchlist."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if self.count < 1 or not 1 <= self.index <= self.count:
            raise WatchlistError(f"shard {self.index}/{self.count}: K/N needs 1 <= K <= N")

    @classmethod
    def parse(cls, text: str) -> Shard:
        """``K/N`` as typed on the command line and kept in a job's options."""
        index, sep, count = text.strip().partition("/")
        if not sep or not index.isdigit() or not count.isdigit():
            raise WatchlistError(f"a shard is written K/N (e.g. 2/4), not {text!r}")
        return cls(int(index), int(count))

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    def holds(self, subject: WatchSubject) -> bool:
        return shard_of(subject, self.count) == self.index

    def select(self, subjects: Iterable[WatchSubject]) -> list[WatchSubject]:
        """This shard's subjects, in their order."""
        return [subject for subject in subjects if self.holds(subject)]


def shard_of(subject: WatchSubject, count: int) -> int:
    """The shard (1..count) a subject belongs to: a hash of the subject alone, so adding,
    removing or reordering other subjects never moves it."""
    digest = hashlib.sha256(subject.identity.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % count + 1


def watch_lists(source: SourceDef) -> list[str]:
    """The source's watch lists (lists with a ``watch:`` block): read per watched subject."""
    return [f"{source.id}.{raw['id']}" for raw in source.raw.get("lists", []) if raw.get("watch")]


def write_watchlist(path: Path, subjects: Iterable[WatchSubject]) -> None:
    """A watchlist file of ``subjects`` (a shard's, for its crawl process)."""
    lines = [subject.line() for subject in subjects]
    path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")


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
