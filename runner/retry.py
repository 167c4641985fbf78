"""Putting failed leads back into their sequence: what `seqrun leads retry` does.

A lead fails when its step's retry budget is spent, or for a reason the operator can fix and then
retry (a template error, a missing environment variable, an account problem). Retrying makes the
enrollment active again at the step it failed on, due now, with a fresh retry budget and a new
idempotency key (the failed attempt keeps its own row in the audit log).

An action whose outcome stayed unknown when the lead failed (the provider could not say whether it
happened; its limit charge was kept) is reopened as in flight, so that the step asks the provider
about it again before anything is sent: a retry never sends twice.

Nothing here prints; `runner/cli/commands/leads.py` turns results into text.
"""
from __future__ import annotations

import collections
import datetime as dt
from dataclasses import dataclass, field

from runner.store import enrollments, ledger
from runner.store.transactions import writing


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
    return [FailedLead(*row) for row in enrollments.failed_enrollments(sequence=sequence, sender_id=sender_id,
                                                                          lead_id=lead_id)]


def retry(leads: list[FailedLead], now: dt.datetime, *, dry_run: bool = False) -> RetryResult:
    """Put the failed leads back (in one transaction); with `dry_run`, only say what would happen."""
    result = RetryResult()
    with writing(immediate=True) as txn:
        for lead in leads:
            if enrollments.runs_elsewhere(lead.lead_id, lead.enrollment_id):
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


def _reopen_unknown_action(enrollment_id: int) -> int:
    """A failed action that kept its charge is one whose outcome is unknown (`actions.settle_unknown`):
    mark it in flight again and point the lead at it, so that its step reconciles it first."""
    unknown = ledger.last_unknown_action(enrollment_id)
    if unknown is None:
        return 0
    action_id, key = unknown
    ledger.reopen_action(action_id)
    facts = enrollments.facts_of(enrollment_id)
    facts["inflight"] = key
    enrollments.set_facts(enrollment_id, facts)
    return 1


def _put_back(enrollment_id: int, now: dt.datetime) -> bool:
    facts = {k: v for k, v in enrollments.facts_of(enrollment_id).items() if k not in ("retries", "retry_seconds")}
    # The next attempt gets an idempotency key of its own: the failed attempt's key is taken.
    return enrollments.put_back(enrollment_id, enrollments.attempt_of(enrollment_id) + 1, facts, now)
