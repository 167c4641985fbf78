"""ConnectSafely's value formats, read by the driver and written by the fake.

- Times in message objects are epoch milliseconds (`sentAt: 1712345678901`); elsewhere ISO 8601.
- Sent invitations say when as relative text (`sentAt: "2 days ago"`), connections as a date
  (`connectedDate: "Connected on Feb 15, 2024"`). Neither is a moment: `relative_interval` and
  `connected_interval` turn them into the interval [earliest, latest] the moment lies in.
- Profiles are named by their public id (`john-doe-123`) or a URN (`urn:li:fsd_profile:ACoAA…`).
"""
from __future__ import annotations

import datetime as dt
import re

UTC = dt.UTC
PROFILE_URN = "urn:li:fsd_profile:"
THREAD_URN = "urn:li:messagingThread:"
MESSAGE_URN = "urn:li:messagingMessage:"

_UNITS = {"second": dt.timedelta(seconds=1), "minute": dt.timedelta(minutes=1), "hour": dt.timedelta(hours=1),
          "day": dt.timedelta(days=1), "week": dt.timedelta(weeks=1), "month": dt.timedelta(days=30),
          "year": dt.timedelta(days=365)}
_RELATIVE = re.compile(r"(?:sent\s+|connected\s+)?(an?|\d+)\s+(second|minute|hour|day|week|month|year)s?\s+ago",
                       re.IGNORECASE)
_ON_DATE = re.compile(r"(?:connected\s+)?(?:on\s+)?([A-Za-z]+)\.?\s+(\d{1,2}),\s*(\d{4})", re.IGNORECASE)
_MONTHS = {name: number for number, names in enumerate(
    [("jan", "january"), ("feb", "february"), ("mar", "march"), ("apr", "april"), ("may",), ("jun", "june"),
     ("jul", "july"), ("aug", "august"), ("sep", "sept", "september"), ("oct", "october"), ("nov", "november"),
     ("dec", "december")], start=1) for name in names}


# --- reading (the driver) ---------------------------------------------------------------------------

def parse_moment(value: object) -> dt.datetime | None:
    """Epoch milliseconds (or seconds), or an ISO 8601 text, as an aware UTC time; None if neither."""
    if isinstance(value, bool) or value is None or value == "":
        return None
    if isinstance(value, (int, float)) or (isinstance(value, str) and value.strip().isdigit()):
        number = float(value)
        return dt.datetime.fromtimestamp(number / 1000 if number > 10**11 else number, UTC)
    if isinstance(value, str):
        try:
            parsed = dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            return None
        return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    return None


def relative_interval(text: object, now: dt.datetime) -> tuple[dt.datetime, dt.datetime] | None:
    """`"2 days ago"` read at `now`: [now - 3 days, now - 2 days] (LinkedIn rounds down). Also
    "just now", "today", "yesterday"; None for text it cannot read."""
    if not isinstance(text, str):
        return None
    words = text.strip().lower()
    for prefix in ("sent ", "connected "):
        words = words.removeprefix(prefix)
    if words in ("just now", "now", "moments ago", "a moment ago"):
        return now - dt.timedelta(minutes=1), now
    if words == "today":
        return dt.datetime.combine(now.date(), dt.time(), UTC), now
    if words == "yesterday":
        start = dt.datetime.combine(now.date() - dt.timedelta(days=1), dt.time(), UTC)
        return start, start + dt.timedelta(days=1)
    match = _RELATIVE.fullmatch(text.strip())
    if match is None:
        return None
    count = 1 if match.group(1).lower() in ("a", "an") else int(match.group(1))
    unit = _UNITS[match.group(2).lower()]
    return now - unit * (count + 1), now - unit * count


def connected_interval(text: object, now: dt.datetime) -> tuple[dt.datetime, dt.datetime] | None:
    """`"Connected on Feb 15, 2024"`: that whole UTC day (never later than `now`); relative text
    ("Connected 2 hours ago") as `relative_interval`; None for text it cannot read."""
    if not isinstance(text, str):
        return None
    match = _ON_DATE.fullmatch(text.strip())
    if match is not None:
        month = _MONTHS.get(match.group(1).lower())
        if month is None:
            return None
        try:
            day = dt.date(int(match.group(3)), month, int(match.group(2)))
        except ValueError:
            return None
        start = dt.datetime.combine(day, dt.time(), UTC)
        return min(start, now), min(start + dt.timedelta(days=1) - dt.timedelta(microseconds=1), now)
    return relative_interval(text, now)


def profile_urn(member_id: str) -> str:
    return member_id if member_id.startswith("urn:li:") else PROFILE_URN + member_id


# --- writing (the fake) -------------------------------------------------------------------------------

def millis(value: dt.datetime) -> int:
    return int(value.timestamp() * 1000)


def iso(value: dt.datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def relative_text(then: dt.datetime, now: dt.datetime) -> str:
    """How LinkedIn words an age: "just now", "5 minutes ago", "1 day ago", "3 weeks ago"."""
    seconds = max(0.0, (now - then).total_seconds())
    if seconds < 60:
        return "just now"
    for name, size in (("year", 365 * 86400), ("month", 30 * 86400), ("week", 7 * 86400), ("day", 86400),
                       ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            count = int(seconds // size)
            return f"{count} {name}{'s' if count != 1 else ''} ago"
    return "just now"


def connected_text(when: dt.datetime) -> str:
    """`Connected on Feb 15, 2024` (the UTC date)."""
    day = when.astimezone(UTC).date()
    return f"Connected on {day.strftime('%b')} {day.day}, {day.year}"
