"""Performed actions counted over a provider quota's window (a week, a UTC day), not a sender's day.

`seqrun status`, simulate's report and its audit show a provider quota (runner.providers.quotas)
against what the audit log says was performed. An action counts at `performed_at` (the provider's
time), or at `started_at` when it has none.
"""
from __future__ import annotations

import datetime as dt

from runner.store.fields import from_db_time, to_db_time
from runner.store.models import db

_AT = "COALESCE(performed_at, started_at)"


def performed_between(sender_id: int, action: str, start: dt.datetime, end: dt.datetime) -> int:
    """Actions of a kind the sender performed in [start, end)."""
    row = db.execute_sql(
        f"SELECT COUNT(*) FROM action WHERE sender_id = ? AND action = ? AND status = 'done' "
        f"AND {_AT} >= ? AND {_AT} < ?", (sender_id, action, to_db_time(start), to_db_time(end))).fetchone()
    return int(row[0]) if row else 0


def performed_times(sender_id: int, action: str) -> list[dt.datetime]:
    """When the sender performed each action of a kind, oldest first."""
    return [from_db_time(at) for (at,) in db.execute_sql(
        f"SELECT {_AT} FROM action WHERE sender_id = ? AND action = ? AND status = 'done' AND {_AT} IS NOT NULL "
        f"ORDER BY 1", (sender_id, action)).fetchall()]
