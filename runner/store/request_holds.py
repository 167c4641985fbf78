"""Request holds: a provider's 429 reset, kept where every runner sharing the database sees it.

A runner that got a 429 records until when its scope (an API key or an account of a provider, named
by a hash, never by the key) must stay quiet; a runner started later reads it before its first
request, so a new `seqrun run --once` does not poll the provider before the reset.
"""
from __future__ import annotations

import datetime as dt

from runner.store.fields import from_db_time, to_db_time
from runner.store.models import db


def hold_requests(scope: str, until: dt.datetime) -> None:
    """Hold `scope` until `until`, or keep the later hold already recorded."""
    with db.atomic():
        db.execute_sql("INSERT INTO request_hold (scope, until) VALUES (?, ?) "
                       "ON CONFLICT (scope) DO UPDATE SET until = CASE WHEN excluded.until > request_hold.until "
                       "THEN excluded.until ELSE request_hold.until END",
                       (scope, to_db_time(until)))


def requests_held_until(scope: str) -> dt.datetime | None:
    """Until when `scope` is held (a time in the past once the hold is over), or None."""
    row = db.execute_sql("SELECT until FROM request_hold WHERE scope = ?", (scope,)).fetchone()
    return from_db_time(row[0]) if row else None
