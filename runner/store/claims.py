"""Claiming due leads: a claim moves an active enrollment's `due_at` a lease ahead and names the
runner in `lease_owner`, so that no other runner takes it until the lease runs out or is handed
back (`store.leases`). How the rows are protected differs per backend (`backends.sqlite` holds the
write lock, `backends.postgres` skips rows locked by another runner's claim)."""
from __future__ import annotations

import datetime as dt

from runner.store.backends import current


def share() -> int:
    """How many due leads a runner claims at a time: few, so that the backlog is shared by every
    runner on the database instead of leased by the first one. On Postgres one (a claim is one
    statement that skips rows being claimed elsewhere); on SQLite a few, since each claim is a
    commit and the runners take turns at the one write lock anyway."""
    return int(current().CLAIM_SHARE)


def claim_due(now: dt.datetime, limit: int, owner: str, lease_until: dt.datetime) -> list[int]:
    """Up to `limit` enrollments due at `now`, earliest first, now leased to `owner` until `lease_until`."""
    return current().claim_due(now, limit, owner, lease_until)


def claim_ids(ids: list[int], now: dt.datetime, owner: str, lease_until: dt.datetime) -> list[int]:
    """These enrollments, those still due and not being claimed elsewhere, leased to `owner`; in the
    order given."""
    return current().claim_ids(ids, now, owner, lease_until)
