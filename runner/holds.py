"""Pausing and resuming leads, senders and sequences, and listing senders.

Pauses are recorded in `paused_reason` with the kind of pause as prefix ("lead paused: …",
"sender paused: …", "sequence paused: …"; the engine writes "auth expired" for a sender whose
session expired), so that each resume lifts only its own kind of pause. Paused leads give their
pacing slots back and plan again when resumed.

Nothing here prints; the commands in `runner/cli/commands/` turn results into text.
"""
from __future__ import annotations

import collections
import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from runner.engine.steps import release_slots
from runner.language.diagnostics import UserError
from runner.leads import profile_key
from runner.project.config import Config
from runner.store import enrollments, senders
from runner.store.leadbook import enrolled_sequences
from runner.store.lookups import lead_id_by_key
from runner.store.transactions import writing

LEAD, SENDER, SEQUENCE = "lead", "sender", "sequence"
#: The reason the engine writes when a provider says the sender's session expired (runner.engine.steps).
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
        lead_id = lead_id_by_key(key)
        if lead_id is None:
            raise UserError(f"no lead {url} in the database")
        return Target(LEAD, lead_id, f"lead {url}")
    if scope == SENDER:
        sender_id = senders.sender_id_by_name(value)
        if sender_id is None:
            known = ", ".join(senders.sender_names()) or "none"
            raise UserError(f'unknown sender "{value}" (known: {known})')
        return Target(SENDER, sender_id, f"sender {value}")
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


def pause(target: Target, reason: str | None, now: dt.datetime) -> PauseResult:
    """Pause the target's active enrollments; a paused sender also gets no new leads."""
    result = PauseResult()
    with writing(immediate=True):
        if target.scope == SENDER:
            senders.pause_sender(int(target.value), reason or "paused with seqrun pause")
        for held in enrollments.pause_reasons_of(target.scope, target.value):
            result.unchanged[held or "no reason given"] += 1
        ids = enrollments.active_ids_of(target.scope, target.value)
        release_slots(ids)  # resumed leads plan their slots again rather than all acting at once
        result.changed += enrollments.pause_enrollments(ids, hold_reason(target.scope, reason), now)
    return result


def resume(target: Target, now: dt.datetime) -> PauseResult:
    """Resume the target's paused enrollments, due now (the engine re-checks windows and limits).

    A resume lifts only its own kind of pause (and pauses the engine made): a lead paused by hand
    stays paused when its sequence resumes, and nothing resumes while its sender is paused.
    """
    result = PauseResult()
    with writing(immediate=True):
        if target.scope == SENDER:
            senders.resume_sender(int(target.value))
        ids: list[int] = []
        for enrollment_id, reason, sender, sender_status in enrollments.paused_of(target.scope, target.value):
            holder = _holder(reason)
            if sender_status == "paused":
                result.unchanged[f"sender {sender} is paused"] += 1
            elif holder is not None and holder != target.scope:
                result.unchanged[f"{holder} paused"] += 1
            else:
                ids.append(enrollment_id)
        result.changed += enrollments.resume_enrollments(ids, now)
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
    counts = enrollments.counts_by_sender()
    configured = set(config.sender_names)
    return [SenderListing(s.name, s.provider, s.account_type, s.timezone, s.status, s.paused_reason,
                          s.name in configured, counts.get(s.id, {}))
            for s in senders.all_senders()]
