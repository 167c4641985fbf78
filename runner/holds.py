"""Pausing and resuming leads, senders and sequences, and listing senders.

Pauses are recorded in `paused_reason` with the kind of pause as prefix ("lead paused: …",
"sender paused: …", "sequence paused: …"; the engine writes "auth expired" for a sender whose
session expired), so that each resume lifts only its own kind of pause. Paused leads give their
pacing slots back and plan again when resumed.

Nothing here prints; the commands in `runner/commands/` turn results into text.
"""
from __future__ import annotations

import collections
import datetime as dt
from dataclasses import dataclass, field
from typing import Any

import peewee

from .config import Config
from .diagnostics import UserError
from .leads import profile_key
from .steps import release_slots
from .store import Enrollment, Lead, Sender, db
from .store.leadbook import BATCH, RUNNING, chunks, enrolled_sequences

LEAD, SENDER, SEQUENCE = "lead", "sender", "sequence"
#: The reason the engine writes when a provider says the sender's session expired (runner.steps).
AUTH_EXPIRED = "auth expired"
#: ... and the reason it writes when the provider refused the sender's API key.
API_KEY_REJECTED = "API key rejected"


@dataclass(frozen=True, slots=True)
class Target:
    """What a pause or resume applies to: one lead, one sender or one sequence."""

    scope: str  # LEAD | SENDER | SEQUENCE
    value: int | str  # lead id, sender id, or sequence name
    label: str  # as messages name it: "lead https://…", "sender alice", "sequence founders-q1"


@dataclass
class PauseResult:
    changed: int = 0
    # Enrollments left as they were, by why: the pause reason they already had (pause), or what
    # still holds them (resume).
    unchanged: collections.Counter[str] = field(default_factory=collections.Counter)


def find_target(scope: str, value: str) -> Target:
    """The lead, sender or sequence named on the command line; unknown values are UserErrors."""
    if scope == LEAD:
        key, url = profile_key(value)
        lead = Lead.get_or_none(Lead.key == key)
        if lead is None:
            raise UserError(f"no lead {url} in the database")
        return Target(LEAD, lead.id, f"lead {url}")
    if scope == SENDER:
        sender = Sender.get_or_none(Sender.name == value)
        if sender is None:
            known = ", ".join(n for (n,) in Sender.select(Sender.name).order_by(Sender.name).tuples()) or "none"
            raise UserError(f'unknown sender "{value}" (known: {known})')
        return Target(SENDER, sender.id, f"sender {value}")
    known_seqs = enrolled_sequences()
    if value not in known_seqs:
        raise UserError(f'no leads in sequence "{value}" (sequences with leads: {", ".join(known_seqs) or "none"})')
    return Target(SEQUENCE, value, f"sequence {value}")


def hold_reason(scope: str, reason: str | None) -> str:
    """The `paused_reason` a pause by `scope` writes; its prefix tells later resumes who holds it."""
    return f"{scope} paused: {reason}" if reason else f"{scope} paused"


def _holder(reason: str | None) -> str | None:
    """Which kind of pause holds an enrollment; None for pauses the engine made for other reasons."""
    for scope in (LEAD, SENDER, SEQUENCE):
        if reason and (reason == f"{scope} paused" or reason.startswith(f"{scope} paused: ")):
            return scope
    return SENDER if reason in (AUTH_EXPIRED, API_KEY_REJECTED) else None


def _running_of(target: Target) -> peewee.ModelSelect:
    column = {LEAD: Enrollment.lead, SENDER: Enrollment.sender, SEQUENCE: Enrollment.sequence}[target.scope]
    return Enrollment.select().where(column == target.value, Enrollment.state.in_(RUNNING))


def pause(target: Target, reason: str | None, now: dt.datetime) -> PauseResult:
    """Pause the target's active enrollments; a paused sender also gets no new leads."""
    result = PauseResult()
    with db.atomic("IMMEDIATE"):
        if target.scope == SENDER:
            Sender.update(status="paused", paused_reason=reason or "paused with seqrun pause").where(
                Sender.id == target.value).execute()
        for (held,) in _running_of(target).where(Enrollment.state == "paused").select(
                Enrollment.paused_reason).tuples():
            result.unchanged[held or "no reason given"] += 1
        ids = [e for (e,) in _running_of(target).where(Enrollment.state == "active").select(Enrollment.id).tuples()]
        release_slots(ids)  # resumed leads plan their slots again rather than all acting at once
        for chunk in chunks(ids, BATCH):
            result.changed += (Enrollment.update(state="paused", paused_reason=hold_reason(target.scope, reason),
                                                 updated_at=now)
                               .where(Enrollment.id.in_(chunk), Enrollment.state == "active").execute())
    return result


def resume(target: Target, now: dt.datetime) -> PauseResult:
    """Resume the target's paused enrollments, due now (the engine re-checks windows and limits).

    A resume lifts only its own kind of pause (and pauses the engine made): a lead paused by hand
    stays paused when its sequence resumes, and nothing resumes while its sender is paused.
    """
    result = PauseResult()
    with db.atomic("IMMEDIATE"):
        if target.scope == SENDER:
            Sender.update(status="active", paused_reason=None).where(Sender.id == target.value).execute()
        query = (_running_of(target).where(Enrollment.state == "paused")
                 .select(Enrollment.id, Enrollment.paused_reason, Sender.name, Sender.status)
                 .join(Sender, peewee.JOIN.LEFT_OUTER, on=(Enrollment.sender == Sender.id)).tuples())
        ids: list[int] = []
        for enrollment_id, reason, sender, sender_status in query:
            holder = _holder(reason)
            if sender_status == "paused":
                result.unchanged[f"sender {sender} is paused"] += 1
            elif holder is not None and holder != target.scope:
                result.unchanged[f"{holder} paused"] += 1
            else:
                ids.append(enrollment_id)
        for chunk in chunks(ids, BATCH):
            result.changed += (Enrollment.update(state="active", paused_reason=None, due_at=now, lease_owner=None,
                                                 updated_at=now)
                               .where(Enrollment.id.in_(chunk), Enrollment.state == "paused").execute())
    return result


# --- senders --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SenderListing:
    name: str
    provider: str
    account_type: str
    timezone: str
    status: str
    paused_reason: str | None
    configured: bool
    enrollments: dict[str, int]  # state -> count

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "provider": self.provider, "account_type": self.account_type,
                "timezone": self.timezone, "status": self.status, "paused_reason": self.paused_reason,
                "configured": self.configured, "enrollments": self.enrollments}


def list_senders(config: Config) -> list[SenderListing]:
    """Every sender in the store (configured ones first synced by the caller), with enrollment counts."""
    counts: dict[int, dict[str, int]] = collections.defaultdict(dict)
    query = (Enrollment.select(Enrollment.sender, Enrollment.state, peewee.fn.COUNT(Enrollment.id))
             .where(Enrollment.sender.is_null(False)).group_by(Enrollment.sender, Enrollment.state).tuples())
    for sender_id, state, count in query:
        counts[sender_id][state] = count
    configured = set(config.sender_names)
    return [SenderListing(s.name, s.provider, s.account_type, s.timezone, s.status, s.paused_reason,
                          s.name in configured, counts.get(s.id, {}))
            for s in Sender.select().order_by(Sender.name)]
