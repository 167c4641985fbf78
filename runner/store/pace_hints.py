"""The SQL of pacing hints (see `runner.engine.limits`): what a runner learnt about a sender's pacing that
saves work for the next lead, kept in the database so that every runner sharing it learns the same
and a release by one moves the hints of all.

- `pace_hint`: per (sender, sequence, action, lead zone), the first sender-local day that may still
  have room; the days before it are known to be full.
- `pace_vacated`: per (sender, sequence, action), the earliest day some capacity was given back on
  that `fill_gaps` has not yet filled.
- `pace_reach`: per (sender, action), the largest spacing of any point stored, so that a check
  around a moment looks far enough for every other point's own spacing.
"""
from __future__ import annotations

from runner.store.kept import Kept
from runner.store.models import db
from runner.store.transactions import KeptRead

# In a simulation (`runner.store.kept`), the rows as the writes below leave them: per (sender id,
# sequence, action), {zone: first free day or None (no row)}; per (sender id, action), the reach or
# None (no row).
_FIRST_FREE: Kept[tuple[int, str, str], dict[str, str | None]] = Kept()
_REACH: Kept[tuple[int, str], float | None] = Kept()


def first_free_day(sender_id: int, sequence: str, action: str, zone: str) -> str | None:
    kept = _FIRST_FREE.rows()
    zones = kept.setdefault((sender_id, sequence, action), {}) if kept is not None else None
    if zones is not None and zone in zones:
        return zones[zone]
    row = db.execute_sql("SELECT first_free FROM pace_hint WHERE sender_id = ? AND sequence = ? AND action = ? "
                         "AND zone = ?", (sender_id, sequence, action, zone)).fetchone()
    day: str | None = row[0] if row else None
    if zones is not None:
        zones[zone] = day
    return day


def set_first_free_day(sender_id: int, sequence: str, action: str, zone: str, day: str) -> None:
    """The days before `day` are full for leads of `zone` (the hint only moves forward here)."""
    db.execute_sql("INSERT INTO pace_hint (sender_id, sequence, action, zone, first_free) VALUES (?, ?, ?, ?, ?) "
                   "ON CONFLICT (sender_id, sequence, action, zone) DO UPDATE SET first_free = excluded.first_free "
                   "WHERE pace_hint.first_free < excluded.first_free", (sender_id, sequence, action, zone, day))
    kept = _FIRST_FREE.rows()
    zones = kept.get((sender_id, sequence, action)) if kept is not None else None
    if zones is not None and zone in zones:
        known = zones[zone]
        zones[zone] = day if known is None or known < day else known


def reopen_day(sender_id: int, sequence: str, action: str, day: str) -> None:
    """Capacity on `day` came back: no zone's hint may skip it any more."""
    db.execute_sql("UPDATE pace_hint SET first_free = ? WHERE sender_id = ? AND sequence = ? AND action = ? "
                   "AND first_free > ?", (day, sender_id, sequence, action, day))
    kept = _FIRST_FREE.rows()
    zones = kept.get((sender_id, sequence, action)) if kept is not None else None
    if zones is not None:
        for zone, known in zones.items():
            if known is not None and known > day:
                zones[zone] = day


def mark_vacated(sender_id: int, sequence: str, action: str, day: str) -> None:
    """Capacity on `day` came back and waits for `fill_gaps` (the earliest such day is kept)."""
    db.execute_sql("INSERT INTO pace_vacated (sender_id, sequence, action, day) VALUES (?, ?, ?, ?) "
                   "ON CONFLICT (sender_id, sequence, action) DO UPDATE SET day = excluded.day "
                   "WHERE pace_vacated.day > excluded.day", (sender_id, sequence, action, day))


_ANY_VACATED: KeptRead[bool] = KeptRead("pace_vacated")  # asked after every pass; a simulation knows its own writes


def any_vacated() -> bool:
    return _ANY_VACATED.read(lambda: db.execute_sql("SELECT 1 FROM pace_vacated LIMIT 1").fetchone() is not None)


def take_vacated() -> tuple[int, str, str, str] | None:
    """Take one (sender id, sequence, action, day) given back, or None; run inside a write transaction
    so that one runner fills it."""
    row = db.execute_sql("SELECT id, sender_id, sequence, action, day FROM pace_vacated ORDER BY id LIMIT 1").fetchone()
    if row is None:
        return None
    db.execute_sql("DELETE FROM pace_vacated WHERE id = ?", (row[0],))
    return int(row[1]), str(row[2]), str(row[3]), str(row[4])


def reach(sender_id: int, action: str) -> float | None:
    kept = _REACH.rows()
    if kept is not None and (sender_id, action) in kept:
        return kept[(sender_id, action)]
    row = db.execute_sql("SELECT spacing FROM pace_reach WHERE sender_id = ? AND action = ?",
                         (sender_id, action)).fetchone()
    known = float(row[0]) if row else None
    if kept is not None:
        kept[(sender_id, action)] = known
    return known


def stored_reach(sender_id: int, action: str) -> float:
    """The largest spacing of the sender's points of `action` in the `pace` table itself (for points
    stored before `pace_reach` existed)."""
    row = db.execute_sql("SELECT MAX(spacing) FROM pace WHERE sender_id = ? AND action = ?",
                         (sender_id, action)).fetchone()
    return float(row[0] or 0.0)


def widen_reach(sender_id: int, action: str, spacing: float) -> None:
    db.execute_sql("INSERT INTO pace_reach (sender_id, action, spacing) VALUES (?, ?, ?) "
                   "ON CONFLICT (sender_id, action) DO UPDATE SET spacing = excluded.spacing "
                   "WHERE pace_reach.spacing < excluded.spacing", (sender_id, action, spacing))
    kept = _REACH.rows()
    if kept is not None and (sender_id, action) in kept:
        known = kept[(sender_id, action)]
        kept[(sender_id, action)] = float(spacing) if known is None or known < spacing else known
