"""Outgoing events in the store: subscriptions with how far they have read, the outbox, and the facts.

- `OutgoingSubscription`: one per `outgoing:` entry of seqrun.yaml, by name (migration 10). `since` is
  when it was first seen (nothing older is reported); `actions_at`, `events_at`, `finished_at` the
  latest fact time read from each source; `senders` the sender states last seen.
- `OutgoingEvent`: the outbox. One row per event and subscription, unique by `event_id`, holding the
  body exactly as it is signed and sent; `pending` until a 2xx (`delivered`) or the last attempt
  (`failed`).

The facts are read from the durable ledger (actions done, events stored, enrollments finished,
sender rows); runner.outgoing_derive turns them into bodies. No URL and no secret is ever stored.
"""
from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import peewee

from runner.store.fields import UTCDateTimeField
from runner.store.models import Action, BaseModel, Enrollment, Event, Lead, Sender, db

STATES = ("pending", "delivered", "failed")


class OutgoingSubscription(BaseModel):
    name = peewee.TextField(unique=True)
    since = UTCDateTimeField()
    actions_at = UTCDateTimeField(null=True)
    events_at = UTCDateTimeField(null=True)
    finished_at = UTCDateTimeField(null=True)
    senders = peewee.TextField(default="{}")  # JSON: sender id -> [status, pauses seen]
    created_at = UTCDateTimeField()
    updated_at = UTCDateTimeField()


class OutgoingEvent(BaseModel):
    subscription = peewee.ForeignKeyField(OutgoingSubscription, on_delete="CASCADE")
    event_id = peewee.TextField()
    type = peewee.TextField()
    body = peewee.TextField()
    occurred_at = UTCDateTimeField()
    state = peewee.TextField(default="pending")
    attempts = peewee.IntegerField(default=0)
    next_attempt_at = UTCDateTimeField(null=True)
    last_attempt_at = UTCDateTimeField(null=True)
    last_error = peewee.TextField(null=True)
    created_at = UTCDateTimeField()
    delivered_at = UTCDateTimeField(null=True)


@dataclass(frozen=True, slots=True)
class Fact:
    """One row of the ledger worth an event: what happened, to whom, when, with its columns."""

    source: str  # action | event | finish
    ref: str  # unique within the source: the action key, the event id, enrollment id + finish time
    kind: str  # the action, the event kind, the enrollment's final state
    at: dt.datetime
    lead_key: str
    profile_url: str
    lead_fields: dict[str, Any]
    sequence: str | None
    step: str | None
    sender: str | None
    extra: dict[str, Any]


# --- subscriptions --------------------------------------------------------------------------------


def subscription_rows(names: Iterable[str], now: dt.datetime) -> dict[str, OutgoingSubscription]:
    """The row of each named subscription, created (from `now` on) the first time it is seen."""
    wanted = list(names)
    rows = {s.name: s for s in OutgoingSubscription.select().where(OutgoingSubscription.name.in_(wanted))}
    for name in wanted:
        if name not in rows:
            with db.atomic():  # another process may create it at the same moment: either row will do
                OutgoingSubscription.insert(name=name, since=now, created_at=now,
                                            updated_at=now).on_conflict_ignore().execute()
            rows[name] = OutgoingSubscription.get(OutgoingSubscription.name == name)
    return rows


def subscription_by_id(subscription_id: int) -> OutgoingSubscription:
    return OutgoingSubscription.get_by_id(subscription_id)


def subscription_names() -> list[str]:
    """Every subscription that has had events, by name."""
    return [n for (n,) in OutgoingSubscription.select(OutgoingSubscription.name).order_by(OutgoingSubscription.name).tuples()]


def save_reading(sub: OutgoingSubscription, now: dt.datetime) -> None:
    """How far a subscription has read, written in the transaction that added its events."""
    OutgoingSubscription.update(actions_at=sub.actions_at, events_at=sub.events_at, finished_at=sub.finished_at,
                                senders=sub.senders, updated_at=now).where(OutgoingSubscription.id == sub.id).execute()


def add_events(rows: Sequence[dict[str, Any]]) -> int:
    """Put events in the outbox; one already there (same subscription and event id) is left as it is."""
    added = 0
    for start in range(0, len(rows), 200):
        chunk = rows[start:start + 200]
        added += OutgoingEvent.insert_many(chunk).on_conflict_ignore().as_rowcount().execute()
    return added


def known_event_ids(subscription_id: int, event_ids: Sequence[str]) -> set[str]:
    """Which of `event_ids` the subscription's outbox already holds."""
    known: set[str] = set()
    for start in range(0, len(event_ids), 500):
        query = OutgoingEvent.select(OutgoingEvent.event_id).where(
            OutgoingEvent.subscription == subscription_id, OutgoingEvent.event_id.in_(list(event_ids[start:start + 500])))
        known.update(e for (e,) in query.tuples())
    return known


# --- the facts ------------------------------------------------------------------------------------


def _pick(query: peewee.ModelSelect, column: peewee.Field, *, start: dt.datetime | None = None,
          end: dt.datetime | None = None, after: dt.datetime | None = None, limit: int | None = None,
          ref: peewee.Field | None = None, refs: Sequence[Any] | None = None) -> peewee.ModelSelect:
    """Rows by `column`, oldest first: `start <= column <= end`, or `column > after`, or the rows whose
    `ref` is in `refs`; `limit` bounds a backlog."""
    if refs is not None:
        query = query.where(ref.in_(list(refs)))  # type: ignore[union-attr]
    if start is not None:
        query = query.where(column >= start)
    if end is not None:
        query = query.where(column <= end)
    if after is not None:
        query = query.where(column > after)
    query = query.order_by(column, query.model.id)
    return query.limit(limit) if limit is not None else query


def _lead_columns() -> tuple[peewee.Node, ...]:
    return (Lead.key.alias("lead_key"), Lead.profile_url, Lead.fields.alias("lead_fields"), Sender.name.alias("sender"))


def _rows(query: peewee.ModelSelect) -> list[dict[str, Any]]:
    rows = list(query.dicts())
    for row in rows:
        row["lead_fields"] = row["lead_fields"] or {}  # converted by the field, as aliased columns are
    return rows


def _done(kinds: Sequence[str]) -> peewee.Expression:
    return (Action.status == "done") & Action.action.in_(list(kinds))


def action_refs(kinds: Sequence[str], start: dt.datetime) -> list[tuple[str, dt.datetime]]:
    """(key, time) of the actions `done_actions` would read from `start` on, oldest first (a cheap read)."""
    query = _pick(Action.select(Action.key, Action.performed_at).where(_done(kinds)), Action.performed_at, start=start)
    return list(query.tuples())


def oldest_in_flight(kinds: Sequence[str]) -> dt.datetime | None:
    """When the oldest action of `kinds` still in flight was started (planned, if it has no start):
    it may yet be marked done with a time as old as that."""
    oldest = (Action.select(peewee.fn.MIN(peewee.fn.COALESCE(Action.started_at, Action.planned_at)))
              .where(Action.status == "in_flight", Action.action.in_(list(kinds))).scalar())
    return UTCDateTimeField().python_value(oldest) if isinstance(oldest, str) else oldest


def done_actions(kinds: Sequence[str], **window: Any) -> list[Fact]:
    """Actions of `kinds` performed (status done), by `performed_at` (see `_pick` for `window`)."""
    query = (Action.select(Action.key, Action.action, Action.performed_at, Action.sequence, Action.step_id,
                           Action.variant, Action.template, Action.content, Action.subject, Action.conversation,
                           *_lead_columns())
             .join(Lead, on=(Action.lead == Lead.id))
             .join_from(Action, Sender, peewee.JOIN.LEFT_OUTER, on=(Action.sender == Sender.id))
             .where(_done(kinds)))
    query = _pick(query, Action.performed_at, ref=Action.key, **window)
    return [Fact("action", r["key"], r["action"], r["performed_at"], r["lead_key"], r["profile_url"], r["lead_fields"],
                 r["sequence"], r["step_id"], r["sender"],
                 {"variant": r["variant"], "template": r["template"], "text": r["content"], "subject": r["subject"],
                  "conversation": r["conversation"]}) for r in _rows(query)]


def _about_a_lead(kinds: Sequence[str]) -> peewee.Expression:
    return Event.kind.in_(list(kinds)) & Event.lead.is_null(False)


def event_refs(kinds: Sequence[str], start: dt.datetime) -> list[tuple[str, dt.datetime]]:
    """(event id, time) of the events `lead_events` would read from `start` on, oldest first (a cheap read)."""
    query = _pick(Event.select(Event.event_id, Event.received_at).where(_about_a_lead(kinds)), Event.received_at,
                  start=start)
    return list(query.tuples())


def lead_events(kinds: Sequence[str], **window: Any) -> list[Fact]:
    """Stored events of `kinds` about a known lead, by `received_at` (when seqrun learnt of them)."""
    query = (Event.select(Event.event_id, Event.kind, Event.source, Event.occurred_at, Event.received_at, Event.data,
                          Enrollment.sequence, Enrollment.step_id, *_lead_columns())
             .join(Lead, on=(Event.lead == Lead.id))
             .join_from(Event, Sender, peewee.JOIN.LEFT_OUTER, on=(Event.sender == Sender.id))
             .join_from(Event, Enrollment, peewee.JOIN.LEFT_OUTER, on=(Event.enrollment == Enrollment.id))
             .where(_about_a_lead(kinds)))
    query = _pick(query, Event.received_at, ref=Event.event_id, **window)
    return [Fact("event", r["event_id"], r["kind"], r["received_at"], r["lead_key"], r["profile_url"], r["lead_fields"],
                 r["sequence"], r["step_id"], r["sender"],
                 {"occurred_at": r["occurred_at"], "source": r["source"],
                  "conversation_id": (r["data"] or {}).get("conversation_id")})
            for r in _rows(query)]


_ENDED = Enrollment.state.in_(["done", "failed"]) & Enrollment.finished_at.is_null(False)


def _finish_ref(enrollment_id: int, finished_at: dt.datetime) -> str:
    """An enrollment may end more than once (`seqrun leads retry` brings it back): each end is a fact."""
    return f"{enrollment_id}@{finished_at.isoformat()}"


def finish_refs(start: dt.datetime) -> list[tuple[str, dt.datetime]]:
    """(ref, time) of the ends `finished_enrollments` would read from `start` on, oldest first (a cheap read)."""
    query = _pick(Enrollment.select(Enrollment.id, Enrollment.finished_at).where(_ENDED), Enrollment.finished_at,
                  start=start)
    return [(_finish_ref(i, at), at) for i, at in query.tuples()]


def finished_enrollments(**window: Any) -> list[Fact]:
    """Enrollments that ended (done or failed), by `finished_at`; `refs` as `finish_refs` gives them."""
    wanted = window.pop("refs", None)
    if wanted is not None:
        window["refs"] = sorted({int(r.split("@", 1)[0]) for r in wanted})
    query = (Enrollment.select(Enrollment.id, Enrollment.state, Enrollment.outcome, Enrollment.finished_at,
                               Enrollment.created_at, Enrollment.last_error, Enrollment.sequence, Enrollment.step_id,
                               *_lead_columns())
             .join(Lead, on=(Enrollment.lead == Lead.id))
             .join_from(Enrollment, Sender, peewee.JOIN.LEFT_OUTER, on=(Enrollment.sender == Sender.id))
             .where(_ENDED))
    query = _pick(query, Enrollment.finished_at, ref=Enrollment.id, **window)
    facts = [Fact("finish", _finish_ref(r["id"], r["finished_at"]), r["state"], r["finished_at"], r["lead_key"],
                  r["profile_url"], r["lead_fields"], r["sequence"], r["step_id"], r["sender"],
                  {"outcome": r["outcome"], "error": r["last_error"] if r["state"] == "failed" else None,
                   "started_at": r["created_at"]}) for r in _rows(query)]
    return facts if wanted is None else [f for f in facts if f.ref in set(wanted)]


def sender_states() -> list[tuple[int, str, str, str | None]]:
    """(id, name, status, paused reason) of every sender."""
    return list(Sender.select(Sender.id, Sender.name, Sender.status, Sender.paused_reason).order_by(Sender.id).tuples())


# --- delivery -------------------------------------------------------------------------------------


def due_events(names: Sequence[str], now: dt.datetime, limit: int) -> list[OutgoingEvent]:
    """Pending events of these subscriptions whose next attempt has come, oldest first."""
    return list(OutgoingEvent.select(OutgoingEvent, OutgoingSubscription.name)
                .join(OutgoingSubscription)
                .where(OutgoingEvent.state == "pending", OutgoingEvent.next_attempt_at <= now,
                       OutgoingSubscription.name.in_(list(names)))
                .order_by(OutgoingEvent.next_attempt_at, OutgoingEvent.id).limit(limit))


def claim(event: OutgoingEvent, now: dt.datetime, until: dt.datetime) -> bool:
    """Take an event for one attempt (one guarded write): nobody else tries it before `until`."""
    return OutgoingEvent.update(next_attempt_at=until, last_attempt_at=now).where(
        OutgoingEvent.id == event.id, OutgoingEvent.state == "pending",
        OutgoingEvent.next_attempt_at == event.next_attempt_at).execute() == 1


def mark_delivered(event_id: int, now: dt.datetime) -> None:
    OutgoingEvent.update(state="delivered", delivered_at=now, next_attempt_at=None, last_error=None,
                         attempts=OutgoingEvent.attempts + 1).where(OutgoingEvent.id == event_id).execute()


def mark_failed_attempt(event_id: int, error: str, next_at: dt.datetime | None) -> None:
    """An attempt that failed: try again at `next_at`, or give up (failed) when it is None."""
    OutgoingEvent.update(state="pending" if next_at is not None else "failed", next_attempt_at=next_at,
                         last_error=error, attempts=OutgoingEvent.attempts + 1).where(
        OutgoingEvent.id == event_id).execute()


# --- reading and retrying -------------------------------------------------------------------------


def summary() -> dict[str, dict[str, Any]]:
    """Per subscription: events by state (and `retrying`: pending after a failed attempt), and the
    latest error of an event not delivered."""
    out: dict[str, dict[str, Any]] = {}
    counts = (OutgoingEvent.select(OutgoingSubscription.name, OutgoingEvent.state, peewee.fn.COUNT(OutgoingEvent.id))
              .join(OutgoingSubscription).group_by(OutgoingSubscription.name, OutgoingEvent.state).tuples())
    for name, state, n in counts:
        out.setdefault(name, {"counts": {s: 0 for s in STATES}, "latest_error": None, "latest_error_at": None})
        out[name]["counts"][state] = n
    retrying = (OutgoingEvent.select(OutgoingSubscription.name, peewee.fn.COUNT(OutgoingEvent.id)).join(OutgoingSubscription)
                .where(OutgoingEvent.state == "pending", OutgoingEvent.attempts > 0)
                .group_by(OutgoingSubscription.name).tuples())
    for name, n in retrying:
        out[name]["counts"]["retrying"] = n
    for name in out:
        out[name]["counts"].setdefault("retrying", 0)
        latest = (OutgoingEvent.select(OutgoingEvent.last_error, OutgoingEvent.last_attempt_at).join(OutgoingSubscription)
                  .where(OutgoingSubscription.name == name, OutgoingEvent.state != "delivered",
                         OutgoingEvent.last_error.is_null(False))
                  .order_by(OutgoingEvent.last_attempt_at.desc(), OutgoingEvent.id.desc()).first())
        if latest is not None:
            out[name]["latest_error"] = latest.last_error
            out[name]["latest_error_at"] = latest.last_attempt_at
    return out


def list_events(*, state: str | None = None, subscription: str | None = None, limit: int = 50) -> Iterator[OutgoingEvent]:
    """The newest events first, with their subscription's name."""
    query = OutgoingEvent.select(OutgoingEvent, OutgoingSubscription.name).join(OutgoingSubscription)
    if state is not None:
        query = query.where(OutgoingEvent.state == state)
    if subscription is not None:
        query = query.where(OutgoingSubscription.name == subscription)
    yield from query.order_by(OutgoingEvent.id.desc()).limit(limit)


def retry_failed(now: dt.datetime, *, subscription: str | None = None, event_id: str | None = None) -> int:
    """Failed events back to pending, due now, with a fresh count of attempts; returns how many."""
    ids = OutgoingEvent.select(OutgoingEvent.id).join(OutgoingSubscription).where(OutgoingEvent.state == "failed")
    if subscription is not None:
        ids = ids.where(OutgoingSubscription.name == subscription)
    if event_id is not None:
        ids = ids.where(OutgoingEvent.event_id == event_id)
    with db.atomic():
        return OutgoingEvent.update(state="pending", attempts=0, next_attempt_at=now).where(
            OutgoingEvent.id.in_([i for (i,) in ids.tuples()])).execute()


def senders_json(states: dict[str, list[Any]]) -> str:
    return json.dumps(states, sort_keys=True)
