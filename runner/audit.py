"""Auditing the ledger: were the promises kept?

Reads the store after a run or simulation and lists every broken promise in plain words: an action
started outside the calendar window in the lead's zone, more actions than a sender's (or a
sequence's) daily cap on a sender-local day (warm-up included), more than a provider's quota in its
window (a week for ConnectSafely's invitations), two actions of a kind closer than `min_gap` or the
pacing floor (`runner.pacing_audit`), a message sent after the lead replied, or one step entry
performed twice. An empty list is the expected answer; tests and `simulate` report it.
"""
from __future__ import annotations

import json
from collections import Counter

from runner import pacing_audit
from runner.engine.runtime import Runtime
from runner.language import calendar as cal
from runner.language.model import Sequence
from runner.providers import QUOTAS
from runner.providers.quotas import by_window
from runner.store import auditlog
from runner.store.fields import from_db_time
from runner.store.quota_usage import performed_times

LINKEDIN_ACTIONS = ("visit", "connect", "message", "inmail", "withdraw")


def violations(sequences: dict[str, Sequence], rt: Runtime) -> list[str]:
    found: list[str] = []
    senders = {s.id: s for s in rt.senders.values()}
    entries: Counter[str] = Counter()
    replied_at = auditlog.first_replies()
    rows = auditlog.done_actions_with_leads(LINKEDIN_ACTIONS)
    # Judged at `started_at`, when seqrun decided and sent the request: a call in flight when the
    # window closes (or the lead replies) may complete seconds later on LinkedIn's side.
    for key, seq_name, _step_id, action, performed, sender_id, lead_id, lead_key, lead_tz, fields, _charged in rows:
        seq, sender = sequences.get(seq_name), senders.get(sender_id)
        if seq is None or sender is None or performed is None:
            continue
        at = from_db_time(performed)
        zone = cal.resolve_zone(seq.calendar, lead_tz=lead_tz or json.loads(fields).get("timezone"), sender_tz=sender.timezone)
        if not cal.is_open(seq.calendar, zone, at):
            found.append(f"{action} for {lead_key} at {at.isoformat()} is outside the window ({zone.key} local "
                         f"{at.astimezone(zone).strftime('%a %H:%M')})")
        entries[key.rsplit(":", 1)[0]] += 1
        reply = replied_at.get(lead_id)
        if action in ("message", "inmail") and reply is not None and at > reply:
            found.append(f"{action} to {lead_key} at {at.isoformat()} after the lead replied at {reply.isoformat()}")
    found += pacing_audit.violations(sequences, rt, auditlog.done_action_times(LINKEDIN_ACTIONS))
    for entry, n in sorted(entries.items()):
        if n > 1:
            found.append(f"step entry {entry} was performed {n} times")
    return found + _quota_violations(rt)


def _quota_violations(rt: Runtime) -> list[str]:
    """Every provider quota window (a ConnectSafely week) with more performed actions than the quota."""
    found = []
    for sender in rt.senders.values():
        provider = getattr(sender.provider, "name", "")
        for quota in QUOTAS.get(provider, ()):
            for start, n in by_window(quota, performed_times(sender.id, quota.action)).items():
                if n > quota.limit:
                    found.append(f"sender {sender.name}: {n} {quota.action} actions in the {quota.period} from "
                                 f"{start:%Y-%m-%d %H:%M} UTC; {provider}'s quota is {quota.describe()}")
    return found

