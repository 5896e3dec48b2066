"""Charts as SVG text, drawn on the server: the app runs no script, so a chart is an image.

Pure functions from data to SVG (no I/O, no database). Every text is escaped as XML, with the
characters XML cannot hold replaced and bidi controls written as their code (as pages show
them); attributes hold only numbers and fixed class names. Drawing uses presentation
attributes, never ``<style>`` or ``style=`` (the image's policy allows no CSS), and never a
script or an event attribute. A fixed ``viewBox`` without width or height lets the image
scale to its box: 480 units wide reads on a 390 px phone screen.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from xml.sax.saxutils import escape

from core.clock import SHANGHAI
from storage.history import RunPoint, TimelineRow
from web.site import visible

WIDTH = 480
FONT = "sans-serif"
INK, MUTED, GRID = "#222", "#777", "#ddd"
LINE, UP, DOWN, SICK = "#1f5fa8", "#2e7d32", "#c62828", "#9e9e9e"
MODIFIED = "#ef6c00"
MAX_ROWS = 40  # timeline rows drawn; the rest are counted in a note
# Characters XML 1.0 cannot hold (C0 controls but tab and newlines, lone surrogates, U+FFFE/F).
NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def text(value: object) -> str:
    """Any value as XML character data: XML-invalid characters as U+FFFD, bidi controls
    made visible, markup escaped (quotes too, so it also serves inside attributes)."""
    shown = visible(NOT_XML.sub("\ufffd", str(value)))
    return escape(shown, {'"': "&quot;", "'": "&apos;"})


def fit(value: object, width: float, size: float = 12) -> str:
    """``value`` cut (with …) to about ``width`` units at font size ``size``: SVG text does not
    wrap, and a name of Chinese characters is twice as wide as one of Latin letters."""
    value, used = str(value), 0.0
    for i, char in enumerate(value):
        used += size * (1.0 if unicodedata.east_asian_width(char) in "WF" else 0.6)
        if used > width:
            return value[: max(0, i - 1)] + "…"
    return value


def day(moment: datetime) -> str:
    """A run's date as runs are filed: Asia/Shanghai."""
    return moment.astimezone(SHANGHAI).date().isoformat()


def _num(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".")


def _svg(height: int, title: str, body: list[str]) -> str:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {height}" '
        f'role="img" font-family="{FONT}" font-size="12" fill="{INK}">'
        f"<title>{text(title)}</title>"
        f'<rect class="background" x="0" y="0" width="{WIDTH}" height="{height}" fill="#fff"/>'
        + "".join(body)
        + "</svg>\n"
    )


def _label(x: float, y: float, value: object, anchor: str = "start", **attrs: str) -> str:
    extra = "".join(f' {name.replace("_", "-")}="{v}"' for name, v in attrs.items())
    return f'<text x="{_num(x)}" y="{_num(y)}" text-anchor="{anchor}"{extra}>{text(value)}</text>'


def _ticks(count: int, most: int) -> list[int]:
    """Up to ``most`` indices spread over ``count`` slots, first and last included."""
    if count <= most:
        return list(range(count))
    return sorted({round(k * (count - 1) / (most - 1)) for k in range(most)})


# -- a list over its runs -------------------------------------------------------------------


@dataclass(frozen=True)
class ListLabels:
    """The list chart's words, in the reader's language."""

    title: str
    size: str  # the line: active entries
    added: str  # bars up: listed and relisted
    removed: str  # bars down: delisted
    unhealthy: str  # an unhealthy run: vouches for nothing
    empty: str  # no finished run yet


LEFT, RIGHT = 40, 12
SIZE_TOP, SIZE_BOTTOM = 34, 140
BAR_ZERO, BAR_REACH = 222, 52
DATES_Y, LEGEND_Y, LIST_HEIGHT = 292, 314, 338


def list_chart(points: Sequence[RunPoint], labels: ListLabels) -> str:
    """The list's size per run (a line through healthy runs, every run a point; unhealthy
    runs hollow and grey) above its listings (up) and delistings (down) per run, dates on a
    shared axis. Baseline listings are no change and have no bar."""
    body = [_label(8, 18, fit(labels.title, WIDTH - 16, 13), font_size="13", font_weight="bold")]
    if not points:
        body.append(_label(WIDTH / 2, 90, labels.empty, "middle", fill=MUTED))
        return _svg(120, labels.title, body)
    slot = (WIDTH - LEFT - RIGHT) / len(points)
    xs = [LEFT + slot * (i + 0.5) for i in range(len(points))]
    top = max(1, max(p.active for p in points))
    reach = max(1, max(max(p.added, p.delisted) for p in points))

    def size_y(value: int) -> float:
        return SIZE_BOTTOM - (SIZE_BOTTOM - SIZE_TOP) * value / top

    # axes and grid
    for value in sorted({0, top // 2, top}):
        y = size_y(value)
        body.append(
            f'<line class="grid" x1="{LEFT}" y1="{_num(y)}" x2="{WIDTH - RIGHT}" y2="{_num(y)}" '
            f'stroke="{GRID}"/>'
        )
        body.append(_label(LEFT - 4, y + 4, value, "end", fill=MUTED))
    body.append(
        f'<line class="axis" x1="{LEFT}" y1="{BAR_ZERO}" x2="{WIDTH - RIGHT}" y2="{BAR_ZERO}" '
        f'stroke="{MUTED}"/>'
    )
    body.append(_label(LEFT - 4, BAR_ZERO - BAR_REACH + 4, f"+{reach}", "end", fill=MUTED))
    body.append(_label(LEFT - 4, BAR_ZERO + BAR_REACH + 4, f"−{reach}", "end", fill=MUTED))
    # the size line, through the runs that vouch for the list
    healthy = [(x, p) for x, p in zip(xs, points, strict=True) if p.healthy]
    if len(healthy) > 1:
        path = " ".join(
            f"{'M' if i == 0 else 'L'}{_num(x)},{_num(size_y(p.active))}"
            for i, (x, p) in enumerate(healthy)
        )
        body.append(
            f'<path class="size-line" d="{path}" fill="none" stroke="{LINE}" stroke-width="2"/>'
        )
    width = max(1.0, min(22.0, slot * 0.6))
    for x, p in zip(xs, points, strict=True):
        state = "healthy" if p.healthy else "unhealthy"
        colour = LINE if p.healthy else SICK
        fill = colour if p.healthy else "#fff"
        body.append(
            f'<circle class="point {state}" cx="{_num(x)}" cy="{_num(size_y(p.active))}" r="3.5" '
            f'fill="{fill}" stroke="{colour}" stroke-width="1.5"/>'
        )
        for kind, value, sign, paint in (
            ("up", p.added, -1, UP),
            ("down", p.delisted, 1, DOWN),
        ):
            if not value:
                continue
            height = max(1.0, BAR_REACH * value / reach)
            y = BAR_ZERO - height if sign < 0 else BAR_ZERO
            body.append(
                f'<rect class="bar {kind} {state}" x="{_num(x - width / 2)}" y="{_num(y)}" '
                f'width="{_num(width)}" height="{_num(height)}" '
                f'fill="{paint if p.healthy else SICK}"/>'
            )
            if slot >= 16:
                ty = y - 3 if sign < 0 else y + height + 11
                body.append(_label(x, ty, value, "middle", font_size="10", fill=MUTED))
    for i in _ticks(len(points), 4):
        # a date is ~64 units wide: near an edge it grows inwards
        anchor = "start" if xs[i] < LEFT + 32 else "end" if xs[i] > WIDTH - 40 else "middle"
        x = max(xs[i] - 4, 4) if anchor == "start" else min(xs[i] + 4, WIDTH - 4)
        x = xs[i] if anchor == "middle" else x
        body.append(_label(x, DATES_Y, day(points[i].at), anchor, fill=MUTED))
    body.extend(
        _legend(
            LEGEND_Y,
            [
                ("line", LINE, labels.size),
                ("up", UP, labels.added),
                ("down", DOWN, labels.removed),
                ("hollow", SICK, labels.unhealthy),
            ],
        )
    )
    return _svg(LIST_HEIGHT, labels.title, body)


def _legend(y: float, items: Sequence[tuple[str, str, str]]) -> list[str]:
    """Legend entries in two columns (phones are narrow): a swatch and its words each."""
    out = []
    for i, (kind, colour, words) in enumerate(items):
        x = 8 + (i % 2) * (WIDTH / 2)
        row = y + (i // 2) * 16
        if kind == "line":
            swatch = (
                f'<line x1="{_num(x)}" y1="{_num(row - 4)}" x2="{_num(x + 14)}" '
                f'y2="{_num(row - 4)}" stroke="{colour}" stroke-width="2"/>'
            )
        elif kind == "hollow":
            swatch = (
                f'<circle cx="{_num(x + 7)}" cy="{_num(row - 4)}" r="3.5" fill="#fff" '
                f'stroke="{colour}" stroke-width="1.5"/>'
            )
        elif kind in MARKS:
            swatch = _mark(kind, x + 7, row - 4, "key")
        else:
            swatch = (
                f'<rect x="{_num(x + 2)}" y="{_num(row - 9)}" width="10" height="10" '
                f'fill="{colour}"/>'
            )
        out.append(f'<g class="legend {kind}">{swatch}{_label(x + 18, row, words)}</g>')
    return out


# -- an entity over time --------------------------------------------------------------------


@dataclass(frozen=True)
class TimelineLabels:
    title: str
    listed: str  # a bar: on the list
    delisted: str
    relisted: str
    modified: str
    more: str  # "{n} more not shown", already formatted
    empty: str


ROW_HEIGHT, ROWS_TOP, NAMES = 34, 46, 150


def timeline_chart(
    rows: Sequence[TimelineRow],
    list_names: Mapping[str, str],
    until: datetime,
    labels: TimelineLabels,
) -> str:
    """One row per entry (its list's name and case number or title): bars for the times it
    was listed, marks for its delistings (×), relistings (▲) and modifications (◆), dates
    along the top. The axis ends at ``until``, the newest time known of the entity (not the
    wall clock); open bars run on past it to the edge."""
    body = [_label(8, 18, fit(labels.title, WIDTH - 16, 13), font_size="13", font_weight="bold")]
    shown = list(rows[:MAX_ROWS])
    if not shown:
        body.append(_label(WIDTH / 2, 60, labels.empty, "middle", fill=MUTED))
        return _svg(90, labels.title, body)
    moments = [until] + [
        m for r in shown for i in r.intervals for m in (i.start, i.end) if m is not None
    ]
    moments += [m.at for r in shown for m in r.marks]
    start, end = min(moments), max(moments)
    if end - start < timedelta(days=1):
        start, end = start - timedelta(hours=12), end + timedelta(hours=12)
    left, right = NAMES + 8, WIDTH - RIGHT
    # room after the newest time, so that an open bar shows it goes on
    span = (end - start).total_seconds() * 1.1

    def x_of(moment: datetime) -> float:
        return left + (right - left) * (moment - start).total_seconds() / span

    body.append(_label(left, 34, day(start), "start", fill=MUTED))
    body.append(_label(x_of(end), 34, day(end), "end", fill=MUTED))
    for n, row in enumerate(shown):
        top = ROWS_TOP + n * ROW_HEIGHT
        mid = top + 14
        if n:
            body.append(
                f'<line class="grid" x1="8" y1="{top - 4}" x2="{right}" y2="{top - 4}" '
                f'stroke="{GRID}"/>'
            )
        body.append(_label(8, top + 12, fit(list_names.get(row.list_id, row.list_id), NAMES)))
        if row.label:
            body.append(_label(8, top + 26, fit(row.label, NAMES, 10), font_size="10", fill=MUTED))
        body.append(
            f'<line class="track" x1="{left}" y1="{mid}" x2="{right}" y2="{mid}" stroke="{GRID}"/>'
        )
        for interval in row.intervals:
            x1 = x_of(interval.start)
            x2 = x_of(interval.end) if interval.end is not None else right
            kind = "open" if interval.end is None else "closed"
            body.append(
                f'<rect class="interval {kind}" x="{_num(x1)}" y="{mid - 6}" '
                f'width="{_num(max(2.0, x2 - x1))}" height="12" fill="{LINE}"/>'
            )
        for mark in row.marks:
            if mark.event in MARKS:
                body.append(_mark(mark.event, x_of(mark.at), mid))
    end_y = ROWS_TOP + len(shown) * ROW_HEIGHT
    if len(rows) > len(shown):
        body.append(_label(8, end_y + 4, labels.more, fill=MUTED))
        end_y += 16
    body.extend(
        _legend(
            end_y + 14,
            [
                ("up", LINE, labels.listed),
                ("delisted", DOWN, labels.delisted),
                ("relisted", UP, labels.relisted),
                ("modified", MODIFIED, labels.modified),
            ],
        )
    )
    return _svg(end_y + 38, labels.title, body)


MARKS = ("delisted", "relisted", "modified")


def _mark(event: str, x: float, y: float, role: str = "mark") -> str:
    """A timeline mark: class ``mark`` on a row, ``key`` in the legend."""
    if event == "delisted":
        d = f"M{_num(x - 5)},{_num(y - 5)}L{_num(x + 5)},{_num(y + 5)}"
        d += f"M{_num(x + 5)},{_num(y - 5)}L{_num(x - 5)},{_num(y + 5)}"
        return f'<path class="{role} delisted" d="{d}" stroke="{DOWN}" stroke-width="2.5"/>'
    if event == "relisted":
        d = f"M{_num(x)},{_num(y - 7)}L{_num(x + 6)},{_num(y + 4)}L{_num(x - 6)},{_num(y + 4)}Z"
        return f'<path class="{role} relisted" d="{d}" fill="{UP}" stroke="#fff"/>'
    d = f"M{_num(x)},{_num(y - 6)}L{_num(x + 6)},{_num(y)}L{_num(x)},{_num(y + 6)}"
    d += f"L{_num(x - 6)},{_num(y)}Z"
    return f'<path class="{role} modified" d="{d}" fill="{MODIFIED}" stroke="#fff"/>'
