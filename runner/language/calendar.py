"""Calendar and business-time arithmetic: when a sequence may act, and how business spans add up.

A `model.Calendar` names window days (weekdays minus holidays) and daily hours in wall-clock time.
This module turns that into concrete UTC intervals for one zone and one local date, and does the
arithmetic the engine needs on top: is a moment open, when is the next opening, what is "2 business
days" or "4 business hours" after a moment, and where do paced slots fall inside a day.

Rules shared by every function:

- Everything takes and returns timezone-aware datetimes; results are in UTC. Naive datetimes raise
  ValueError, because guessing their zone is how outreach ends up going out at 3am.
- Hours are wall-clock times on the lead's (or sender's) local date. On DST transition days
  09:00-17:00 still means 09:00 to 17:00 on the clock. A local time that does not exist (the spring
  forward gap) moves forward to the first instant that exists; an ambiguous time (fall back) means its
  first occurrence. Formally: a wall time W maps to the earliest instant whose wall time is >= W.
- Windows belong to one local date: a range ending at 24:00 ends at that date's midnight even when
  the next date opens at 00:00. Overlapping or touching ranges of the same date merge.

The caller decides which zone applies (`resolve_zone`) and passes the `ZoneInfo` in; no function
here reads the clock. Per-date windows are cached, so calling these on every lead step is cheap.
"""
from __future__ import annotations

import bisect
import datetime as dt
import functools
import math
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from runner.language.model import Calendar, Duration

UTC = dt.UTC

#: How far ahead the search for an open window or a window day goes before the calendar is
#: declared closed for good (every listed day a holiday, no days, no hours).
HORIZON_DAYS = 400

Window = tuple[dt.datetime, dt.datetime]

_DAY = dt.timedelta(days=1)


# --- zones ----------------------------------------------------------------------------------------


def resolve_zone(calendar: Calendar, *, lead_tz: str | None, sender_tz: str | None) -> ZoneInfo:
    """The zone `calendar` is read in for one lead and sender. Never raises.

    `timezone: lead` uses the lead's zone and `sender` the sender's, each falling back to
    `calendar.fallback` when missing or not a known IANA name; any other value is an IANA name.
    UTC is the last resort when even the fallback is unknown (the loader normally rejects that).
    """
    if calendar.timezone == "lead":
        wanted = lead_tz
    elif calendar.timezone == "sender":
        wanted = sender_tz
    else:
        wanted = calendar.timezone
    return _zone(wanted) or _zone(calendar.fallback) or ZoneInfo("UTC")


@functools.lru_cache(maxsize=1024)
def _zone_by_name(name: str) -> ZoneInfo | None:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        # Lead zones come from CSV files: anything unknown, malformed or path-like just falls back.
        return None


def _zone(name: object) -> ZoneInfo | None:
    if not isinstance(name, str) or not name.strip():
        return None
    return _zone_by_name(name.strip())


def local_date(t: dt.datetime, zone: ZoneInfo) -> dt.date:
    """The date on the wall calendar in `zone` at instant `t`."""
    return _aware(t, "t").astimezone(zone).date()


# --- windows --------------------------------------------------------------------------------------


def is_window_day(calendar: Calendar, day: dt.date) -> bool:
    """True when `day` is a listed weekday and not a holiday."""
    return day.weekday() in calendar.days and day not in calendar.holidays


def windows_on(calendar: Calendar, zone: ZoneInfo, day: dt.date) -> list[Window]:
    """The open intervals of local date `day` in `zone`, as sorted, disjoint UTC (start, end) pairs.

    Empty on days that are not window days. An interval is half-open: start is open, end is not.
    """
    return list(_windows(calendar, zone, day))


@functools.lru_cache(maxsize=32768)
def _windows(calendar: Calendar, zone: ZoneInfo, day: dt.date) -> tuple[Window, ...]:
    if not is_window_day(calendar, day):
        return ()
    spans = sorted(
        (_wall_to_utc(zone, day, r.start), _wall_to_utc(zone, day, r.end)) for r in calendar.hours
    )
    merged: list[Window] = []
    for start, end in spans:
        if start >= end:
            continue  # a range that fell entirely into a DST gap
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return tuple(merged)


def _wall_to_utc(zone: ZoneInfo, day: dt.date, time: dt.time) -> dt.datetime:
    """The earliest UTC instant whose wall time in `zone` is at or after `day` + `time`."""
    # dt.time.max is how the model stores 24:00
    wall = dt.datetime.combine(day + _DAY, dt.time()) if time == dt.time.max else dt.datetime.combine(day, time)
    first = wall.replace(tzinfo=zone).astimezone(UTC)  # fold=0: the first occurrence if ambiguous
    if first.astimezone(zone).replace(tzinfo=None) == wall:
        return first
    return _end_of_gap(zone, wall)


def _end_of_gap(zone: ZoneInfo, wall: dt.datetime) -> dt.datetime:
    """The transition instant that skips over the non-existent wall time `wall`.

    The offsets on either side of the gap bracket it; bisect on whole seconds, which is the
    resolution of tz transitions.
    """
    offsets = [wall.replace(tzinfo=zone, fold=f).utcoffset() or dt.timedelta() for f in (0, 1)]
    epoch = dt.datetime(1970, 1, 1)
    wall_s = (wall - epoch) // dt.timedelta(seconds=1)
    lo = wall_s - int(max(offsets).total_seconds())  # wall time before the gap: too early
    hi = wall_s - int(min(offsets).total_seconds())  # wall time after the gap: late enough
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if dt.datetime.fromtimestamp(mid, zone).replace(tzinfo=None) >= wall:
            hi = mid
        else:
            lo = mid
    return dt.datetime.fromtimestamp(hi, UTC)


def _windows_from(calendar: Calendar, zone: ZoneInfo, t: dt.datetime) -> Window:
    """The first window that ends after `t` (it may contain `t`), within HORIZON_DAYS."""
    day = t.astimezone(zone).date() - _DAY  # a fall-back can leave yesterday's window open
    for _ in range(HORIZON_DAYS + 2):
        if is_window_day(calendar, day):
            for start, end in _windows(calendar, zone, day):
                if end > t:
                    return start, end
        day += _DAY
    raise ValueError(
        f"the calendar has no open window in the {HORIZON_DAYS} days after {t.isoformat()} "
        f"(zone {zone}); check its days, hours and holidays"
    )


def _containing(calendar: Calendar, zone: ZoneInfo, t: dt.datetime) -> Window | None:
    day = t.astimezone(zone).date()
    for d in (day, day - _DAY, day + _DAY):
        for start, end in _windows(calendar, zone, d):
            if start <= t < end:
                return start, end
    return None


def is_open(calendar: Calendar, zone: ZoneInfo, t: dt.datetime) -> bool:
    """True when `t` falls inside one of the calendar's windows."""
    return _containing(calendar, zone, _utc(t, "t")) is not None


def next_open(calendar: Calendar, zone: ZoneInfo, t: dt.datetime) -> dt.datetime:
    """`t` (in UTC) when open, else the start of the next window.

    Raises ValueError when no window opens within HORIZON_DAYS days.
    """
    t = _utc(t, "t")
    start, _ = _windows_from(calendar, zone, t)
    return max(start, t)


def window_end(calendar: Calendar, zone: ZoneInfo, t: dt.datetime) -> dt.datetime:
    """The end of the window containing `t`; ValueError when `t` is not open."""
    t = _utc(t, "t")
    window = _containing(calendar, zone, t)
    if window is None:
        raise ValueError(f"{t.isoformat()} is outside the calendar's windows in {zone}")
    return window[1]


def open_seconds_per_day(calendar: Calendar) -> int:
    """Nominal open seconds of a window day: the merged hours, ignoring DST."""
    spans = sorted((_seconds_of(r.start), _seconds_of(r.end)) for r in calendar.hours)
    total, reach = 0, 0
    for start, end in spans:
        start = max(start, reach)
        if end > start:
            total += end - start
            reach = end
    return total


def _seconds_of(time: dt.time) -> int:
    return 86400 if time == dt.time.max else time.hour * 3600 + time.minute * 60 + time.second


# --- business arithmetic --------------------------------------------------------------------------


def add_business_days(calendar: Calendar, zone: ZoneInfo, t: dt.datetime, n: int) -> dt.datetime:
    """Move forward `n` window days, keeping the local time of day.

    The exact rule:

    - When `t`'s local date is a window day, the result is the `n`-th window day after it, at
      `t`'s wall-clock time (Friday 15:00 + 1 = Monday 15:00 on a mon-fri calendar). That time is
      kept even when it is outside the hours (Friday 20:00 + 1 = Monday 20:00); the engine waits for
      `next_open` before acting.
    - When `t`'s local date is not a window day (a weekend, a holiday), counting starts from the
      next window day at the calendar's earliest opening time, which itself is day 0
      (Saturday + 0 = Monday 09:00, Saturday + 1 = Tuesday 09:00).
    - Wall-clock times that do not exist on the target date move forward out of the DST gap;
      ambiguous ones take the first occurrence. Day 0 of a window day is `t` itself, even in the
      repeated hour when clocks go back (its wall time read again would be the first occurrence,
      before `t`).

    Raises ValueError for negative `n`, or when HORIZON_DAYS pass without a window day.
    """
    t = _utc(t, "t")
    if n < 0:
        raise ValueError(f"business days must not be negative, got {n}")
    local = t.astimezone(zone)
    day, time = local.date(), local.time().replace(fold=0)
    if n == 0 and is_window_day(calendar, day):
        return t
    if not is_window_day(calendar, day):
        if not calendar.hours:
            raise ValueError("the calendar has no hours, so it has no business days")
        day = _next_window_day(calendar, day, t)
        time = min(r.start for r in calendar.hours)
    for _ in range(n):
        day = _next_window_day(calendar, day, t)
    return _wall_to_utc(zone, day, time)


def _next_window_day(calendar: Calendar, day: dt.date, t: dt.datetime) -> dt.date:
    for _ in range(HORIZON_DAYS):
        day += _DAY
        if is_window_day(calendar, day):
            return day
    raise ValueError(
        f"the calendar has no window day in {HORIZON_DAYS} days (counting business days from "
        f"{t.isoformat()}); check its days and holidays"
    )


def add_business_seconds(
    calendar: Calendar, zone: ZoneInfo, t: dt.datetime, seconds: float
) -> dt.datetime:
    """The instant at which `seconds` of open window time have passed, starting at `t`.

    Closed time in between does not count. When the span runs out exactly at a window's end the
    result is that end (not the next opening), so the result may be a closed instant.
    """
    t = _utc(t, "t")
    if seconds < 0:
        raise ValueError(f"business seconds must not be negative, got {seconds}")
    remaining = dt.timedelta(seconds=seconds)
    cursor = t
    while remaining:
        start, end = _windows_from(calendar, zone, cursor)
        start = max(start, cursor)
        if start + remaining <= end:
            return start + remaining
        remaining -= end - start
        cursor = end
    return cursor


def add_duration(calendar: Calendar, zone: ZoneInfo, t: dt.datetime, duration: Duration) -> dt.datetime:
    """`t` plus `duration`: wall spans add elapsed time, business spans count calendar time."""
    t = _utc(t, "t")
    if not duration.business:
        return t + duration.timedelta
    if duration.business_days:
        return add_business_days(calendar, zone, t, duration.business_days)
    return add_business_seconds(calendar, zone, t, duration.seconds)


# --- pacing ---------------------------------------------------------------------------------------


def slot_time(
    calendar: Calendar,
    zone: ZoneInfo,
    day: dt.date,
    index: int,
    count: int,
    jitter_seconds: float,
    rng_value: float,
) -> dt.datetime | None:
    """Where paced slot `index` of `count` falls on local date `day`, or None without windows.

    Slots split the day's open time (not its wall time) into `count` equal shares and sit in the
    middle of theirs: slot i at open offset (i + 0.5) * open / count. Jitter then moves it by
    `jitter_seconds * (2 * rng_value - 1)`, clamped so it stays inside the window the slot fell
    in. Results are whole seconds, so with no jitter slots increase strictly with `index` as long
    as `count` does not exceed the day's open seconds.
    """
    if count < 1 or not 0 <= index < count:
        raise ValueError(f"slot index must be in 0..{count - 1} for {count} slots, got {index}")
    if jitter_seconds < 0:
        raise ValueError(f"jitter must not be negative, got {jitter_seconds}")
    if not 0 <= rng_value < 1:
        raise ValueError(f"rng_value must be in [0, 1), got {rng_value}")
    windows = _windows(calendar, zone, day)
    if not windows:
        return None
    starts_in_open_time = _cumulative_open_seconds(windows)
    total = starts_in_open_time[-1]
    offset = (index + 0.5) * total / count
    k = bisect.bisect_right(starts_in_open_time, offset) - 1
    start, end = windows[k]
    length = int((end - start).total_seconds())
    within = offset - starts_in_open_time[k] + jitter_seconds * (2 * rng_value - 1)
    within = min(max(within, 0.0), float(max(length - 1, 0)))
    return start + dt.timedelta(seconds=math.floor(within))


def _cumulative_open_seconds(windows: tuple[Window, ...]) -> list[int]:
    """Open-time offset at which each window starts, plus the day's total as the last item."""
    marks = [0]
    for start, end in windows:
        marks.append(marks[-1] + int((end - start).total_seconds()))
    return marks


# --- input checks ---------------------------------------------------------------------------------


def _aware(t: dt.datetime, name: str) -> dt.datetime:
    if t.tzinfo is None or t.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, got naive {t.isoformat()}")
    return t


def _utc(t: dt.datetime, name: str) -> dt.datetime:
    return _aware(t, name).astimezone(UTC)
