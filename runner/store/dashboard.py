"""What the web dashboard reads (and the one thing it writes: "handled" marks), as named queries.

Portable between SQLite and Postgres: peewee's query builder only, times as ISO-8601 TEXT.

A handled mark (migration 11) remembers that a person dealt with a lead that needed one, and the
enrollment's `updated_at` at that moment: a lead that changes again (a new reply, a new failure)
needs a human again, so a mark only hides the lead while the enrollment stays as it was.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import peewee

from runner.store.fields import JSONField, UTCDateTimeField, from_db_time
from runner.store.models import Action, BaseModel, Enrollment, Event, Lead, Pace, Sender, Transition, Usage, db


class HandledMark(BaseModel):
    enrollment = peewee.ForeignKeyField(Enrollment, unique=True, on_delete="CASCADE")
    enrollment_updated_at = UTCDateTimeField()  # the enrollment as the person saw it
    handled_at = UTCDateTimeField()


#: enrollments that need a human: replied, failed or paused (see `attention`)
NEEDS_HUMAN_STATES = ("failed", "paused")


@dataclass(frozen=True, slots=True)
class AttentionRow:
    enrollment_id: int
    lead_id: int
    profile_url: str
    name: str
    sequence: str
    step: str | None
    state: str
    outcome: str | None
    sender: str | None
    last_error: str | None
    paused_reason: str | None
    replied: bool  # a reply event (or `replied` fact) is recorded
    messaged: bool  # a message of ours was performed before
    updated_at: dt.datetime

    @property
    def reason(self) -> str:
        if self.replied or self.outcome == "replied":
            return "replied" if self.messaged else "wrote first"
        if self.state == "failed":
            return f"failed: {self.last_error or 'unknown error'}"
        if self.state == "paused":
            return f"paused: {self.paused_reason or 'no reason recorded'}"
        return self.state


def _replied_ids(enrollment_ids: list[int]) -> set[int]:
    if not enrollment_ids:
        return set()
    query = Event.select(Event.enrollment).where(Event.kind == "replied", Event.enrollment.in_(enrollment_ids))
    return {e for (e,) in query.tuples()}


def _messaged_ids(enrollment_ids: list[int]) -> set[int]:
    if not enrollment_ids:
        return set()
    query = Action.select(Action.enrollment).where(
        Action.enrollment.in_(enrollment_ids), Action.action.in_(("message", "inmail")), Action.status == "done")
    return {e for (e,) in query.tuples()}


def _needs_human() -> peewee.Expression:
    replied_event = Event.select(Event.id).where(Event.enrollment == Enrollment.id, Event.kind == "replied")
    return ((Enrollment.outcome == "replied") | Enrollment.state.in_(NEEDS_HUMAN_STATES)
            | (peewee.fn.EXISTS(replied_event) & (Enrollment.state == "active")))


def _not_handled() -> peewee.Expression:
    mark = HandledMark.select(HandledMark.id).where(HandledMark.enrollment == Enrollment.id,
                                                    HandledMark.enrollment_updated_at == Enrollment.updated_at)
    return ~peewee.fn.EXISTS(mark)


def attention(limit: int = 200) -> tuple[list[AttentionRow], int]:
    """The leads that need a human and are not marked handled, newest change first, and their total."""
    where = _needs_human() & _not_handled()
    return _attention_rows(where, limit), Enrollment.select().where(where).count()


def lead_row(enrollment_id: int) -> AttentionRow | None:
    """One enrollment as "Needs a human" shows it, whether or not it needs one now."""
    rows = _attention_rows(Enrollment.id == enrollment_id, 1)
    return rows[0] if rows else None


def _attention_rows(where: peewee.Expression, limit: int) -> list[AttentionRow]:
    rows = list(Enrollment.select(Enrollment.id, Lead.id, Lead.profile_url, Lead.fields, Enrollment.sequence,
                                  Enrollment.step_id, Enrollment.state, Enrollment.outcome, Sender.name,
                                  Enrollment.last_error, Enrollment.paused_reason, Enrollment.facts,
                                  Enrollment.updated_at)
                .join(Lead, on=(Enrollment.lead == Lead.id))
                .join(Sender, peewee.JOIN.LEFT_OUTER, on=(Enrollment.sender == Sender.id))
                .where(where).order_by(Enrollment.updated_at.desc(), Enrollment.id.desc()).limit(limit).tuples())
    ids = [r[0] for r in rows]
    replied, messaged = _replied_ids(ids), _messaged_ids(ids)
    out = []
    for (eid, lead_id, url, fields, seq, step, state, outcome, sender, error, paused, facts, updated) in rows:
        fields = _json(fields)
        name = fields.get("full_name") or " ".join(
            v for v in (fields.get("first_name"), fields.get("last_name")) if v) or url
        out.append(AttentionRow(eid, lead_id, url, name, seq, step, state, outcome, sender, error, paused,
                                eid in replied or bool(_json(facts).get("replied")), eid in messaged, _time(updated)))
    return out


def _json(value: Any) -> dict[str, Any]:
    return JSONField().python_value(value) if isinstance(value, str) else (value or {})


def needs_human(enrollment_id: int) -> bool:
    """Whether the enrollment needs a human and is not marked handled as it is now."""
    return Enrollment.select().where(_needs_human() & _not_handled() & (Enrollment.id == enrollment_id)).exists()


def mark_handled(enrollment_id: int, now: dt.datetime) -> bool:
    """Mark the enrollment handled as it is now; False if there is no such enrollment."""
    with db.atomic():
        updated = Enrollment.select(Enrollment.updated_at).where(Enrollment.id == enrollment_id).scalar()
        if updated is None:
            return False
        (HandledMark.insert(enrollment=enrollment_id, enrollment_updated_at=updated, handled_at=now)
         .on_conflict(conflict_target=[HandledMark.enrollment],
                      update={HandledMark.enrollment_updated_at: updated, HandledMark.handled_at: now})
         .execute())
    return True


def handled_at(enrollment_id: int) -> dt.datetime | None:
    mark = HandledMark.get_or_none(HandledMark.enrollment == enrollment_id)
    return mark.handled_at if mark is not None else None


def enrollment_lead(enrollment_id: int) -> tuple[int, str, str, str | None, str] | None:
    """(lead id, profile URL, sequence, sender name, state) of an enrollment, or None."""
    return (Enrollment.select(Lead.id, Lead.profile_url, Enrollment.sequence, Sender.name, Enrollment.state)
            .join(Lead, on=(Enrollment.lead == Lead.id))
            .join(Sender, peewee.JOIN.LEFT_OUTER, on=(Enrollment.sender == Sender.id))
            .where(Enrollment.id == enrollment_id).tuples().first())


@dataclass(frozen=True, slots=True)
class TimelineItem:
    at: dt.datetime
    kind: str  # action | event | step
    title: str
    status: str
    body: str  # a message's rendered text, an error, an event's data
    subject: str = ""


def timeline(enrollment_id: int) -> list[TimelineItem]:
    """Every step entered, action (with the message as rendered and sent) and event of an enrollment,
    in the order they happened.

    One pass stamps a step's action and the entry into the next step with the same `now`, so times
    alone cannot order them. Transitions are ordered by id; an action goes after the latest entry into
    its own step (at or before its time), an event after the latest entry before its time; then by time
    and id.
    """
    entries = [(_time(entered), step_id) for step_id, entered in (
        Transition.select(Transition.step_id, Transition.entered_at)
        .where(Transition.enrollment == enrollment_id).order_by(Transition.id).tuples())]
    keyed: list[tuple[tuple[Any, ...], TimelineItem]] = []
    for position, (entered, step_id) in enumerate(entries):
        keyed.append(((position, 0, entered, 0), TimelineItem(entered, "step", f"entered {step_id}", "", "")))
    for (row_id, step_id, action, status, planned, performed, content, subject, error, variant) in (
            Action.select(Action.id, Action.step_id, Action.action, Action.status, Action.planned_at,
                          Action.performed_at, Action.content, Action.subject, Action.error_message, Action.variant)
            .where(Action.enrollment == enrollment_id).tuples()):
        title = f"{action} at {step_id}" + (f" (variant {variant})" if variant else "")
        body = content or ""
        if error:
            body = f"{body}\n\n{error}".strip()
        at = _time(performed or planned)
        position = _last_entry(entries, lambda e: e[1] == step_id and e[0] <= at)  # noqa: B023 - called at once
        keyed.append(((position, 1, at, row_id), TimelineItem(at, "action", title, status, body, subject or "")))
    lead_id = Enrollment.select(Enrollment.lead).where(Enrollment.id == enrollment_id).scalar()
    for row_id, kind, source, occurred, data in (
            Event.select(Event.id, Event.kind, Event.source, Event.occurred_at, Event.data)
            .where((Event.enrollment == enrollment_id) | ((Event.lead == lead_id) & Event.enrollment.is_null()))
            .tuples()):
        data = _json(data)
        text = data.get("text") or data.get("message") or ""
        at = _time(occurred)
        position = _last_entry(entries, lambda e: e[0] < at)  # noqa: B023 - called at once
        keyed.append(((position, 2, at, row_id), TimelineItem(at, "event", kind.replace("_", " "), source, str(text))))
    return [item for _, item in sorted(keyed, key=lambda pair: pair[0])]


def _last_entry(entries: list[tuple[dt.datetime, str]], fits: Callable[[tuple[dt.datetime, str]], bool]) -> int:
    """The position of the latest step entry that `fits`, or -1 (before the first)."""
    return max((i for i, entry in enumerate(entries) if fits(entry)), default=-1)


def _time(value: Any) -> dt.datetime:
    return from_db_time(value) if isinstance(value, str) else value


def usage_between(sender_id: int, first_day: str, last_day: str) -> dict[str, int]:
    """Actions a sender performed per action over sender-local days first_day..last_day (YYYY-MM-DD)."""
    query = (Usage.select(Usage.action, peewee.fn.SUM(Usage.used))
             .where(Usage.sender == sender_id, Usage.day >= first_day, Usage.day <= last_day)
             .group_by(Usage.action).tuples())
    return {action: int(used or 0) for action, used in query}


@dataclass(frozen=True, slots=True)
class SenderActivity:
    last_activity: dt.datetime | None
    last_error: str | None
    last_error_at: dt.datetime | None


def sender_activity(sender_id: int) -> SenderActivity:
    """When the sender last performed an action, and its latest failed action's error."""
    last = (Action.select(peewee.fn.MAX(Action.performed_at))
            .where(Action.sender == sender_id, Action.status == "done").scalar())
    failed = (Action.select(Action.error_message, Action.performed_at, Action.planned_at)
              .where(Action.sender == sender_id, Action.status == "failed")
              .order_by(Action.id.desc()).limit(1).tuples().first())
    return SenderActivity(_time(last) if last else None, failed[0] if failed else None,
                          _time(failed[1] or failed[2]) if failed else None)


def senders() -> list[tuple[int, str, str, str, str, str | None]]:
    """(id, name, provider, timezone, status, paused_reason) of every sender, by name."""
    return list(Sender.select(Sender.id, Sender.name, Sender.provider, Sender.timezone, Sender.status,
                              Sender.paused_reason).order_by(Sender.name).tuples())


def leads_on_steps(sequence: str) -> dict[str, int]:
    """Running (active or paused) leads of a sequence per step id, whatever version they run."""
    query = (Enrollment.select(Enrollment.step_id, peewee.fn.COUNT(Enrollment.id))
             .where(Enrollment.sequence == sequence, Enrollment.state.in_(("active", "paused")))
             .group_by(Enrollment.step_id).tuples())
    return {step or "-": n for step, n in query}


def outcomes(sequence: str) -> dict[str, int]:
    """Finished leads of a sequence per outcome."""
    query = (Enrollment.select(Enrollment.outcome, peewee.fn.COUNT(Enrollment.id))
             .where(Enrollment.sequence == sequence, Enrollment.outcome.is_null(False))
             .group_by(Enrollment.outcome).tuples())
    return dict(query)


def table_exists(name: str) -> bool:
    return name in db.get_tables()


def booked_slots() -> dict[str, int]:
    """Paced slots booked now (leads waiting for their turn under the limits), per action."""
    query = (Pace.select(Pace.action, peewee.fn.COUNT(Pace.id)).where(Pace.state == "booked")
             .group_by(Pace.action).tuples())
    return dict(query)


def variant_results(sequence: str) -> list[tuple[str, str, int, int]]:
    """(step, variant, messages sent, leads who replied after one) per A/B variant of a sequence."""
    sent = dict(((step, variant), n) for step, variant, n in (
        Action.select(Action.step_id, Action.variant, peewee.fn.COUNT(Action.id))
        .where(Action.sequence == sequence, Action.variant.is_null(False), Action.status == "done")
        .group_by(Action.step_id, Action.variant).tuples()))
    reply = Event.alias()
    replied = dict(((step, variant), n) for step, variant, n in (
        Action.select(Action.step_id, Action.variant, peewee.fn.COUNT(Action.enrollment.distinct()))
        .join(reply, on=((reply.enrollment == Action.enrollment) & (reply.kind == "replied")
                         & (reply.occurred_at >= Action.performed_at)))
        .where(Action.sequence == sequence, Action.variant.is_null(False), Action.status == "done")
        .group_by(Action.step_id, Action.variant).tuples()))
    return [(step, variant, n, replied.get((step, variant), 0)) for (step, variant), n in sorted(sent.items())]
