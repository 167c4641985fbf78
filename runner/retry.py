"""Putting failed leads back into their sequence: what `seqrun leads retry` does.

A lead fails when its step's retry budget is spent, or for a reason the operator can fix and then
retry (a template error, a missing environment variable, an account problem). Retrying makes the
enrollment active again at the step it failed on, due now, with a fresh retry budget and a new
idempotency key (the failed attempt keeps its own row in the audit log).

An action whose outcome stayed unknown when the lead failed (the provider could not say whether it
happened; its limit charge was kept) is reopened as in flight, so that the step asks the provider
about it again before anything is sent: a retry never sends twice.

Nothing here prints; `runner/commands/leads.py` turns results into text.
"""
from __future__ import annotations

import collections
import datetime as dt
from dataclasses import dataclass, field

import peewee

from .store import Action, Enrollment, Lead, Sender, db


@dataclass(frozen=True, slots=True)
class FailedLead:
    enrollment_id: int
    lead_id: int
    profile_url: str
    sequence: str
    step: str | None
    sender: str | None
    error: str | None


@dataclass
class RetryResult:
    retried: list[FailedLead] = field(default_factory=list)
    reopened: int = 0  # actions of unknown outcome reopened for reconciliation
    unchanged: collections.Counter[str] = field(default_factory=collections.Counter)  # why not


def failed_leads(*, sequence: str | None = None, sender_id: int | None = None,
                 lead_id: int | None = None) -> list[FailedLead]:
    """Failed enrollments, oldest failure first, narrowed by every filter given."""
    query = (Enrollment.select(Enrollment.id, Enrollment.lead, Lead.profile_url, Enrollment.sequence,
                               Enrollment.step_id, Sender.name, Enrollment.last_error)
             .join(Lead, on=(Enrollment.lead == Lead.id))
             .join(Sender, peewee.JOIN.LEFT_OUTER, on=(Enrollment.sender == Sender.id))
             .where(Enrollment.state == "failed")
             .order_by(Enrollment.finished_at, Enrollment.id))
    if sequence is not None:
        query = query.where(Enrollment.sequence == sequence)
    if sender_id is not None:
        query = query.where(Enrollment.sender == sender_id)
    if lead_id is not None:
        query = query.where(Enrollment.lead == lead_id)
    return [FailedLead(*row) for row in query.tuples()]


def retry(leads: list[FailedLead], now: dt.datetime, *, dry_run: bool = False) -> RetryResult:
    """Put the failed leads back (in one transaction); with `dry_run`, only say what would happen."""
    result = RetryResult()
    with db.atomic("IMMEDIATE") as txn:
        for lead in leads:
            if _running_elsewhere(lead):
                # A lead runs in at most one sequence at a time: it was imported into another since.
                result.unchanged["running in another sequence"] += 1
                continue
            result.reopened += _reopen_unknown_action(lead.enrollment_id)
            if not _put_back(lead.enrollment_id, now):
                result.unchanged["changed meanwhile"] += 1
                continue
            result.retried.append(lead)
        if dry_run:
            txn.rollback()
    return result


def _running_elsewhere(lead: FailedLead) -> bool:
    return bool(Enrollment.select(Enrollment.id).where(
        Enrollment.lead == lead.lead_id, Enrollment.state.in_(("active", "paused")),
        Enrollment.id != lead.enrollment_id).exists())


def _reopen_unknown_action(enrollment_id: int) -> int:
    """A failed action that kept its charge is one whose outcome is unknown (`actions.settle_unknown`):
    mark it in flight again and point the lead at it, so that its step reconciles it first."""
    act = (Action.select().where(Action.enrollment == enrollment_id, Action.status == "failed", Action.charged == True)  # noqa: E712
           .order_by(Action.id.desc()).first())
    if act is None:
        return 0
    Action.update(status="in_flight").where(Action.id == act.id).execute()
    enr = Enrollment.get_by_id(enrollment_id)
    facts = dict(enr.facts or {})
    facts["inflight"] = act.key
    Enrollment.update(facts=facts).where(Enrollment.id == enrollment_id).execute()
    return 1


def _put_back(enrollment_id: int, now: dt.datetime) -> bool:
    enr = Enrollment.get_by_id(enrollment_id)
    facts = {k: v for k, v in (enr.facts or {}).items() if k not in ("retries", "retry_seconds")}
    # The next attempt gets an idempotency key of its own: the failed attempt's key is taken.
    updated: int = Enrollment.update(
        state="active", outcome=None, finished_at=None, last_error=None, due_at=now, lease_owner=None,
        attempt=enr.attempt + 1, facts=facts, updated_at=now,
    ).where(Enrollment.id == enrollment_id, Enrollment.state == "failed").execute()
    return updated == 1
