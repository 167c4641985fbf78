"""Daily limits and pacing: when may a sender perform the next action of a kind?

Caps are per sender, per action, per day in the sender's time zone, at two levels: the sender's own
cap (seqrun.yaml override, else the documented LinkedIn default for the account type) shared by all
sequences, and the sequence's `limits` for its own actions. A warm-up ramp scales both for new
senders, counted from the sender's first performed action.

Pacing spreads a day's actions over each lead's own window. The open time of a lead's day (in its
zone) is cut into as many equal shares as the day's cap (fewer when `min_gap` needs it); the middle
of each share, moved by deterministic jitter, is a *point*. A lead that has to wait books a free
point of its window on the first sender-day with room, picked at random among the free ones (so
the day's actions are spread evenly in every zone, not bunched at the opening), and sleeps until
then (the arithmetic of points is `runner.engine.pacing_grid`). A point is free when it keeps the *spacing* (`min_gap`, and at least a quarter of the nominal
gap) from every point the sender has booked or used for that action, whichever sequence, lane or
zone it came from (the `pace` table). Capacity a lead gives back (it exited, was skipped, or its
action did not happen) is not left unused: `fill_gaps` moves the earliest later bookings into it.

A lead that wakes at its point acts; one that wakes more than `LATE` after it (the process was down,
or busy) is placed again over what is left of the window instead of acting at once, so a restart
never sends a burst. The first message after an acceptance takes the earliest moment that keeps
the spacing, ahead of the queue (`plan_first`).

Reservations only pace; the promise "never exceeded" is kept by the hard check in `try_charge`,
which counts performed (charged) actions, checks the spacing from the last performed one, and is
done in the same transaction that records the action in the outbox. A charge is refunded when the
provider says the action did not happen.
"""
from __future__ import annotations

import datetime as dt
import functools
import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Any
from zoneinfo import ZoneInfo

from runner.engine import pacing_grid as grids
from runner.language import calendar as cal
from runner.language.model import Calendar, Limits, Sequence
from runner.store import charges, enrollments, pace, usage
from runner.store import pace_hints as hints
from runner.store.transactions import writing

MAX_DAYS_AHEAD = 400
#: A lead that wakes later than this after its booked point (downtime, a long pass) does not act at
#: once: it is placed again over what remains of the window.
LATE = dt.timedelta(minutes=15)
#: The spacing floor, as a share of the nominal gap (open time per day / cap): at most four actions
#: of a kind by one sender in any stretch of one nominal gap.
FLOOR_SHARE = Fraction(1, 4)

# The pacing hints live in the store (`store.pace_hints`), so that every runner sharing the
# database learns the same and a release by one moves the hints of all:
# - per (sender, sequence, action, lead zone), the first sender-local day that may still have room
#   for a lead of that zone. Days before it are known to be full (used + reserved at the cap, or no
#   free point in the zone's windows), so `plan` does not scan them again: without this, the n-th
#   of many waiting leads would re-read n/cap full days. Only a hint: every day is still checked
#   against the store, and releases, refunds and moved bookings move the hint back;
# - per (sender, action), the largest spacing of any point stored (`_reach_of`);
# - per (sender, sequence, action), the earliest day given back that `fill_gaps` has not filled.


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
    """A decision: perform now (`at is None`), or sleep until `at`, holding the booking `hold`
    (kept in the lead's facts as "slot": action, sender-local day, booked point) when not None."""

    at: dt.datetime | None
    hold: dict[str, str] | None = None


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
    return _ramp_factor(limits.warmup.start, limits.warmup.days, n)


@functools.lru_cache(maxsize=4096)
def _ramp_factor(start: float, days: int, n: int) -> Fraction:
    begin = Fraction(repr(start))
    return begin + (1 - begin) * Fraction(n, days)


def ramped(cap: int, factor: Fraction) -> int:
    """A cap scaled by a warm-up factor, rounded up (a ramped cap of a non-zero cap is at least 1)."""
    return math.ceil(cap * factor) if cap and factor.numerator < factor.denominator else cap


def caps_for(seq: Sequence, sender: SenderCaps, action: str, day: dt.date,
             today: dt.date | None = None) -> tuple[int, int]:
    """(sequence cap, sender cap) for one action on one sender-local day, warm-up applied.

    `today` is when a sender that has not acted yet is taken to start its warm-up.
    """
    sender_cap = sender.caps.get(action, 0)
    limit = seq.limits.per_action.get(action)
    seq_cap = min(limit.daily, sender_cap) if limit is not None else sender_cap
    if seq.limits.warmup is None:
        return seq_cap, sender_cap  # the common case, without fractions
    key = (id(seq.limits), seq_cap, sender_cap, sender.first_action_at, sender.zone, day,
           today if sender.first_action_at is None else None)
    kept = _RAMPED.get(key)
    if kept is not None and kept[0] is seq.limits:
        return kept[1]
    factor = ramp(seq.limits, sender.first_action_at, day, sender.zone, today)
    caps = ramped(seq_cap, factor), ramped(sender_cap, factor)
    _keep(_RAMPED, key, (seq.limits, caps))
    return caps


# Pure results kept by the identity of the (frozen) objects they come from: a kept entry holds its
# object, so that its id cannot be reused while the entry stands. Bounded: cleared when full.
_RAMPED: dict[tuple[Any, ...], tuple[Limits, tuple[int, int]]] = {}
_SPACING: dict[tuple[Any, ...], tuple[Sequence, float]] = {}
_OPEN_SECONDS: dict[int, tuple[Calendar, int]] = {}
_JITTER: dict[tuple[Any, ...], tuple[Sequence, Calendar, float]] = {}
_KEPT_MAX = 4096


def _keep(kept: dict[Any, Any], key: Any, value: Any) -> None:
    if len(kept) >= _KEPT_MAX:
        kept.clear()
    kept[key] = value


def _open_seconds(calendar: Calendar) -> int:
    kept = _OPEN_SECONDS.get(id(calendar))
    if kept is not None and kept[0] is calendar:
        return kept[1]
    seconds = cal.open_seconds_per_day(calendar)
    _keep(_OPEN_SECONDS, id(calendar), (calendar, seconds))
    return seconds


unit = _unit = grids.unit  # deterministic jitter, the same on every run
_local_midnight = grids.local_midnight


def _gap_seconds(seq: Sequence, calendar: Calendar, action: str, cap: int) -> float:
    nominal = _open_seconds(calendar) / max(cap, 1)
    return max(nominal, _min_gap_seconds(seq, action))


def _min_gap_seconds(seq: Sequence, action: str) -> float:
    limit = seq.limits.per_action.get(action)
    return float(limit.min_gap.seconds) if limit is not None and limit.min_gap is not None else 0.0


def spacing_seconds(seq: Sequence, sender: SenderCaps, action: str) -> float:
    """The least time between this sequence's `action` and any other of the sender's: `min_gap`,
    and never less than a quarter of the nominal gap (open time per day / cap before warm-up)."""
    sender_cap = sender.caps.get(action, 0)
    key = (id(seq), action, sender_cap)
    kept = _SPACING.get(key)
    if kept is not None and kept[0] is seq:
        return kept[1]
    limit = seq.limits.per_action.get(action)
    cap = min(limit.daily, sender_cap) if limit is not None else sender_cap
    nominal = _open_seconds(seq.calendar) / max(cap, 1)
    spacing = max(_min_gap_seconds(seq, action), float(nominal * FLOOR_SHARE))
    _keep(_SPACING, key, (seq, spacing))
    return spacing


# --- points ---------------------------------------------------------------------------------------

def _segments(seq: Sequence, sender: SenderCaps, action: str, calendar: Calendar, zone: ZoneInfo, day: dt.date,
              cap: int, spacing: float, after: dt.datetime) -> tuple[tuple[grids.Grid, int, int], ...]:
    """The lead's points on sender-local `day` later than `after` (see `pacing_grid.slices`)."""
    lo = max(_local_midnight(day, sender.zone), after)
    hi = _local_midnight(day + dt.timedelta(days=1), sender.zone)
    return grids.slices(calendar, zone, lo, hi, cap, _jitter(seq, calendar, action, cap), spacing)


def _jitter(seq: Sequence, calendar: Calendar, action: str, cap: int) -> float:
    key = (id(seq), id(calendar), action, cap)
    kept = _JITTER.get(key)
    if kept is not None and kept[0] is seq and kept[1] is calendar:
        return kept[2]
    jitter = float(seq.limits.jitter.seconds if seq.limits.jitter else 0.2 * _gap_seconds(seq, calendar, action, cap))
    _keep(_JITTER, key, (seq, calendar, jitter))
    return jitter


def _reach_of(sender_id: int, action: str, spacing: float) -> dt.timedelta:
    """How far around a moment `_conflict` has to look: the largest spacing of any point stored for
    the sender's `action` (read from the store, written by whichever runner stores a point with a
    larger spacing, so that a runner of another sequence looks far enough), and `spacing` itself.
    Read once per search, inside the write transaction that stores the point."""
    known = hints.reach(sender_id, action)
    if known is None or known < spacing:
        # (without a row yet: points may have been stored before the hint existed)
        known = max(hints.stored_reach(sender_id, action) if known is None else known, spacing)
        hints.widen_reach(sender_id, action, known)
    return dt.timedelta(seconds=known)


def _conflict(sender_id: int, action: str, t: dt.datetime, spacing: float, reach: dt.timedelta, *,
              used_only: bool = False) -> dt.datetime | None:
    """The moment `t` would have to move past to keep its distance from the sender's booked and used
    points of `action` (only the performed ones with `used_only`); None when `t` is free. `reach`
    comes from `_reach_of`."""
    blocked: dt.datetime | None = None
    for at, other in pace.points_between(sender_id, action, t - reach, t + reach, used_only=used_only):
        need = dt.timedelta(seconds=max(spacing, other))
        if abs(at - t) < need:
            blocked = at + need if blocked is None else max(blocked, at + need)
    return blocked


def _book(sender: SenderCaps, seq: Sequence, action: str, day: dt.date, at: dt.datetime, spacing: float,
          enrollment_id: int | None) -> Slot:
    usage.add_usage(sender.sender_id, day.isoformat(), action, seq.name, reserved=1)
    pace.book_point(sender.sender_id, action, seq.name, day.isoformat(), at, spacing, enrollment_id)
    return Slot(at, {"action": action, "day": day.isoformat(), "at": at.isoformat()})


def _unbook(sender_id: int, sequence: str, action: str, day: str, at: str | None) -> None:
    """Delete a booking's point (bookings made before points existed have none) and its count."""
    if at is not None:
        pace.unbook_point(sender_id, action, sequence, dt.datetime.fromisoformat(at))
    usage.add_usage(sender_id, day, action, sequence, reserved=-1)


# --- planning -------------------------------------------------------------------------------------

def plan(seq: Sequence, sender: SenderCaps, action: str, *, calendar: Calendar, zone: ZoneInfo,
         lead_key: str, held: dict[str, str] | None, now: dt.datetime, enrollment_id: int | None = None) -> Slot:
    """Decide when the lead may perform `action`: now, or at a booked future point.

    `held` is the booking the lead already holds (it has woken up at its point). The caller must
    run this inside a write transaction.
    """
    spacing = spacing_seconds(seq, sender, action)
    if held is not None:
        due = dt.datetime.fromisoformat(held["at"]) if held.get("at") else None
        today = cal.local_date(now, sender.zone).isoformat()
        on_time = held["day"] <= today and (due is None or now - due <= LATE)
        if on_time and cal.is_open(calendar, zone, now):
            wait = _too_close(sender.sender_id, action, now, spacing)
            if wait is None:
                # The booking turns into the charge that follows (`try_charge` makes the hard check).
                _unbook(sender.sender_id, seq.name, action, held["day"], held.get("at"))
                return Slot(None)
            if (due is None or wait - due <= LATE) and cal.is_open(calendar, zone, wait):
                return Slot(wait, held)  # another action went out just before: keep the distance
        # Late (downtime), or the window closed meanwhile: placed again over what remains, at the
        # day's pace (no catch-up of the missed points: `fill_gaps` is for capacity given back).
        _rehint((sender.sender_id, seq.name, action), held["day"])
        _unbook(sender.sender_id, seq.name, action, held["day"], held.get("at"))
    return _place(seq, sender, action, calendar=calendar, zone=zone, lead_key=lead_key, now=now,
                  spacing=spacing, enrollment_id=enrollment_id)


def _place(seq: Sequence, sender: SenderCaps, action: str, *, calendar: Calendar, zone: ZoneInfo, lead_key: str,
           now: dt.datetime, spacing: float, enrollment_id: int | None) -> Slot:
    today = cal.local_date(now, sender.zone)
    # Per zone: a day with room but no free point in this zone's windows (a weekend, a day whose
    # points here are all taken) is as full as a day at its cap for every lead of the zone.
    hint_key = (sender.sender_id, seq.name, action, zone.key)
    hinted = hints.first_free_day(*hint_key)
    first = day = max(today, dt.date.fromisoformat(hinted)) if hinted else today
    slot = Slot(now + dt.timedelta(days=MAX_DAYS_AHEAD))  # unless a day has room: no window at all
    while day < today + dt.timedelta(days=MAX_DAYS_AHEAD):
        seq_cap, sender_cap = caps_for(seq, sender, action, day, today)
        used, reserved, total = usage.day_usage(sender.sender_id, day.isoformat(), action, seq.name)
        if used + reserved < seq_cap and total + reserved < sender_cap:
            at = _free_point(seq, sender, action, calendar, zone, day, seq_cap, spacing, now, lead_key)
            if at is not None:
                slot = _book(sender, seq, action, day, at, spacing, enrollment_id)
                break
        day += dt.timedelta(days=1)
    if day > first:  # the days scanned before `day` are full for leads of this zone
        hints.set_first_free_day(*hint_key, day.isoformat())
    return slot


def _free_point(seq: Sequence, sender: SenderCaps, action: str, calendar: Calendar, zone: ZoneInfo, day: dt.date,
                cap: int, spacing: float, now: dt.datetime, lead_key: str) -> dt.datetime | None:
    """A free point of the lead's window on sender-local `day`, picked at random among the free
    ones (deterministically per lead: the first free one from a random start), or None."""
    segments = _segments(seq, sender, action, calendar, zone, day, cap, spacing, now)
    total = sum(end - first for _, first, end in segments)
    if not total:
        return None
    start = int(_unit(lead_key, action, day) * total)
    reach = _reach_of(sender.sender_id, action, spacing)
    for k in range(total):
        index = (start + k) % total
        for grid, first, end in segments:
            if index < end - first:
                at = grid[first + index]
                break
            index -= end - first
        if _conflict(sender.sender_id, action, at, spacing, reach) is None:
            return at
    return None


def _free_moment(sender: SenderCaps, action: str, calendar: Calendar, zone: ZoneInfo, day: dt.date, spacing: float,
                 now: dt.datetime, lead_key: str, tries: int = 16) -> dt.datetime | None:
    """A random moment of the lead's windows on sender-local `day` after `now` that keeps the
    spacing, or None after a few tries (for capacity given back after its points have passed)."""
    lo = max(_local_midnight(day, sender.zone), now + dt.timedelta(seconds=1))
    spans = grids.open_spans(calendar, zone, lo, _local_midnight(day + dt.timedelta(days=1), sender.zone))
    if sum((b - a).total_seconds() for a, b in spans) < 1:
        return None
    reach = _reach_of(sender.sender_id, action, spacing)
    for k in range(tries):
        at = grids.moment_at(spans, _unit(lead_key, action, day, "moment", k))
        if _conflict(sender.sender_id, action, at, spacing, reach) is None:
            return at
    return None


def _too_close(sender_id: int, action: str, now: dt.datetime, spacing: float) -> dt.datetime | None:
    """When an action performed lately is too close to `now`: the first moment that keeps the
    distance from it; None when `now` is fine."""
    return _conflict(sender_id, action, now, spacing, _reach_of(sender_id, action, spacing), used_only=True)


def plan_first(seq: Sequence, sender: SenderCaps, action: str, *, calendar: Calendar, zone: ZoneInfo,
               lead_key: str, now: dt.datetime, enrollment_id: int | None = None) -> Slot:
    """The fast lane for a time-sensitive action (the first message after an acceptance).

    In the lead's window it takes the earliest moment that keeps the spacing from every booked and
    used point, ahead of the queue (it books that moment even when queued bookings fill the day; a
    queued lead whose point finds the day full moves to the next day). Outside the window it wakes
    at a random moment of the next open day, so such messages spread over the day instead of all
    going out at the opening.
    """
    spacing = spacing_seconds(seq, sender, action)
    if not cal.is_open(calendar, zone, now):
        return Slot(_random_open_moment(calendar, zone, now, _unit(lead_key, action, now)))
    today = cal.local_date(now, sender.zone)
    if not _room(seq, sender, action, today):
        tomorrow = _local_midnight(today + dt.timedelta(days=1), sender.zone)
        return Slot(_random_open_moment(calendar, zone, tomorrow, _unit(lead_key, action, today)))
    end = cal.window_end(calendar, zone, now)
    at = now
    reach = _reach_of(sender.sender_id, action, spacing)
    while at < end and (blocked := _conflict(sender.sender_id, action, at, spacing, reach)) is not None:
        at = blocked
    if at == now:
        return Slot(None)
    if at >= end or cal.local_date(at, sender.zone) != today:
        # No moment left in this window: a random moment of the lead's next open time.
        after = end if at >= end else _local_midnight(today + dt.timedelta(days=1), sender.zone)
        return Slot(_random_open_moment(calendar, zone, after, _unit(lead_key, action, today)))
    return _book(sender, seq, action, today, at, spacing, enrollment_id)


def _random_open_moment(calendar: Calendar, zone: ZoneInfo, after: dt.datetime, u: float) -> dt.datetime:
    return grids.random_open_moment(calendar, zone, after, u, dt.timedelta(days=MAX_DAYS_AHEAD))


def _room(seq: Sequence, sender: SenderCaps, action: str, day: dt.date) -> bool:
    seq_cap, sender_cap = caps_for(seq, sender, action, day)
    used, _, total = usage.day_usage(sender.sender_id, day.isoformat(), action, seq.name)
    return used < seq_cap and total < sender_cap


def try_charge(seq: Sequence, sender: SenderCaps, action: str, now: dt.datetime) -> bool:
    """Count one performed action against today's caps and record its point; False (and nothing
    charged) when the day is full or the sender's last such action is closer than the spacing.
    Runs inside the transaction that records the action (`actions._record`)."""
    today = cal.local_date(now, sender.zone)
    seq_cap, sender_cap = caps_for(seq, sender, action, today)
    if seq_cap <= 0 or sender_cap <= 0:
        return False
    charges.lock_sender(sender.sender_id)  # the spacing read and the charge below, as one
    spacing = spacing_seconds(seq, sender, action)
    if _too_close(sender.sender_id, action, now, spacing) is not None:
        return False
    if not charges.charge_usage(sender.sender_id, today.isoformat(), action, seq.name, sequence_cap=seq_cap,
                                sender_cap=sender_cap, at=now):
        return False
    pace.record_used(sender.sender_id, action, seq.name, today.isoformat(), now, spacing)
    return True


# --- capacity given back --------------------------------------------------------------------------

def _reopen(sender_id: int, sequence: str, action: str, day: str) -> None:
    """Capacity on `day` came back: new leads may book it, and `fill_gaps` moves later bookings in."""
    _rehint((sender_id, sequence, action), day)
    hints.mark_vacated(sender_id, sequence, action, day)


def _rehint(key: tuple[int, str, str], day: str) -> None:
    """A point or a count on `day` was given back: no zone may skip that day any more."""
    hints.reopen_day(*key, day)


def refund(sequence: str, sender_id: int, action: str, day: str) -> None:
    """Give back a charge for an action that did not happen."""
    _reopen(sender_id, sequence, action, day)
    usage.refund_use(sender_id, day, action, sequence)


def release(sequence: str, sender_id: int, action: str, day: str, at: str | None = None) -> None:
    """Give back a booking the lead no longer needs (it exited, or the action was skipped); `at` is
    the booked point (the "at" of the lead's slot)."""
    _reopen(sender_id, sequence, action, day)
    _unbook(sender_id, sequence, action, day, at)


def fill_gaps(rt: Any, now: dt.datetime) -> int:
    """Move bookings into days that got capacity back (a lead exited, skipped or was refunded),
    earliest bookings first, each to a free point of its lead's window; returns how many moved.

    Without this, a day's freed capacity stays unused while the leads that could use it sleep
    until their later points. Leads being worked on (leased) are left alone.
    """
    moved = 0
    while hints.any_vacated():  # (read outside a transaction: most passes give nothing back)
        with writing(immediate=True):  # (a savepoint inside a dry run's transaction)
            taken = hints.take_vacated()  # by one runner: the others find it gone
            if taken is None:
                break
            sender_id, sequence, action, day = taken
            seq, sender = rt.sequences.get(sequence), rt.senders.get(sender_id)
            if seq is None or sender is None:
                continue  # a sequence or sender this runner does not have: nothing to move into it
            today = cal.local_date(now, sender.caps.zone)
            target = max(today, dt.date.fromisoformat(day))
            moved += _pull_forward(seq, sender.caps, sender.timezone, action, target, now)
    return moved


def _pull_forward(seq: Sequence, sender: SenderCaps, sender_tz: str, action: str, day: dt.date, now: dt.datetime) -> int:
    seq_cap, sender_cap = caps_for(seq, sender, action, day)
    used, reserved, total = usage.day_usage(sender.sender_id, day.isoformat(), action, seq.name)
    room = min(seq_cap - used - reserved, sender_cap - total - reserved)
    if room <= 0:
        return 0
    spacing = spacing_seconds(seq, sender, action)
    rows = pace.bookings_after(sender.sender_id, action, seq.name, day.isoformat(), room * 4)
    moved = 0
    for pace_id, old_day, enrollment_id, facts, lead_key, lead_tz, fields, version in rows:
        if moved >= room:
            break
        slot = facts.get("slot")
        if not slot or slot.get("action") != action or slot.get("day") != old_day:
            continue
        zone = cal.resolve_zone(seq.calendar, lead_tz=lead_tz or fields.get("timezone"), sender_tz=sender_tz)
        at = _free_point(seq, sender, action, seq.calendar, zone, day, seq_cap, spacing, now, lead_key)
        if at is None:  # the freed points have passed: any free moment of what is left will do
            at = _free_moment(sender, action, seq.calendar, zone, day, spacing, now, lead_key)
        if at is None:
            continue
        facts["slot"] = {"action": action, "day": day.isoformat(), "at": at.isoformat()}
        # Guarded by the version read above: an event applied to the lead meanwhile (runner.engine.inbox) stands.
        if not enrollments.move_slot(enrollment_id, facts, at, version):
            continue
        pace.move_point(pace_id, day.isoformat(), at)
        usage.add_usage(sender.sender_id, old_day, action, seq.name, reserved=-1)
        usage.add_usage(sender.sender_id, day.isoformat(), action, seq.name, reserved=1)
        _rehint((sender.sender_id, seq.name, action), old_day)  # for new leads; no cascade of moves
        moved += 1
    return moved
