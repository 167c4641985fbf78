"""The SQL of leases: which runners hold leads, and handing leads back.

A lease is `lease_owner` set on an active enrollment whose `due_at` was moved a lease length ahead
when it was claimed (see `Engine.claim_many`). A lead that sleeps, pauses or ends has its lease
cleared, so an active enrollment with an owner is one a runner took and has not finished with.
"""
from __future__ import annotations

import datetime as dt

from runner.store.fields import from_db_time, to_db_time
from runner.store.models import db

BATCH = 500  # ids per IN (...): below the 999 variables old SQLite builds allow


def lease_holders() -> dict[str, tuple[int, dt.datetime]]:
    """Every runner holding leads: identity -> (leads held, when the last of its leases runs out)."""
    rows = db.execute_sql(
        "SELECT lease_owner, COUNT(*), MAX(due_at) FROM enrollment "
        "WHERE state = 'active' AND lease_owner IS NOT NULL GROUP BY lease_owner ORDER BY lease_owner").fetchall()
    return {owner: (count, from_db_time(until)) for owner, count, until in rows}


def release_leases_of(owners: list[str], now: dt.datetime) -> int:
    """Take back every lead leased by these (gone) runners: due at `now`, owned by nobody. They
    were due when they were claimed, so nothing is done earlier than it would have been."""
    released = 0
    for start in range(0, len(owners), BATCH):
        chunk = owners[start:start + BATCH]
        released += db.execute_sql(
            f"UPDATE enrollment SET due_at = ?, lease_owner = NULL WHERE state = 'active' "
            f"AND lease_owner IN ({', '.join('?' for _ in chunk)})", (to_db_time(now), *chunk)).rowcount
    return released


def release_claims(ids: list[int], owner: str, now: dt.datetime) -> int:
    """A stopping runner hands back the leads it claimed and did not get to (still its own)."""
    released = 0
    for start in range(0, len(ids), BATCH):
        chunk = ids[start:start + BATCH]
        released += db.execute_sql(
            f"UPDATE enrollment SET due_at = ?, lease_owner = NULL WHERE state = 'active' AND lease_owner = ? "
            f"AND id IN ({', '.join('?' for _ in chunk)})", (to_db_time(now), owner, *chunk)).rowcount
    return released


def in_flight_holders() -> dict[str, int]:
    """Runners holding leads whose action is in flight (a lead that sleeps in a backoff after a
    timeout has its action in flight on purpose, but no lease): identity -> how many."""
    rows = db.execute_sql(
        "SELECT e.lease_owner, COUNT(*) FROM enrollment e WHERE e.state = 'active' AND e.lease_owner IS NOT NULL "
        "AND EXISTS (SELECT 1 FROM action a WHERE a.enrollment_id = e.id AND a.status = 'in_flight') "
        "GROUP BY e.lease_owner").fetchall()
    return {owner: count for owner, count in rows}


def release_in_flight_of(owners: list[str], now: dt.datetime) -> int:
    """Make the leads these (gone) runners left with an action in flight due at `now`, owned by nobody."""
    released = 0
    for start in range(0, len(owners), BATCH):
        chunk = owners[start:start + BATCH]
        released += db.execute_sql(
            f"UPDATE enrollment SET due_at = ?, lease_owner = NULL WHERE state = 'active' "
            f"AND lease_owner IN ({', '.join('?' for _ in chunk)}) "
            "AND EXISTS (SELECT 1 FROM action a WHERE a.enrollment_id = enrollment.id AND a.status = 'in_flight')",
            (to_db_time(now), *chunk)).rowcount
    return released
