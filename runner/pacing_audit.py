"""Auditing the limit promises on the ledger: daily caps, warm-up, `min_gap` and bursts.

Written from the documented rules (docs/sequence-format.md, "Limits, pacing and warm-up"), not from
`runner.engine.limits`, so that a mistake in the planner cannot hide itself from the audit:

- a sender-local day has at most the sequence's cap of an action for that sequence, and at most the
  sender's own cap for all sequences together, both scaled by the warm-up ramp in exact arithmetic;
- two actions of one kind by one sender, whichever sequence or lane they came from, are at least
  the *spacing* of their sequences apart: `min_gap`, and never less than a quarter of the nominal
  gap (open time per day / daily cap). Overdue work after downtime is paced again, so a restart
  that sends a burst breaks this too.

Only actions that happened (`done`) count, at `started_at`, as in `runner.audit`.
"""
from __future__ import annotations

import datetime as dt
import itertools
import math
from collections import Counter, defaultdict
from fractions import Fraction

from runner.engine.runtime import Runtime
from runner.language import calendar as cal
from runner.language.model import Sequence
from runner.store.auditlog import first_action_times

#: The spacing floor as a share of the nominal gap: at most four actions of a kind in one gap.
FLOOR_SHARE = Fraction(1, 4)


def violations(sequences: dict[str, Sequence], rt: Runtime, rows: list[tuple[str, str, dt.datetime, int]]) -> list[str]:
    """Broken limit promises among `rows`: (sequence, action, started_at, sender id) of done actions."""
    known = {s.id for s in rt.senders.values()}
    rows = [r for r in rows if r[0] in sequences and r[3] in known]
    return _caps(sequences, rt, rows) + _spacing(sequences, rt, rows)


def _warmup_factor(seq: Sequence, first: dt.date | None, day: dt.date) -> Fraction:
    warmup = seq.limits.warmup
    if warmup is None:
        return Fraction(1)
    n = max(0, (day - first).days) if first is not None else 0
    if n >= warmup.days:
        return Fraction(1)
    start = Fraction(str(warmup.start))
    return start + (1 - start) * Fraction(n, warmup.days)


def _scaled(cap: int, factor: Fraction) -> int:
    return math.ceil(cap * factor) if cap and factor < 1 else cap


def _seq_cap(seq: Sequence, sender_cap: int, action: str) -> int:
    limit = seq.limits.per_action.get(action)
    return min(limit.daily, sender_cap) if limit is not None else sender_cap


def _caps(sequences: dict[str, Sequence], rt: Runtime, rows: list[tuple[str, str, dt.datetime, int]]) -> list[str]:
    senders = {s.id: s for s in rt.senders.values()}
    first_action = first_action_times()
    per_sequence: Counter[tuple[int, str, str, dt.date]] = Counter()
    per_sender: Counter[tuple[int, str, dt.date]] = Counter()
    seqs_of: dict[tuple[int, str, dt.date], set[str]] = defaultdict(set)
    for seq_name, action, at, sender_id in rows:
        sender = senders[sender_id]
        day = cal.local_date(at, sender.caps.zone)
        per_sequence[(sender_id, seq_name, action, day)] += 1
        per_sender[(sender_id, action, day)] += 1
        seqs_of[(sender_id, action, day)].add(seq_name)
    found = []

    def first_day(sender_id: int) -> dt.date | None:
        first = first_action.get(sender_id)
        return cal.local_date(first, senders[sender_id].caps.zone) if first else None

    for (sender_id, seq_name, action, day), n in sorted(per_sequence.items()):
        seq, sender = sequences[seq_name], senders[sender_id]
        cap = _scaled(_seq_cap(seq, sender.caps.caps.get(action, 0), action),
                      _warmup_factor(seq, first_day(sender_id), day))
        if n > cap:
            found.append(f"sender {sender.name}: {n} {action} actions in sequence {seq_name} on {day}; "
                         f"the limit is {cap}")
    for (sender_id, action, day), n in sorted(per_sender.items()):
        sender = senders[sender_id]
        # The sender's own cap ramps with the warm-up of the sequence that acts (as the hard check
        # does), so a day shared by several sequences is held to the most generous of them.
        factor = max(_warmup_factor(sequences[name], first_day(sender_id), day) for name in seqs_of[(sender_id, action, day)])
        cap = _scaled(sender.caps.caps.get(action, 0), factor)
        if n > cap:
            found.append(f"sender {sender.name}: {n} {action} actions on {day}; the sender's limit is {cap}")
    return found


def spacing_seconds(seq: Sequence, action: str, sender_cap: int) -> float:
    """The least time between two of `action` by one sender for `seq`: `min_gap`, and at least a
    quarter of the nominal gap (open time per day / daily cap before warm-up)."""
    cap = _seq_cap(seq, sender_cap, action)
    nominal = cal.open_seconds_per_day(seq.calendar) / max(cap, 1)
    limit = seq.limits.per_action.get(action)
    min_gap = limit.min_gap.seconds if limit is not None and limit.min_gap is not None else 0
    return max(float(min_gap), float(nominal * FLOOR_SHARE))


def _spacing(sequences: dict[str, Sequence], rt: Runtime, rows: list[tuple[str, str, dt.datetime, int]]) -> list[str]:
    senders = {s.id: s for s in rt.senders.values()}
    by_kind: dict[tuple[int, str], list[tuple[dt.datetime, str]]] = defaultdict(list)
    for seq_name, action, at, sender_id in rows:
        by_kind[(sender_id, action)].append((at, seq_name))
    found = []
    for (sender_id, action), acts in sorted(by_kind.items()):
        sender = senders[sender_id]
        acts.sort()
        for (before, seq_a), (at, seq_b) in itertools.pairwise(acts):
            need = max(spacing_seconds(sequences[name], action, sender.caps.caps.get(action, 0)) for name in (seq_a, seq_b))
            gap = (at - before).total_seconds()
            if gap < need:
                found.append(f"sender {sender.name}: {action} at {at.isoformat()} came {_span(gap)} after the one at "
                             f"{before.isoformat()}; they must be at least {_span(need)} apart")
    return found


def _span(seconds: float) -> str:
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{hours} h"] if hours else []
    if minutes or hours:
        parts.append(f"{minutes} min")
    parts.append(f"{secs} s")
    return " ".join(parts)

