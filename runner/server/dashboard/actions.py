"""What the buttons on a lead's page do, through the same functions as the commands.

Mark handled (runner.store.dashboard), pause and resume (`seqrun pause|resume --lead`, runner.holds),
retry (`seqrun leads retry --lead`, runner.retry), block (`seqrun leads block`, runner.leads, and the
Salesflow campaign removal of runner.campaigns). Each returns one line saying what happened.
"""
from __future__ import annotations

import datetime as dt

from runner.holds import LEAD, Target, pause, resume
from runner.leads import block_profiles, profile_key
from runner.project.config import Config
from runner.retry import failed_leads, retry
from runner.store import dashboard as store

ACTIONS = ("handled", "pause", "resume", "retry", "block")


class UnknownLead(LookupError):
    pass


def perform(action: str, enrollment_id: int, config: Config, now: dt.datetime) -> str:
    """Do `action` (one of ACTIONS) for the enrollment's lead; a line for the page."""
    found = store.enrollment_lead(enrollment_id)
    if found is None:
        raise UnknownLead(enrollment_id)
    lead_id, url, _sequence, _sender, _state = found
    target = Target(LEAD, lead_id, f"lead {url}")
    if action == "handled":
        store.mark_handled(enrollment_id, now)
        return "Marked handled: the lead leaves “Needs a human” until something new happens to it."
    if action == "pause":
        result = pause(target, "paused from the dashboard", now)
        return "Paused." if result.changed else "Nothing to pause: the lead is not active."
    if action == "resume":
        result = resume(target, now)
        if result.changed:
            return "Resumed, due now."
        why = ", ".join(sorted(result.unchanged)) or "the lead is not paused"
        return f"Not resumed ({why})."
    if action == "retry":
        mine = [lead for lead in failed_leads(lead_id=lead_id) if lead.enrollment_id == enrollment_id]
        if not mine:
            return "Nothing to retry: the lead has not failed."
        outcome = retry(mine, now)
        if outcome.retried:
            extra = " An action of unknown outcome is checked with the provider first." if outcome.reopened else ""
            return "Retried, due now." + extra
        return f"Not retried ({', '.join(sorted(outcome.unchanged))})."
    if action == "block":
        key, canonical = profile_key(url)
        block_profiles([(key, canonical)], "blocked from the dashboard", now)
        from runner.campaigns import remove_from_campaigns

        problems = [r.problem for r in remove_from_campaigns(config, [key]) if r.problem is not None]
        if problems:
            return (f"Blocked; it may still be in a Salesflow campaign ({problems[0]}); "
                    "block it again to retry the removal.")
        return "Blocked: the lead ends with outcome “blocked” at its next step and is never contacted again."
    raise ValueError(f"unknown action {action!r}")
