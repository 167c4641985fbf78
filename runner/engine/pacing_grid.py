"""Where paced actions may fall: the points of a day, and random moments of a window.

Pure calendar arithmetic for `runner.engine.limits`, with no store: the open time of a lead's local date
(its zone, the sequence's calendar) cut into equal shares whose middles, moved by deterministic
jitter, are the day's *points*; the slices of those points that fall on a sender-local day; and
random moments of what is left of a window. Everything is deterministic: the same inputs give the
same points on every run and in every process, which is what lets several leads of one zone agree
on them.
"""
from __future__ import annotations

import bisect
import datetime as dt
import functools
import hashlib
import math
from collections.abc import Callable
from zoneinfo import ZoneInfo

from runner.language import calendar as cal
from runner.language.model import Calendar

Span = tuple[dt.datetime, dt.datetime]
#: Points of one local date, in time order.
Grid = tuple[dt.datetime, ...]


def unit(*parts: object) -> float:
    """A deterministic number in [0, 1) from the parts: jitter that is the same on every run."""
    return _fraction(hashlib.sha256(":".join(map(str, parts)).encode()))


def unit_draws(*head: object) -> Callable[[int], float]:
    """`unit(*head, i)` for one integer `i` after another, with the head hashed once."""
    hashed = hashlib.sha256("".join(f"{part}:" for part in head).encode())

    def draw(i: int) -> float:
        point = hashed.copy()
        point.update(b"%d" % i)
        return _fraction(point)
    return draw


def _fraction(digest: hashlib._Hash) -> float:
    return int.from_bytes(digest.digest()[:8], "big") / 2**64


@functools.lru_cache(maxsize=4096)
def local_midnight(day: dt.date, zone: ZoneInfo) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(0), tzinfo=zone).astimezone(dt.UTC)


@functools.lru_cache(maxsize=16384)
def grid(calendar: Calendar, zone: ZoneInfo, date: dt.date, count: int, jitter: float, spacing: float) -> Grid:
    """The points of local date `date` in `zone`: the middles of `count` equal shares of its open
    time (fewer when `spacing` needs it), each moved by up to half of `jitter`, so that neighbours
    are one share apart give or take `jitter`, and never closer than `spacing`."""
    windows = cal.windows_on(calendar, zone, date)
    if not windows or count < 1:
        return ()
    marks = [0.0]
    for start, end in windows:
        marks.append(marks[-1] + (end - start).total_seconds())
    total = marks[-1]
    count = max(1, min(count, int(total // spacing) if spacing > 0 else count))
    share = total / count
    jitter = min(jitter / 2, max(0.0, (share - spacing) / 2))
    points = []
    draw = unit_draws(zone.key, date)  # `unit(zone.key, date, i)`
    for i in range(count):
        offset = (i + 0.5) * share + jitter * (2 * draw(i) - 1)
        offset = min(max(offset, 0.0), total - 1.0)
        k = bisect.bisect_right(marks, offset) - 1
        points.append(windows[k][0] + dt.timedelta(seconds=math.floor(offset - marks[k])))
    return tuple(points)


@functools.lru_cache(maxsize=4096)
def slices(calendar: Calendar, zone: ZoneInfo, lo: dt.datetime, hi: dt.datetime, count: int, jitter: float,
           spacing: float) -> tuple[tuple[Grid, int, int], ...]:
    """The points strictly between `lo` and `hi`, as (grid, first, end) slices of the grids of the
    local dates that overlap the span, in time order."""
    # Kept: a pass plans many leads of one zone for the same sender-day at the same moment.
    out = []
    date = cal.local_date(lo, zone) - dt.timedelta(days=1)  # a window may run past midnight into the span
    last = cal.local_date(hi, zone)
    while lo < hi and date <= last:
        points = grid(calendar, zone, date, count, jitter, spacing)
        first, end = bisect.bisect_right(points, lo), bisect.bisect_left(points, hi)
        if end > first:
            out.append((points, first, end))
        date += dt.timedelta(days=1)
    return tuple(out)


def open_spans(calendar: Calendar, zone: ZoneInfo, lo: dt.datetime, hi: dt.datetime) -> list[Span]:
    """The open parts of [lo, hi) in `zone`, in time order."""
    spans: list[Span] = []
    date = cal.local_date(lo, zone) - dt.timedelta(days=1)
    while lo < hi and date <= cal.local_date(hi, zone):
        spans += [(max(a, lo), min(b, hi)) for a, b in cal.windows_on(calendar, zone, date) if b > lo and a < hi]
        date += dt.timedelta(days=1)
    return spans


def moment_at(spans: list[Span], fraction: float) -> dt.datetime:
    """The moment `fraction` of the way through the open time of `spans` (whole seconds)."""
    offset = fraction * sum((b - a).total_seconds() for a, b in spans)
    for a, b in spans:
        length = (b - a).total_seconds()
        if offset < length:
            return a + dt.timedelta(seconds=math.floor(offset))
        offset -= length
    return spans[-1][0]


def random_open_moment(calendar: Calendar, zone: ZoneInfo, after: dt.datetime, fraction: float,
                       horizon: dt.timedelta) -> dt.datetime:
    """A moment `fraction` of the way through the open time left on the first window day after
    `after`; `after + horizon` when the calendar has no window at all."""
    try:
        start = cal.next_open(calendar, zone, after)
    except ValueError:
        return after + horizon
    date = start.astimezone(zone).date()
    spans = [(max(a, start), b) for a, b in cal.windows_on(calendar, zone, date) if b > start]
    if not spans:
        spans = [(start, cal.window_end(calendar, zone, start))]
    return moment_at(spans, fraction)
