"""Daily limits and pacing: when may a sender perform the next action of a kind?

Caps are per sender, per action, per day in the sender's time zone, at two levels: the sender's own
cap (seqrun.yaml override, else the documented LinkedIn default for the account type) shared by all
sequences, and the sequence's `limits` for its own actions. A warm-up ramp scales both for new
senders, counted from the sender's first performed action.

Pacing spreads a day's actions across the window instead of bursting at opening time: each sender
keeps, per day and action, the time of its last slot; the next slot is one nominal gap later
(open time per day / cap, or `min_gap` if larger) with deterministic jitter, moved into the lead's
window. A lead that gets a future slot *reserves* it (so that the next lead gets the slot after,
and thousands of waiting leads do not all wake at the same instant) and sleeps until then.

Reservations only pace; the promise "never exceeded" is kept by the hard check in `try_charge`,
which counts performed (charged) actions and is done in the same transaction that records the
action in the outbox. A charge is refunded when the provider says the action did not happen.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import math
from dataclasses import dataclass
from fractions import Fraction
from zoneinfo import ZoneInfo

from . import calendar as cal
from .model import Calendar, Limits, Sequence
from .store import db

MAX_DAYS_AHEAD = 400

#: (sender id, sequence, action) -> the first sender-local day that may still have room. Days before
#: it are known to be full (used + reserved at the cap), so `plan` does not scan them again: without
#: this, the n-th of many waiting leads would re-read n/cap full days. Only a hint: every day is still
#: checked against the store, and releases or refunds move the hint back.
_first_free: dict[tuple[int, str, str], dt.date] = {}
_first_free_owner: object | None = None  # the connection the hints were learnt on


def _hints() -> dict[tuple[int, str, str], dt.date]:
    """The hints for the open store. Another connection (a second database in the same process,
    or the store reopened) starts without any: hints describe one store's usage table."""
    global _first_free_owner
    connection = db.connection()
    if connection is not _first_free_owner:
        _first_free.clear()
        _first_free_owner = connection
    return _first_free


@dataclass(frozen=True, slots=True)
class SenderCaps:
    """What the engine knows about a sender for limit purposes."""

    sender_id: int
    name: str
    zone: ZoneInfo
    caps: dict[str, int]  # action -> the sender's own daily cap
    first_action_at: dt.datetime | None


@dataclass(frozen=True, slots=True)
class Slot:
    """A decision: perform now (`at is None`), or sleep until `at` holding a reservation on `day`."""

    at: dt.datetime | None
    day: str | None = None


def ramp(limits: Limits, first_action_at: dt.datetime | None, day: dt.date, zone: ZoneInfo,
         today: dt.date | None = None) -> Fraction:
    """Warm-up factor for `day`: from `start` on the sender's first day up to 1 after `days` days.

    Exact: `start` is read as the decimal the user wrote (0.2 is 1/5), so day 7 of a 14-day ramp
    from 0.2 is exactly 3/5, and 3/5 of a cap of 20 is 12, not 13 (binary floating point gives
    0.6000000000000001, which rounds up to one action too many).
    A sender that has not acted yet starts today (`today`, default `day` itself).
    """
    if limits.warmup is None:
        return Fraction(1)
    first = cal.local_date(first_action_at, zone) if first_action_at else (today or day)
    n = max(0, (day - first).days)
    if n >= limits.warmup.days:
        return Fraction(1)
    start = Fraction(repr(limits.warmup.start))
    return start + (1 - start) * Fraction(n, limits.warmup.days)


def ramped(cap: int, factor: Fraction) -> int:
    """A cap scaled by a warm-up factor, rounded up (a ramped cap of a non-zero cap is at least 1)."""
    return math.ceil(cap * factor) if cap and factor < 1 else cap


def caps_for(seq: Sequence, sender: SenderCaps, action: str, day: dt.date,
             today: dt.date | None = None) -> tuple[int, int]:
    """(sequence cap, sender cap) for one action on one sender-local day, warm-up applied.

    `today` is when a sender that has not acted yet is taken to start its warm-up.
    """
    sender_cap = sender.caps.get(action, 0)
    limit = seq.limits.per_action.get(action)
    seq_cap = min(limit.daily, sender_cap) if limit is not None else sender_cap
    factor = ramp(seq.limits, sender.first_action_at, day, sender.zone, today)
    return ramped(seq_cap, factor), ramped(sender_cap, factor)


def _usage(sender_id: int, day: str, action: str, sequence: str) -> tuple[int, int, int, dt.datetime | None]:
    """(sequence used, sequence reserved, sender total used, last slot) for one day."""
    rows = db.execute_sql(
        "SELECT sequence, used, reserved, last_at FROM usage WHERE sender_id = ? AND day = ? AND action = ?",
        (sender_id, day, action)).fetchall()
    used = reserved = total = 0
    last: str | None = None
    for seq_name, u, r, last_at in rows:
        total += u
        if seq_name == sequence:
            used, reserved = u, r
        if last_at and (last is None or last_at > last):
            last = last_at
    from .store.fields import from_db_time

    return used, reserved, total, from_db_time(last) if last else None


def _bump(sender_id: int, day: str, action: str, sequence: str, *, used: int = 0, reserved: int = 0,
          last_at: dt.datetime | None = None) -> None:
    from .store.fields import to_db_time

    stamp = to_db_time(last_at) if last_at else None
    db.execute_sql(
        "INSERT INTO usage (sender_id, sequence, action, day, used, reserved, last_at) VALUES (?, ?, ?, ?, ?, ?, ?) "
        "ON CONFLICT (sender_id, day, action, sequence) DO UPDATE SET used = used + excluded.used, "
        "reserved = MAX(0, reserved + excluded.reserved), "
        "last_at = CASE WHEN excluded.last_at IS NOT NULL AND (last_at IS NULL OR excluded.last_at > last_at) "
        "THEN excluded.last_at ELSE last_at END",
        (sender_id, sequence, action, day, used, reserved, stamp))


def unit(*parts: object) -> float:
    """A deterministic number in [0, 1) from the parts: jitter that is the same on every run."""
    return _unit(*parts)


def _unit(*parts: object) -> float:
    digest = hashlib.sha256(":".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def _gap_seconds(seq: Sequence, calendar: Calendar, action: str, cap: int) -> float:
    nominal = cal.open_seconds_per_day(calendar) / max(cap, 1)
    return max(nominal, _min_gap_seconds(seq, action))


def _min_gap_seconds(seq: Sequence, action: str) -> float:
    limit = seq.limits.per_action.get(action)
    return float(limit.min_gap.seconds) if limit is not None and limit.min_gap is not None else 0.0


def plan(seq: Sequence, sender: SenderCaps, action: str, *, calendar: Calendar, zone: ZoneInfo,
         lead_key: str, held_day: str | None, now: dt.datetime) -> Slot:
    """Decide when the lead may perform `action`: now, or at a reserved future slot.

    `held_day` is the day of a reservation the lead already holds (it has woken up at its slot).
    The caller must run this inside a write transaction.
    """
    today = cal.local_date(now, sender.zone)
    if held_day is not None:
        # The lead woke at its slot: its reservation turns into the charge that follows, so the day
        # is no emptier and the hint stays; only a slot given up re-opens its day.
        _bump(sender.sender_id, held_day, action, seq.name, reserved=-1)
        if held_day <= today.isoformat() and cal.is_open(calendar, zone, now):
            return Slot(None)  # `try_charge` makes the hard check when the action is recorded
        _reopen(sender.sender_id, seq.name, action, held_day)
    hint_key = (sender.sender_id, seq.name, action)
    hints = _hints()
    first = max(today, hints.get(hint_key, today))
    all_full_so_far = True
    for offset in range((first - today).days, MAX_DAYS_AHEAD):
        day = today + dt.timedelta(days=offset)
        seq_cap, sender_cap = caps_for(seq, sender, action, day, today)
        used, reserved, total, last = _usage(sender.sender_id, day.isoformat(), action, seq.name)
        if used + reserved >= seq_cap or total + reserved >= sender_cap:
            if all_full_so_far:
                hints[hint_key] = day + dt.timedelta(days=1)
            continue
        gap = _gap_seconds(seq, calendar, action, seq_cap)
        jitter = seq.limits.jitter.seconds if seq.limits.jitter else 0.2 * gap
        start = now if offset == 0 else _local_midnight(day, sender.zone)
        if last is not None:
            u = _unit(lead_key, action, day, used + reserved)
            # Jitter spreads the slots, but never closer than `min_gap`: that one is a promise.
            spacing = max(gap + (2 * u - 1) * jitter, _min_gap_seconds(seq, action))
            start = max(start, last + dt.timedelta(seconds=spacing))
        else:
            # First slot of the day: a random fraction of one gap into the window, never at opening time.
            start = max(start, cal.next_open(calendar, zone, start) + dt.timedelta(seconds=_unit(lead_key, day) * gap))
        if start >= _local_midnight(day + dt.timedelta(days=1), sender.zone):
            # The day's slots are spread to its end: as full as a day at its cap, for every lead.
            if all_full_so_far:
                hints[hint_key] = day + dt.timedelta(days=1)
            continue
        try:
            at = cal.next_open(calendar, zone, start)
        except ValueError:
            return Slot(now + dt.timedelta(days=MAX_DAYS_AHEAD), None)  # the calendar has no window at all
        if cal.local_date(at, sender.zone) != day:
            # No room in this lead's windows that day. When the day already has slots placed past this
            # lead's window, or is a weekend or holiday, the hint moves on: a lead in a later zone
            # might still have fitted, and leaving that slot unused is the price of not re-reading
            # every such day for every waiting lead. An empty window day stays open for others.
            if last is None and cal.is_window_day(calendar, day):
                all_full_so_far = False
            continue
        if at <= now:
            if _room(seq, sender, action, today):
                return Slot(None)
            continue
        _bump(sender.sender_id, day.isoformat(), action, seq.name, reserved=1, last_at=at)
        return Slot(at, day.isoformat())
    return Slot(now + dt.timedelta(days=MAX_DAYS_AHEAD), None)


def plan_first(seq: Sequence, sender: SenderCaps, action: str, *, calendar: Calendar, zone: ZoneInfo,
               lead_key: str, now: dt.datetime) -> Slot:
    """The fast lane for a time-sensitive action (the first message after an acceptance).

    It takes today's unused capacity ahead of the reserved queue (a lead whose reserved slot finds
    the day full plans again), paced only against the actions really performed: at least a quarter
    of the nominal gap (or `min_gap`) after the sender's last one. It never reserves.
    """
    if not cal.is_open(calendar, zone, now):
        return Slot(cal.next_open(calendar, zone, now) + dt.timedelta(seconds=60 * _unit(lead_key, action, now)))
    today = cal.local_date(now, sender.zone)
    seq_cap, _ = caps_for(seq, sender, action, today)
    if not _room(seq, sender, action, today):
        tomorrow = _local_midnight(today + dt.timedelta(days=1), sender.zone)
        return Slot(cal.next_open(calendar, zone, tomorrow) + dt.timedelta(seconds=60 * _unit(lead_key, action, today)))
    spacing = max(_min_gap_seconds(seq, action), 0.25 * _gap_seconds(seq, calendar, action, seq_cap))
    last = _last_performed(sender.sender_id, action, now - dt.timedelta(days=1))
    if last is not None and now < last + dt.timedelta(seconds=spacing):
        return Slot(last + dt.timedelta(seconds=spacing * (1 + 0.2 * _unit(lead_key, action, last))))
    return Slot(None)


def _last_performed(sender_id: int, action: str, since: dt.datetime) -> dt.datetime | None:
    from .store.fields import from_db_time, to_db_time

    row = db.execute_sql(
        "SELECT MAX(started_at) FROM action WHERE sender_id = ? AND action = ? AND status IN ('done', 'in_flight') "
        "AND planned_at >= ?", (sender_id, action, to_db_time(since))).fetchone()
    return from_db_time(row[0]) if row and row[0] else None


def _local_midnight(day: dt.date, zone: ZoneInfo) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(0), tzinfo=zone).astimezone(dt.timezone.utc)


def _room(seq: Sequence, sender: SenderCaps, action: str, day: dt.date) -> bool:
    seq_cap, sender_cap = caps_for(seq, sender, action, day)
    used, _, total, _ = _usage(sender.sender_id, day.isoformat(), action, seq.name)
    return used < seq_cap and total < sender_cap


def try_charge(seq: Sequence, sender: SenderCaps, action: str, now: dt.datetime) -> bool:
    """Count one performed action against today's caps; False (and nothing charged) when full."""
    today = cal.local_date(now, sender.zone)
    if not _room(seq, sender, action, today):
        return False
    _bump(sender.sender_id, today.isoformat(), action, seq.name, used=1, last_at=now)
    return True


def _reopen(sender_id: int, sequence: str, action: str, day: str) -> None:
    key = (sender_id, sequence, action)
    hints = _hints()
    if key in hints:
        hints[key] = min(hints[key], dt.date.fromisoformat(day))


def refund(sequence: str, sender_id: int, action: str, day: str) -> None:
    """Give back a charge for an action that did not happen."""
    _reopen(sender_id, sequence, action, day)
    db.execute_sql("UPDATE usage SET used = MAX(0, used - 1) WHERE sender_id = ? AND day = ? AND action = ? AND sequence = ?",
                   (sender_id, day, action, sequence))


def release(sequence: str, sender_id: int, action: str, day: str) -> None:
    """Give back a reservation the lead no longer needs (it exited, or the action was skipped)."""
    _reopen(sender_id, sequence, action, day)
    _bump(sender_id, day, action, sequence, reserved=-1)
