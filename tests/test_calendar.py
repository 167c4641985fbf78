"""Tests for runner.language.calendar: windows across DST, business arithmetic and pacing slots."""
from __future__ import annotations

import datetime as dt
import itertools
from zoneinfo import ZoneInfo

import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from runner.language import calendar as cal
from runner.language.durations import parse_duration
from runner.language.model import Calendar, TimeRange

UTC = dt.UTC
BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
LORD_HOWE = ZoneInfo("Australia/Lord_Howe")
KATHMANDU = ZoneInfo("Asia/Kathmandu")
EVERY_DAY = (0, 1, 2, 3, 4, 5, 6)
MIDNIGHT_END = dt.time.max  # how the loader stores "24:00"


def utc(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=UTC)


def rng(start: str, end: str) -> TimeRange:
    def parse(text: str) -> dt.time:
        return MIDNIGHT_END if text == "24:00" else dt.time.fromisoformat(text)

    return TimeRange(parse(start), parse(end))


def calendar(
    *ranges: tuple[str, str], days: tuple[int, ...] = (0, 1, 2, 3, 4), holidays: tuple[dt.date, ...] = ()
) -> Calendar:
    hours = tuple(rng(a, b) for a, b in ranges) or (rng("09:00", "17:00"),)
    return Calendar(days=days, hours=hours, holidays=frozenset(holidays))


DEFAULT = calendar()
LUNCH = calendar(("09:00", "12:00"), ("13:00", "17:30"))


# --- resolve_zone ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("timezone", "lead_tz", "sender_tz", "expected"),
    [
        ("lead", "America/New_York", "Asia/Tokyo", "America/New_York"),
        ("lead", None, "Asia/Tokyo", "Europe/Berlin"),
        ("lead", "Mars/Olympus", "Asia/Tokyo", "Europe/Berlin"),
        ("lead", "", "Asia/Tokyo", "Europe/Berlin"),
        ("lead", "../etc/passwd", None, "Europe/Berlin"),
        ("lead", "America", None, "Europe/Berlin"),  # a tzdata directory, not a zone
        ("lead", " America/New_York ", None, "America/New_York"),
        ("sender", "America/New_York", "Asia/Tokyo", "Asia/Tokyo"),
        ("sender", "America/New_York", None, "Europe/Berlin"),
        ("sender", None, "not a zone", "Europe/Berlin"),
        ("Asia/Kathmandu", "America/New_York", "Asia/Tokyo", "Asia/Kathmandu"),
    ],
)
def test_resolve_zone(timezone: str, lead_tz: str | None, sender_tz: str | None, expected: str) -> None:
    c = Calendar(timezone=timezone, fallback="Europe/Berlin")
    assert cal.resolve_zone(c, lead_tz=lead_tz, sender_tz=sender_tz) is ZoneInfo(expected)


def test_resolve_zone_falls_back_to_utc_when_everything_is_invalid() -> None:
    c = Calendar(timezone="Nowhere/Land", fallback="Also/Nowhere")
    assert cal.resolve_zone(c, lead_tz=None, sender_tz=None) is ZoneInfo("UTC")


# --- windows_on -----------------------------------------------------------------------------------


def test_windows_follow_local_time_in_winter_and_summer() -> None:
    assert cal.windows_on(DEFAULT, BERLIN, dt.date(2026, 1, 5)) == [(utc(2026, 1, 5, 8), utc(2026, 1, 5, 16))]
    assert cal.windows_on(DEFAULT, BERLIN, dt.date(2026, 7, 6)) == [(utc(2026, 7, 6, 7), utc(2026, 7, 6, 15))]


def test_windows_are_empty_on_weekends_and_holidays() -> None:
    c = calendar(holidays=(dt.date(2026, 12, 24),))
    assert cal.windows_on(c, BERLIN, dt.date(2026, 12, 26)) == []  # Saturday
    assert cal.windows_on(c, BERLIN, dt.date(2026, 12, 24)) == []  # Thursday, holiday
    assert cal.windows_on(c, BERLIN, dt.date(2026, 12, 23)) != []


def test_several_ranges_per_day_stay_separate() -> None:
    assert cal.windows_on(LUNCH, BERLIN, dt.date(2026, 1, 5)) == [
        (utc(2026, 1, 5, 8), utc(2026, 1, 5, 11)),
        (utc(2026, 1, 5, 12), utc(2026, 1, 5, 16, 30)),
    ]


def test_adjacent_and_overlapping_ranges_merge() -> None:
    c = calendar(
        ("13:00", "14:00"), ("09:00", "12:00"), ("11:00", "11:30"), ("12:00", "13:00"), ("16:00", "17:00")
    )
    assert cal.windows_on(c, ZoneInfo("UTC"), dt.date(2026, 1, 5)) == [
        (utc(2026, 1, 5, 9), utc(2026, 1, 5, 14)),
        (utc(2026, 1, 5, 16), utc(2026, 1, 5, 17)),
    ]


def test_24_00_ends_at_the_next_local_midnight() -> None:
    c = calendar(("18:00", "24:00"))
    assert cal.windows_on(c, BERLIN, dt.date(2026, 1, 5)) == [(utc(2026, 1, 5, 17), utc(2026, 1, 5, 23))]


def test_spring_forward_keeps_wall_clock_hours() -> None:
    c = calendar(days=EVERY_DAY)
    # Berlin 2026-03-29: 02:00 CET jumps to 03:00 CEST.
    assert cal.windows_on(c, BERLIN, dt.date(2026, 3, 29)) == [(utc(2026, 3, 29, 7), utc(2026, 3, 29, 15))]
    # New York 2026-03-08: 02:00 EST jumps to 03:00 EDT.
    assert cal.windows_on(c, NEW_YORK, dt.date(2026, 3, 8)) == [(utc(2026, 3, 8, 13), utc(2026, 3, 8, 21))]


def test_a_start_in_the_spring_forward_gap_moves_to_the_first_valid_instant() -> None:
    c = calendar(("02:30", "04:00"), days=EVERY_DAY)
    # 02:30 does not exist; 03:00 CEST (01:00 UTC) is the first instant after the gap.
    assert cal.windows_on(c, BERLIN, dt.date(2026, 3, 29)) == [(utc(2026, 3, 29, 1), utc(2026, 3, 29, 2))]


def test_a_range_entirely_inside_the_gap_has_no_window() -> None:
    c = calendar(("02:00", "02:45"), days=EVERY_DAY)
    assert cal.windows_on(c, NEW_YORK, dt.date(2026, 3, 8)) == []


def test_a_whole_day_on_transition_days_is_23_or_25_hours() -> None:
    c = calendar(("00:00", "24:00"), days=EVERY_DAY)
    assert cal.windows_on(c, BERLIN, dt.date(2026, 3, 29)) == [(utc(2026, 3, 28, 23), utc(2026, 3, 29, 22))]
    assert cal.windows_on(c, NEW_YORK, dt.date(2026, 11, 1)) == [(utc(2026, 11, 1, 4), utc(2026, 11, 2, 5))]


def test_fall_back_uses_the_first_occurrence_of_ambiguous_times() -> None:
    # New York 2026-11-01: 02:00 EDT falls back to 01:00 EST, so 01:30 happens twice.
    c = calendar(("01:30", "03:00"), days=EVERY_DAY)
    assert cal.windows_on(c, NEW_YORK, dt.date(2026, 11, 1)) == [(utc(2026, 11, 1, 5, 30), utc(2026, 11, 1, 8))]
    # Berlin 2026-10-25: 03:00 CEST falls back to 02:00 CET; 09:00-17:00 is still eight hours.
    assert cal.windows_on(calendar(days=EVERY_DAY), BERLIN, dt.date(2026, 10, 25)) == [
        (utc(2026, 10, 25, 8), utc(2026, 10, 25, 16))
    ]


def test_lord_howe_half_hour_dst() -> None:
    c = calendar(("02:00", "03:00"), days=EVERY_DAY)
    # 2026-10-04: 02:00 +10:30 jumps to 02:30 +11:00, leaving half an hour open.
    assert cal.windows_on(c, LORD_HOWE, dt.date(2026, 10, 4)) == [(utc(2026, 10, 3, 15, 30), utc(2026, 10, 3, 16))]
    # 2026-04-05: 02:00 +11:00 falls back to 01:30 +10:30; 02:00-03:00 happens once, at +10:30.
    assert cal.windows_on(c, LORD_HOWE, dt.date(2026, 4, 5)) == [
        (utc(2026, 4, 4, 15, 30), utc(2026, 4, 4, 16, 30))
    ]


def test_kathmandu_quarter_hour_offset() -> None:
    assert cal.windows_on(DEFAULT, KATHMANDU, dt.date(2026, 1, 5)) == [
        (utc(2026, 1, 5, 3, 15), utc(2026, 1, 5, 11, 15))
    ]


def test_windows_on_returns_a_fresh_list() -> None:
    day = dt.date(2026, 1, 5)
    cal.windows_on(DEFAULT, BERLIN, day).clear()
    assert len(cal.windows_on(DEFAULT, BERLIN, day)) == 1


# --- is_open, next_open, window_end ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("t", "expected"),
    [
        (utc(2026, 1, 5, 8), True),  # 09:00 Berlin: the start is open
        (utc(2026, 1, 5, 10, 59, 59), True),
        (utc(2026, 1, 5, 11), False),  # 12:00: lunch
        (utc(2026, 1, 5, 16, 30), False),  # 17:30: the end is closed
        (utc(2026, 1, 10, 10), False),  # Saturday
        (dt.datetime(2026, 1, 5, 9, tzinfo=BERLIN), True),  # any aware datetime is accepted
    ],
)
def test_is_open(t: dt.datetime, expected: bool) -> None:
    assert cal.is_open(LUNCH, BERLIN, t) is expected


@pytest.mark.parametrize(
    ("t", "expected"),
    [
        (utc(2026, 1, 5, 9), utc(2026, 1, 5, 9)),  # open: t itself
        (utc(2026, 1, 5, 6), utc(2026, 1, 5, 8)),  # before opening
        (utc(2026, 1, 5, 11, 30), utc(2026, 1, 5, 12)),  # lunch
        (utc(2026, 1, 9, 17), utc(2026, 1, 12, 8)),  # Friday evening -> Monday
        (utc(2026, 3, 27, 17), utc(2026, 3, 30, 7)),  # ... across the spring-forward weekend
        (dt.datetime(2026, 1, 5, 12, 30, tzinfo=BERLIN), utc(2026, 1, 5, 12)),
    ],
)
def test_next_open(t: dt.datetime, expected: dt.datetime) -> None:
    result = cal.next_open(LUNCH, BERLIN, t)
    assert result == expected
    assert result.tzinfo is UTC


def test_next_open_skips_holidays() -> None:
    c = calendar(holidays=(dt.date(2026, 12, 24), dt.date(2026, 12, 25)))
    assert cal.next_open(c, BERLIN, utc(2026, 12, 23, 17)) == utc(2026, 12, 28, 8)


def test_next_open_fails_clearly_when_the_calendar_never_opens() -> None:
    start = dt.date(2026, 1, 1)
    c = calendar(days=(0,), holidays=tuple(start + dt.timedelta(days=i) for i in range(450)))
    with pytest.raises(ValueError) as err:
        cal.next_open(c, BERLIN, utc(2026, 1, 1))
    assert str(err.value) == (
        "the calendar has no open window in the 400 days after 2026-01-01T00:00:00+00:00 "
        "(zone Europe/Berlin); check its days, hours and holidays"
    )
    assert not cal.is_open(c, BERLIN, utc(2026, 1, 5, 10))


def test_window_end() -> None:
    assert cal.window_end(LUNCH, BERLIN, utc(2026, 1, 5, 8)) == utc(2026, 1, 5, 11)
    assert cal.window_end(LUNCH, BERLIN, utc(2026, 1, 5, 14)) == utc(2026, 1, 5, 16, 30)


def test_window_end_of_a_closed_instant_is_an_error() -> None:
    with pytest.raises(ValueError) as err:
        cal.window_end(LUNCH, BERLIN, utc(2026, 1, 5, 11, 30))
    assert str(err.value) == "2026-01-05T11:30:00+00:00 is outside the calendar's windows in Europe/Berlin"


def test_window_end_stops_at_local_midnight() -> None:
    c = calendar(("00:00", "24:00"))
    assert cal.window_end(c, BERLIN, utc(2026, 1, 5, 10)) == utc(2026, 1, 5, 23)
    assert cal.is_open(c, BERLIN, utc(2026, 1, 5, 23))  # Tuesday's window starts right there


def test_local_date() -> None:
    assert cal.local_date(utc(2026, 1, 5, 23, 30), BERLIN) == dt.date(2026, 1, 6)
    assert cal.local_date(utc(2026, 1, 5, 3), NEW_YORK) == dt.date(2026, 1, 4)


# --- business days --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("local_start", "n", "local_expected"),
    [
        ((2026, 1, 9, 15), 1, (2026, 1, 12, 15)),  # Friday -> Monday
        ((2026, 1, 9, 15), 5, (2026, 1, 16, 15)),  # a full week
        ((2026, 1, 5, 15), 0, (2026, 1, 5, 15)),
        ((2026, 1, 9, 20), 1, (2026, 1, 12, 20)),  # after hours: the time of day is kept
        ((2026, 1, 10, 15), 0, (2026, 1, 12, 9)),  # Saturday: Monday's opening is day 0
        ((2026, 1, 10, 15), 1, (2026, 1, 13, 9)),
        ((2026, 12, 23, 10), 1, (2026, 12, 28, 10)),  # over Christmas and a weekend
        ((2026, 12, 24, 10), 1, (2026, 12, 29, 9)),  # from a holiday: count from Monday's opening
        ((2026, 3, 27, 10), 1, (2026, 3, 30, 10)),  # across spring forward: same wall time
        ((2026, 10, 23, 10), 1, (2026, 10, 26, 10)),  # across fall back
    ],
)
def test_add_business_days(local_start: tuple[int, ...], n: int, local_expected: tuple[int, ...]) -> None:
    c = calendar(holidays=(dt.date(2026, 12, 24), dt.date(2026, 12, 25)))
    start = dt.datetime(*local_start, tzinfo=BERLIN)
    expected = dt.datetime(*local_expected, tzinfo=BERLIN).astimezone(UTC)
    assert cal.add_business_days(c, BERLIN, start, n) == expected


def test_add_business_days_into_a_dst_gap_moves_forward() -> None:
    c = calendar(days=EVERY_DAY)
    start = dt.datetime(2026, 3, 28, 2, 30, tzinfo=BERLIN)
    assert cal.add_business_days(c, BERLIN, start, 1) == utc(2026, 3, 29, 1)  # 03:00 CEST


def test_add_business_days_rejects_negative_counts() -> None:
    with pytest.raises(ValueError) as err:
        cal.add_business_days(DEFAULT, BERLIN, utc(2026, 1, 5, 10), -1)
    assert str(err.value) == "business days must not be negative, got -1"


def test_add_business_days_fails_clearly_without_window_days() -> None:
    with pytest.raises(ValueError) as err:
        cal.add_business_days(calendar(days=()), BERLIN, utc(2026, 1, 5, 10), 1)
    assert str(err.value) == (
        "the calendar has no window day in 400 days (counting business days from "
        "2026-01-05T10:00:00+00:00); check its days and holidays"
    )


# --- business seconds and durations ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "hours", "expected"),
    [
        (utc(2026, 1, 5, 14), 4, utc(2026, 1, 6, 10)),  # Monday 15:00 Berlin + 4h -> Tuesday 11:00
        (utc(2026, 1, 9, 15), 2, utc(2026, 1, 12, 9)),  # Friday 16:00 + 2h -> Monday 10:00
        (utc(2026, 1, 5, 14), 2, utc(2026, 1, 5, 16)),  # ending exactly at closing: the end itself
        (utc(2026, 1, 10, 10), 1, utc(2026, 1, 12, 9)),  # from a closed moment: counting starts Monday
        (utc(2026, 1, 5, 10), 0, utc(2026, 1, 5, 10)),
        (utc(2026, 1, 5, 8), 40, utc(2026, 1, 9, 16)),  # a week of hours: Monday 09:00 -> Friday 17:00
    ],
)
def test_add_business_seconds(start: dt.datetime, hours: int, expected: dt.datetime) -> None:
    assert cal.add_business_seconds(DEFAULT, BERLIN, start, hours * 3600) == expected


def test_add_business_seconds_skips_lunch() -> None:
    assert cal.add_business_seconds(LUNCH, BERLIN, utc(2026, 1, 5, 10), 2 * 3600) == utc(2026, 1, 5, 13)


def test_add_business_seconds_counts_the_short_dst_day() -> None:
    c = calendar(("00:00", "24:00"), days=EVERY_DAY)
    # Sunday 2026-03-29 in Berlin has 23 hours; 24 business hours from its start end at 01:00 Monday.
    start = utc(2026, 3, 28, 23)
    assert cal.add_business_seconds(c, BERLIN, start, 24 * 3600) == utc(2026, 3, 29, 23)


def test_add_business_seconds_rejects_negative_spans() -> None:
    with pytest.raises(ValueError) as err:
        cal.add_business_seconds(DEFAULT, BERLIN, utc(2026, 1, 5, 10), -5)
    assert str(err.value) == "business seconds must not be negative, got -5"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("3 days", utc(2026, 3, 31, 9)),  # wall time: 72 elapsed hours, though the clocks moved
        ("90 minutes", utc(2026, 3, 28, 10, 30)),
        ("2 business days", utc(2026, 4, 1, 7)),  # from Saturday: Monday 09:00 is day 0 -> Wednesday 09:00
        ("4 business hours", utc(2026, 3, 30, 11)),  # Monday 09:00 CEST + 4h
    ],
)
def test_add_duration(text: str, expected: dt.datetime) -> None:
    saturday = utc(2026, 3, 28, 9)  # 10:00 CET, the day before spring forward
    assert cal.add_duration(DEFAULT, BERLIN, saturday, parse_duration(text)) == expected


# --- open_seconds_per_day -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ranges", "expected"),
    [
        ((("09:00", "17:00"),), 8 * 3600),
        ((("09:00", "12:00"), ("13:00", "17:30")), 7.5 * 3600),
        ((("09:00", "12:00"), ("11:00", "13:00"), ("10:00", "10:30")), 4 * 3600),
        ((("00:00", "24:00"),), 86400),
        ((("18:00", "24:00"), ("08:00", "09:15")), 7.25 * 3600),
    ],
)
def test_open_seconds_per_day(ranges: tuple[tuple[str, str], ...], expected: float) -> None:
    assert cal.open_seconds_per_day(calendar(*ranges)) == expected


# --- slot_time ------------------------------------------------------------------------------------


def test_slots_spread_evenly_over_one_window() -> None:
    monday = dt.date(2026, 1, 5)
    slots = [cal.slot_time(DEFAULT, BERLIN, monday, i, 8, 0, 0.0) for i in range(8)]
    assert slots == [utc(2026, 1, 5, 8 + i, 30) for i in range(8)]  # 09:30 ... 16:30 Berlin


def test_slots_spread_by_open_time_across_a_break() -> None:
    c = calendar(("09:00", "12:00"), ("13:00", "17:00"))
    slots = [cal.slot_time(c, ZoneInfo("UTC"), dt.date(2026, 1, 5), i, 7, 0, 0.5) for i in range(7)]
    assert slots == [utc(2026, 1, 5, h, 30) for h in (9, 10, 11, 13, 14, 15, 16)]


def test_slot_jitter_moves_within_its_window() -> None:
    c = calendar(("09:00", "12:00"), ("13:00", "17:00"))
    day, zone = dt.date(2026, 1, 5), ZoneInfo("UTC")
    assert cal.slot_time(c, zone, day, 0, 7, 600, 0.0) == utc(2026, 1, 5, 9, 20)
    assert cal.slot_time(c, zone, day, 0, 7, 600, 0.75) == utc(2026, 1, 5, 9, 35)
    # Clamped to the window the slot fell in: never before opening, never across the lunch break.
    assert cal.slot_time(c, zone, day, 0, 7, 7200, 0.0) == utc(2026, 1, 5, 9)
    assert cal.slot_time(c, zone, day, 2, 7, 7200, 0.999) == utc(2026, 1, 5, 11, 59, 59)
    assert cal.slot_time(c, zone, day, 3, 7, 7200, 0.0) == utc(2026, 1, 5, 13)


def test_slot_time_on_a_closed_day_is_none() -> None:
    assert cal.slot_time(DEFAULT, BERLIN, dt.date(2026, 1, 10), 0, 5, 0, 0.0) is None


def test_slot_time_on_a_short_dst_day_uses_the_real_open_time() -> None:
    c = calendar(("00:00", "24:00"), days=EVERY_DAY)
    # 2026-03-29 Berlin has 23 open hours; the middle of 23 slots is the 12th hour of open time.
    assert cal.slot_time(c, BERLIN, dt.date(2026, 3, 29), 11, 23, 0, 0.0) == utc(2026, 3, 29, 10, 30)


@pytest.mark.parametrize(
    ("index", "count", "jitter", "rng_value", "message"),
    [
        (3, 3, 0, 0.0, "slot index must be in 0..2 for 3 slots, got 3"),
        (-1, 3, 0, 0.0, "slot index must be in 0..2 for 3 slots, got -1"),
        (0, 0, 0, 0.0, "slot index must be in 0..-1 for 0 slots, got 0"),
        (0, 3, -1, 0.0, "jitter must not be negative, got -1"),
        (0, 3, 0, 1.0, "rng_value must be in [0, 1), got 1.0"),
    ],
)
def test_slot_time_rejects_bad_arguments(
    index: int, count: int, jitter: int, rng_value: float, message: str
) -> None:
    with pytest.raises(ValueError) as err:
        cal.slot_time(DEFAULT, BERLIN, dt.date(2026, 1, 5), index, count, jitter, rng_value)
    assert str(err.value) == message


# --- naive datetimes ------------------------------------------------------------------------------

NAIVE = dt.datetime(2026, 1, 5, 10)


@pytest.mark.parametrize(
    "call",
    [
        lambda: cal.is_open(DEFAULT, BERLIN, NAIVE),
        lambda: cal.next_open(DEFAULT, BERLIN, NAIVE),
        lambda: cal.window_end(DEFAULT, BERLIN, NAIVE),
        lambda: cal.add_business_days(DEFAULT, BERLIN, NAIVE, 1),
        lambda: cal.add_business_seconds(DEFAULT, BERLIN, NAIVE, 60),
        lambda: cal.add_duration(DEFAULT, BERLIN, NAIVE, parse_duration("3 days")),
        lambda: cal.local_date(NAIVE, BERLIN),
    ],
)
def test_naive_datetimes_are_rejected(call: object) -> None:
    with pytest.raises(ValueError) as err:
        call()  # type: ignore[operator]
    assert str(err.value) == "t must be timezone-aware, got naive 2026-01-05T10:00:00"


# --- properties -----------------------------------------------------------------------------------

ZONES = [ZoneInfo("UTC"), BERLIN, NEW_YORK, LORD_HOWE, KATHMANDU]
FIXED_ZONES = [ZoneInfo("UTC"), KATHMANDU]
TRANSITIONS = [
    utc(2026, 3, 29, 1), utc(2026, 10, 25, 1),  # Berlin
    utc(2026, 3, 8, 7), utc(2026, 11, 1, 6),  # New York
    utc(2026, 4, 4, 15), utc(2026, 10, 3, 15, 30),  # Lord Howe
]


@st.composite
def calendars(draw: st.DrawFn, max_holidays: int = 12) -> Calendar:
    days = tuple(sorted(draw(st.sets(st.integers(0, 6), min_size=1))))
    hours = []
    for _ in range(draw(st.integers(1, 3))):
        start = draw(st.integers(0, 47)) * 30
        end = draw(st.integers(start // 30 + 1, 48)) * 30
        end_time = MIDNIGHT_END if end == 1440 else dt.time(end // 60, end % 60)
        hours.append(TimeRange(dt.time(start // 60, start % 60), end_time))
    holidays = draw(st.frozensets(st.dates(dt.date(2026, 1, 1), dt.date(2026, 12, 31)), max_size=max_holidays))
    return Calendar(days=days, hours=tuple(hours), holidays=holidays)


def instants(minute_aligned: bool = False) -> st.SearchStrategy[dt.datetime]:
    anywhere = st.datetimes(dt.datetime(2025, 12, 1), dt.datetime(2026, 12, 31))
    near_transition = st.builds(
        lambda base, minutes: base.replace(tzinfo=None) + dt.timedelta(minutes=minutes),
        st.sampled_from(TRANSITIONS),
        st.integers(-36 * 60, 36 * 60),
    )
    naive = st.one_of(anywhere, near_transition)
    if minute_aligned:
        naive = naive.map(lambda d: d.replace(second=0, microsecond=0))
    return naive.map(lambda d: d.replace(tzinfo=UTC))


@settings(deadline=None)
@given(calendars(), st.sampled_from(ZONES), instants())
def test_next_open_is_the_first_open_instant(c: Calendar, zone: ZoneInfo, t: dt.datetime) -> None:
    opening = cal.next_open(c, zone, t)
    assert opening >= t
    assert cal.is_open(c, zone, opening)
    gap = opening - t
    for k in range(20):
        assert not cal.is_open(c, zone, t + gap * k / 20) or gap == dt.timedelta()
    if gap:
        assert not cal.is_open(c, zone, opening - dt.timedelta(seconds=1))
    assert cal.window_end(c, zone, opening) > opening


def minute_of_day(time: dt.time) -> int:
    return 1440 if time == MIDNIGHT_END else time.hour * 60 + time.minute


@settings(deadline=None)
@given(calendars(), st.sampled_from(FIXED_ZONES), instants())
def test_is_open_matches_the_wall_clock_without_dst(c: Calendar, zone: ZoneInfo, t: dt.datetime) -> None:
    local = t.astimezone(zone)
    minute = local.hour * 60 + local.minute
    in_hours = any(minute_of_day(r.start) <= minute < minute_of_day(r.end) for r in c.hours)
    expected = in_hours and local.weekday() in c.days and local.date() not in c.holidays
    assert cal.is_open(c, zone, t) is expected


@settings(deadline=None)
@given(calendars(), st.sampled_from(ZONES), st.dates(dt.date(2026, 1, 1), dt.date(2026, 12, 31)))
def test_windows_are_sorted_disjoint_and_nominal_away_from_transitions(
    c: Calendar, zone: ZoneInfo, day: dt.date
) -> None:
    windows = cal.windows_on(c, zone, day)
    for start, end in windows:
        assert start < end
    for (_, end), (start, _) in itertools.pairwise(windows):
        assert end < start
    midnight = dt.datetime.combine(day, dt.time(), tzinfo=zone)
    next_midnight = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), tzinfo=zone)
    if cal.is_window_day(c, day) and midnight.utcoffset() == next_midnight.utcoffset():
        total = sum((end - start).total_seconds() for start, end in windows)
        assert total == cal.open_seconds_per_day(c)


def brute_force_business_minutes(c: Calendar, zone: ZoneInfo, t: dt.datetime, minutes: int) -> dt.datetime:
    minute = dt.timedelta(minutes=1)
    while minutes:
        if cal.is_open(c, zone, t):
            minutes -= 1
        t += minute
    return t


@settings(deadline=None, max_examples=60)
@given(calendars(max_holidays=4), st.sampled_from(ZONES), instants(minute_aligned=True), st.integers(0, 8 * 60))
def test_add_business_seconds_matches_a_minute_walk(
    c: Calendar, zone: ZoneInfo, t: dt.datetime, minutes: int
) -> None:
    assume(len(c.days) >= 3)  # keeps the walk short
    assert cal.add_business_seconds(c, zone, t, minutes * 60) == brute_force_business_minutes(c, zone, t, minutes)


def open_time_between(c: Calendar, zone: ZoneInfo, a: dt.datetime, b: dt.datetime) -> dt.timedelta:
    total = dt.timedelta()
    day = cal.local_date(a, zone) - dt.timedelta(days=1)
    while day <= cal.local_date(b, zone) + dt.timedelta(days=1):
        for start, end in cal.windows_on(c, zone, day):
            total += max(dt.timedelta(), min(end, b) - max(start, a))
        day += dt.timedelta(days=1)
    return total


@settings(deadline=None)
@given(
    calendars(), st.sampled_from(ZONES), instants(), instants(),
    st.integers(0, 30 * 86400), st.integers(0, 30 * 86400),
)
def test_add_business_seconds_is_monotonic_and_exact(
    c: Calendar, zone: ZoneInfo, t1: dt.datetime, t2: dt.datetime, s1: int, s2: int
) -> None:
    t1, t2 = sorted((t1, t2))
    s1, s2 = sorted((s1, s2))
    r11 = cal.add_business_seconds(c, zone, t1, s1)
    assert r11 >= t1
    assert r11 <= cal.add_business_seconds(c, zone, t1, s2)
    assert r11 <= cal.add_business_seconds(c, zone, t2, s1)
    assert open_time_between(c, zone, t1, r11) == dt.timedelta(seconds=s1)


#: Berlin's clocks go back at 01:00 UTC on Sunday 25 October 2026: 01:00 UTC is the second 02:00.
SECOND_TWO_OCLOCK = (Calendar(days=(6,), hours=(TimeRange(dt.time(0), dt.time(0, 30)),)), ZoneInfo("Europe/Berlin"),
                     dt.datetime(2026, 10, 25, 1, 0, tzinfo=dt.UTC), 0)


@settings(deadline=None)
@given(calendars(), st.sampled_from(ZONES), instants(), st.integers(0, 15))
@example(*SECOND_TWO_OCLOCK)
def test_add_business_days_lands_n_window_days_later(c: Calendar, zone: ZoneInfo, t: dt.datetime, n: int) -> None:
    result = cal.add_business_days(c, zone, t, n)
    assert result > t or (n == 0 and result == t)
    start_day, end_day = cal.local_date(t, zone), cal.local_date(result, zone)
    assert cal.is_window_day(c, end_day)
    between = sum(
        cal.is_window_day(c, start_day + dt.timedelta(days=i)) for i in range(1, (end_day - start_day).days)
    )
    expected_between = n - 1 if cal.is_window_day(c, start_day) else n
    assert between == max(expected_between, 0)


def test_zero_business_days_at_the_repeated_hour_of_a_dst_change_is_the_moment_itself() -> None:
    # The wall time 02:00 read without its fold is the first 02:00 (00:00 UTC), an hour before `t`.
    c, zone, t, n = SECOND_TWO_OCLOCK
    assert cal.add_business_days(c, zone, t, n) == t
    assert cal.add_business_days(c, zone, t, 1) == dt.datetime(2026, 11, 1, 1, 0, tzinfo=dt.UTC)


@settings(deadline=None)
@given(
    calendars(), st.sampled_from(ZONES), st.dates(dt.date(2026, 1, 1), dt.date(2026, 12, 31)),
    st.integers(1, 60), st.integers(0, 3600), st.floats(0, 1, exclude_max=True), st.data(),
)
def test_slots_are_inside_windows_and_ordered(
    c: Calendar, zone: ZoneInfo, day: dt.date, count: int, jitter: int, rng_value: float, data: st.DataObject
) -> None:
    index = data.draw(st.integers(0, count - 1))
    slot = cal.slot_time(c, zone, day, index, count, jitter, rng_value)
    if not cal.windows_on(c, zone, day):
        assert slot is None
        return
    assert slot is not None
    assert any(start <= slot < end for start, end in cal.windows_on(c, zone, day))
    plain = [cal.slot_time(c, zone, day, i, count, 0, rng_value) for i in range(count)]
    assert all(a < b for a, b in itertools.pairwise(plain))  # type: ignore[operator]
