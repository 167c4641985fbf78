"""Parsing durations and times of day as people write them in sequences.

Durations: "90 minutes", "3 days", "2 weeks", "2 business days", "4 business hours", and ISO 8601
("P3D", "PT90M", "P1DT12H", "P2W"). Business spans count only time inside the calendar's windows
(business hours) or only window days (business days); the engine does that arithmetic.

Times of day: "09:00"; ranges "09:00-17:30" (end after start; "24:00" allowed as an end).
"""
from __future__ import annotations

import datetime as dt
import re

from runner.language.model import Duration, TimeRange

_UNITS = {
    "minute": 60, "minutes": 60, "min": 60, "mins": 60,
    "hour": 3600, "hours": 3600, "h": 3600,
    "day": 86400, "days": 86400, "d": 86400,
    "week": 604800, "weeks": 604800, "w": 604800,
}
_HUMAN = re.compile(r"^\s*(\d+)\s*(business\s+)?([a-z]+)\s*$")
_ISO = re.compile(r"^P(?:(\d+)W)?(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?)?$")
_TIME = re.compile(r"^([01]\d|2[0-4]):([0-5]\d)$")

DURATION_HINT = 'a duration like "3 days", "2 business days", "90 minutes" or "P3D"'


class DurationError(ValueError):
    pass


def parse_duration(text: object) -> Duration:
    """Parse a duration; raise DurationError with a message saying what was expected."""
    if isinstance(text, bool) or not isinstance(text, (str, int)):
        raise DurationError(f"expected {DURATION_HINT}, got {_show(text)}")
    if isinstance(text, int):
        raise DurationError(f'expected {DURATION_HINT}, got {text} (add a unit, e.g. "{text} days")')
    m = _HUMAN.match(text.lower())
    if m:
        amount, business, unit = int(m.group(1)), bool(m.group(2)), m.group(3)
        if unit not in _UNITS:
            raise DurationError(f"expected {DURATION_HINT}, got {_show(text)}")
        if amount == 0:
            raise DurationError(f"a duration must be longer than zero, got {_show(text)}")
        seconds = amount * _UNITS[unit]
        if business:
            if _UNITS[unit] == 86400:
                return Duration(text, seconds=seconds, business=True, business_days=amount)
            if _UNITS[unit] == 604800:
                raise DurationError(f'business time is counted in "business days" or "business hours", got {_show(text)}')
            return Duration(text, seconds=seconds, business=True)
        return Duration(text, seconds=seconds)
    m = _ISO.match(text.strip())
    if m and any(m.groups()):
        w, d, h, mi, s = (int(g) if g else 0 for g in m.groups())
        seconds = w * 604800 + d * 86400 + h * 3600 + mi * 60 + s
        if seconds == 0:
            raise DurationError(f"a duration must be longer than zero, got {_show(text)}")
        return Duration(text, seconds=seconds)
    raise DurationError(f"expected {DURATION_HINT}, got {_show(text)}")


def parse_time_range(text: object) -> TimeRange:
    if not isinstance(text, str) or "-" not in text:
        raise DurationError(f'expected a time range like "09:00-17:30", got {_show(text)}')
    start_s, _, end_s = (p.strip() for p in text.partition("-"))
    start, end = _parse_time(start_s, text), _parse_time(end_s, text)
    if start == dt.time.max:
        raise DurationError(f'a time range cannot start at 24:00, got {_show(text)}')
    if end <= start:
        raise DurationError(f'a time range must end after it starts, got {_show(text)}')
    return TimeRange(start, end)


def _parse_time(part: str, whole: str) -> dt.time:
    m = _TIME.match(part)
    if not m:
        raise DurationError(f'expected a time range like "09:00-17:30", got {_show(whole)}')
    hour, minute = int(m.group(1)), int(m.group(2))
    if hour == 24:
        if minute:
            raise DurationError(f'expected a time range like "09:00-17:30", got {_show(whole)}')
        return dt.time.max
    return dt.time(hour, minute)


def _show(value: object) -> str:
    if isinstance(value, str):
        return f'"{value}"'
    if value is None:
        return "nothing"
    return repr(value)
