"""From the durable ledger to the outbox: which facts become which outgoing events, and their bodies.

Events are derived, not emitted by the engine: each pass reads what the ledger holds (actions done,
provider events stored, enrollments finished, sender rows) since a subscription last read it, and
puts one outbox row per event in the same transaction that moves the subscription's reading on. So
an event is in the outbox exactly when the fact it reports is committed: a crash before that commit
loses nothing (the facts are read again), and reading a fact again adds nothing (an outbox row is
unique by subscription and event id, and the id is a hash of the fact).

Facts are read by the time they carry (performed, received, finished), which each runner takes from
its own clock just before it commits; a fact committed late is still found, because every pass reads
again the last `LATE` before the newest time it has seen. An action is the one fact whose time can be
much older than its commit: a send that timed out stays in flight through its backoff and is then
found done at the provider with the time it went out. So the reading of actions never moves past the
start of the oldest action in flight, and such an action is found whenever it is settled. A sender's pause is seen by comparing its
row with the state the subscription saw last, so its time is when a pass noticed it.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Callable, Iterable
from typing import Any

from runner.language.urls import redact_secrets
from runner.store.outgoing import (
    Fact,
    OutgoingSubscription,
    action_refs,
    add_events,
    done_actions,
    event_refs,
    finish_refs,
    finished_enrollments,
    known_event_ids,
    lead_events,
    oldest_in_flight,
    save_reading,
    sender_states,
    senders_json,
    subscription_by_id,
    subscription_rows,
)
from runner.store.transactions import writing

#: How far back each pass reads again, for facts committed after newer ones were read.
LATE = dt.timedelta(minutes=10)
#: Facts read per source and pass beyond the late window (a backlog is read over several passes).
BATCH = 500

ACTION_EVENTS: dict[str, str] = {"visit": "lead.profile_visited", "connect": "lead.invite_sent",
                                 "withdraw": "lead.invite_withdrawn", "message": "lead.message_sent",
                                 "inmail": "lead.inmail_sent"}
LEAD_EVENTS: dict[str, str] = {"accepted": "lead.accepted", "replied": "lead.replied"}
FINISH_EVENTS: dict[str, str] = {"done": "lead.sequence_finished", "failed": "lead.failed"}
SENDER_EVENTS: tuple[str, ...] = ("sender.paused", "sender.resumed")

#: Every event type a subscription may ask for, in the order the docs list them.
EVENT_TYPES: tuple[str, ...] = (*ACTION_EVENTS.values(), *LEAD_EVENTS.values(), *FINISH_EVENTS.values(),
                                *SENDER_EVENTS)


def event_id(source: str, ref: str) -> str:
    """The id a receiver dedupes on: the same for every delivery of the same fact, opaque."""
    return "evt_" + hashlib.sha256(f"{source}:{ref}".encode()).hexdigest()[:32]


def derive(subscriptions: Iterable[tuple[str, frozenset[str]]], now: dt.datetime) -> int:
    """Put every new event of each (name, event types) subscription in the outbox; returns how many."""
    subs = list(subscriptions)
    rows = subscription_rows([name for name, _ in subs], now)
    added = 0
    for name, types in subs:
        with writing():
            sub = subscription_by_id(rows[name].id)  # the reading as committed, inside the lock
            added += _derive_one(sub, types, now)
    return added


def _reading(sub: OutgoingSubscription) -> tuple[Any, ...]:
    return sub.actions_at, sub.events_at, sub.finished_at, sub.senders


def _derive_one(sub: OutgoingSubscription, types: frozenset[str], now: dt.datetime) -> int:
    before = _reading(sub)
    facts: list[tuple[str, Fact]] = []  # (event type, fact)
    actions = [a for a, t in ACTION_EVENTS.items() if t in types]
    if actions:
        read, sub.actions_at = _read(sub, "action", lambda **w: done_actions(actions, **w),
                                     lambda start: action_refs(actions, start), sub.actions_at,
                                     oldest_in_flight(actions))
        facts += [(ACTION_EVENTS[f.kind], f) for f in read]
    kinds = [k for k, t in LEAD_EVENTS.items() if t in types]
    if kinds:
        read, sub.events_at = _read(sub, "event", lambda **w: lead_events(kinds, **w),
                                    lambda start: event_refs(kinds, start), sub.events_at)
        facts += [(LEAD_EVENTS[f.kind], f) for f in read]
    if any(t in types for t in FINISH_EVENTS.values()):
        read, sub.finished_at = _read(sub, "finish", finished_enrollments, finish_refs, sub.finished_at)
        facts += [(FINISH_EVENTS[f.kind], f) for f in read if FINISH_EVENTS[f.kind] in types]
    known = known_event_ids(sub.id, [event_id(f.source, f.ref) for _, f in facts])
    found = [_lead_body(kind, f) for kind, f in facts if event_id(f.source, f.ref) not in known]
    found += _sender_changes(sub, types, now)
    if found or _reading(sub) != before:
        save_reading(sub, now)
    found.sort(key=lambda f: (f[2], _RANK[f[0].split(".")[1]] if f[0].startswith("lead.") else 9))
    return add_events([{"subscription": sub.id, "event_id": eid, "type": kind, "body": _dump(body),
                        "occurred_at": at, "next_attempt_at": now, "created_at": now}
                       for kind, eid, at, body in found])


def _read(sub: OutgoingSubscription, source: str, select: Callable[..., list[Fact]],
          refs_from: Callable[[dt.datetime], list[tuple[str, dt.datetime]]], seen: dt.datetime | None,
          floor: dt.datetime | None = None) -> tuple[list[Fact], dt.datetime | None]:
    """The facts of one source not yet read, and how far the next pass may start reading.

    The first read takes a batch from the subscription's start. Later ones list the refs from the
    late window before `seen` on (a cheap read), and take a batch of those the outbox does not hold.
    The reading never moves past `floor`: the oldest time a fact not yet committed may still carry
    (an action in flight), so that it lies inside the next pass's window when it is committed.
    """
    if seen is None:
        facts = select(start=sub.since, limit=BATCH)
        newest = max((f.at for f in facts), default=None)
    else:
        refs = refs_from(max(sub.since, seen - LATE))
        known = known_event_ids(sub.id, [event_id(source, r) for r, _ in refs])
        missing = [(r, at) for r, at in refs if event_id(source, r) not in known]
        taken = missing[:BATCH]
        facts = [f for start in range(0, len(taken), 500) for f in select(refs=[r for r, _ in taken[start:start + 500]])]
        # A backlog beyond the batch is read on the next passes, from the last fact taken.
        newest = taken[-1][1] if len(missing) > BATCH else max((at for _, at in refs), default=None)
        newest = seen if newest is None else max(seen, newest)
    if floor is not None and newest is not None:
        newest = min(newest, floor)  # back a little is harmless: what the outbox holds is skipped
    return facts, newest


#: Among facts of the same moment, the order they happen in: a lead accepts, is thanked, and ends.
_RANK = {name.split(".")[1]: rank for rank, name in enumerate(
    (*LEAD_EVENTS.values(), *ACTION_EVENTS.values(), *FINISH_EVENTS.values()))}


def _lead_body(kind: str, fact: Fact) -> tuple[str, str, dt.datetime, dict[str, Any]]:
    eid = event_id(fact.source, fact.ref)
    data: dict[str, Any] = {
        "lead": {"key": fact.lead_key, "profile_url": fact.profile_url, "fields": dict(fact.lead_fields or {})},
        "sequence": fact.sequence, "step": fact.step, "sender": fact.sender,
    }
    x = fact.extra
    if fact.source == "action":
        data["action"] = fact.kind
        if fact.kind == "connect":
            data.update(note=x["text"], template=x["template"], variant=x["variant"])
        elif fact.kind in ("message", "inmail"):
            data.update(text=x["text"], subject=x["subject"], template=x["template"], variant=x["variant"],
                        conversation=x["conversation"])
    elif fact.source == "event":
        data.update(occurred_at=_iso(x["occurred_at"]), source=x["source"], conversation_id=x["conversation_id"])
    else:
        data.update(outcome=x["outcome"], started_at=_iso(x["started_at"]), finished_at=_iso(fact.at))
        if fact.kind == "failed":
            data["error"] = redact_secrets(x["error"]) if x["error"] else None
    return kind, eid, fact.at, {"id": eid, "type": kind, "timestamp": _iso(fact.at), "data": data}


def _sender_changes(sub: OutgoingSubscription, types: frozenset[str],
                    now: dt.datetime) -> list[tuple[str, str, dt.datetime, dict[str, Any]]]:
    """A sender paused or resumed since the subscription last looked; the first look only records."""
    seen: dict[str, list[Any]] = json.loads(sub.senders or "{}")
    found = []
    for sender_id, name, status, reason in sender_states():
        before = seen.get(str(sender_id))
        pauses = before[1] if before else 0
        if before is not None and before[0] != status:
            kind = "sender.paused" if status == "paused" else "sender.resumed"
            pauses += status == "paused"
            if kind in types:
                eid = event_id("sender", f"{sender_id}:{pauses}:{status}")
                data = {"sender": name, "status": status, "reason": reason if status == "paused" else None}
                found.append((kind, eid, now, {"id": eid, "type": kind, "timestamp": _iso(now), "data": data}))
        seen[str(sender_id)] = [status, pauses]
    sub.senders = senders_json(seen)
    return found


def _iso(t: dt.datetime | None) -> str | None:
    return t.astimezone(dt.UTC).isoformat().replace("+00:00", "Z") if t is not None else None


def _dump(body: dict[str, Any]) -> str:
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
