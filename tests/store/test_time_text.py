"""Times as the store keeps them: the text of recent conversions is kept (issue 6), and must be
exactly the text a fresh conversion gives."""
from __future__ import annotations

import datetime as dt
import zoneinfo

from runner.store.fields import from_db_time, to_db_time

NEW_YORK = zoneinfo.ZoneInfo("America/New_York")


def test_the_two_instants_of_an_ambiguous_local_time_keep_their_own_text() -> None:
    # 01:30 happens twice when New York leaves summer time; the two are equal as datetimes (equality
    # within one zone ignores `fold`), yet an hour apart.
    first = dt.datetime(2026, 11, 1, 1, 30, tzinfo=NEW_YORK)
    second = first.replace(fold=1)
    assert first == second
    for _ in range(2):
        assert to_db_time(first) == "2026-11-01 05:30:00.000000"
        assert to_db_time(second) == "2026-11-01 06:30:00.000000"


def test_the_same_instant_has_the_same_text_in_any_zone() -> None:
    utc = dt.datetime(2026, 1, 5, 14, 0, 0, 123, tzinfo=dt.UTC)
    for _ in range(2):
        assert to_db_time(utc) == "2026-01-05 14:00:00.000123"
        assert to_db_time(utc.astimezone(NEW_YORK)) == "2026-01-05 14:00:00.000123"
        assert from_db_time("2026-01-05 14:00:00.000123") == utc
        assert from_db_time("2026-01-05 14:00:00.000123").tzinfo is dt.UTC
