"""Read-only views of the store for people: the status overview and the audit-log export.

`status(...)` gathers the funnel per sequence and step, today's usage per sender against its
limits (and its provider's quotas over their own window, e.g. ConnectSafely's week), the leads that
need a human (replied, failed, paused) with the reason, and the leads a run holds (leased) and by
whom. `export_rows` yields every action, event, step transition or enrollment as a flat dict, from
the database alone, with times in UTC (and, for actions, in the lead's local time as judged when it
was recorded).
Nothing here writes.
"""
from __future__ import annotations

import datetime as dt
import json
from collections import defaultdict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from runner.engine import leases, presence
from runner.language import calendar as cal
from runner.language.model import Calendar, Sequence
from runner.project.config import Config, default_limits
from runner.providers import QUOTAS
from runner.store import reports
from runner.store.fields import from_db_time
from runner.store.leadbook import enrolled_sequences
from runner.store.leases import lease_holders
from runner.store.quota_usage import performed_between
from runner.store.runners import running_runners
from runner.store.sender_calls import calls_in_flight
from runner.store.senders import all_senders
from runner.store.versions import running_by_version, version_dates

ATTENTION_LIMIT = 50


@dataclass
class Status:
    sequences: list[dict[str, Any]] = field(default_factory=list)
    usage: list[dict[str, Any]] = field(default_factory=list)
    attention: list[dict[str, Any]] = field(default_factory=list)
    attention_total: int = 0
    #: leads a run claimed and has not finished with, per runner (see runner/engine/leases.py)
    leased: list[dict[str, Any]] = field(default_factory=list)
    #: the runners marked running in the store, with their heartbeat (see runner/engine/presence.py)
    runners: list[dict[str, Any]] = field(default_factory=list)
    #: the provider calls in flight, at most one per sender account (see runner/store/sender_calls.py)
    calls: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"sequences": self.sequences, "usage_today": self.usage, "attention": self.attention,
                "attention_total": self.attention_total, "leased": self.leased, "runners": self.runners,
                "calls_in_flight": self.calls}


def status(config: Config, sequences: Mapping[str, Sequence], now: dt.datetime, *, sequence: str | None = None) -> Status:
    out = Status()
    for name in enrolled_sequences(sequence or None):
        states = reports.states_of(name)
        seq = sequences.get(name)
        versions = _versions(name, seq)
        # "Leads here" counts the leads on the file's version: an id means another step in another.
        at_step: dict[str, int] = defaultdict(int)
        for v in versions:
            if v["current"] or seq is None:
                for step_id, n in v["steps"].items():
                    at_step[step_id] += n
        done: dict[str, dict[str, int]] = defaultdict(dict)
        for step_id, status_, n in reports.actions_by_step(name):
            done[step_id][status_] = n
        outcomes = reports.outcomes_of(name)
        order = [s.id for s in seq.steps] if seq else sorted(set(at_step) | set(done))
        steps = [{"id": sid, "leads_here": at_step.get(sid, 0), "actions": done.get(sid, {})}
                 for sid in order if at_step.get(sid) or done.get(sid) or seq is not None]
        # Actions of steps an edit removed or renamed stay in the counts, marked (runner.versions).
        steps += [{"id": sid, "leads_here": 0, "actions": done[sid], "in_file": False}
                  for sid in sorted(set(done) - set(order))]
        earlier = [v for v in versions if not v["current"]] if seq is not None else []
        out.sequences.append({"name": name, "loaded": seq is not None, "states": states, "outcomes": outcomes, "steps": steps,
                              "versions": versions, "on_earlier_versions": sum(v["leads"] for v in earlier)})
    out.usage = _usage_today(config, now)
    out.attention, out.attention_total = _attention(sequence)
    out.leased = [{"runner": owner, "leads": count, "until": until.isoformat(), "holder": leases.describe(owner)}
                  for owner, (count, until) in lease_holders().items()]
    out.runners = [{"runner": row.identity, "command": row.command, "host": row.host, "pid": row.pid,
                    "started_at": row.started_at.isoformat(), "heartbeat_at": row.heartbeat_at.isoformat(),
                    "heartbeat_age_s": int((now - row.heartbeat_at).total_seconds()),
                    "live": not presence.gone(row.identity, row, now, me="")}
                   for row in running_runners()]
    names = {s.id: s.name for s in all_senders()}
    out.calls = [{"sender": names.get(c.sender_id, str(c.sender_id)), "action_key": c.action_key, "runner": c.runner,
                  "holder": leases.describe(c.runner), "started_at": c.started_at.isoformat()}
                 for c in calls_in_flight()]
    return out


def _versions(name: str, seq: Sequence | None) -> list[dict[str, Any]]:
    """The running leads of a sequence by the version they run (runner.versions): the file's first,
    then the others oldest first; for each, its leads per step and the steps the file does not have."""
    groups: dict[str, dict[str, int]] = defaultdict(dict)
    for _, version, step_id, n in running_by_version(name):
        groups[version][step_id or "-"] = n
    dates = version_dates(groups)
    current = seq.source_hash if seq is not None else None
    out = []
    for version, steps in groups.items():
        stored = dates.get(version)
        out.append({"version": version[:12], "current": version == current,
                    "stored_at": stored.isoformat() if stored else None, "leads": sum(steps.values()),
                    "steps": dict(sorted(steps.items())),
                    "steps_not_in_file": sorted(s for s in steps if seq is not None and s not in seq.index)})
    never = dt.datetime.max.replace(tzinfo=dt.UTC).isoformat()
    return sorted(out, key=lambda v: (not v["current"], v["stored_at"] or never, v["version"]))


def _usage_today(config: Config, now: dt.datetime) -> list[dict[str, Any]]:
    rows = []
    for sid, name, account_type, tz, sender_status, reason in reports.senders_by_name():
        zone = cal.resolve_zone(Calendar(timezone="sender", fallback="UTC"), lead_tz=None, sender_tz=tz)
        today = cal.local_date(now, zone).isoformat()
        sc = config.sender(name)
        caps = {**default_limits(account_type), **(dict(sc.limits) if sc else {})}
        used = reports.used_on(sid, today)
        row: dict[str, Any] = {"sender": name, "status": sender_status, "paused_reason": reason, "day": today,
               "used": {a: int(used.get(a, 0) or 0) for a in caps}, "limits": caps}
        quotas = _quotas(sid, sc.provider if sc else "", now)
        if quotas:
            row["quotas"] = quotas
        rows.append(row)
    return rows


def _quotas(sender_id: int, provider: str, now: dt.datetime) -> list[dict[str, Any]]:
    """The provider's quotas (runner.providers.QUOTAS) over their current window, e.g. this week."""
    out = []
    for quota in QUOTAS.get(provider, ()):
        start, end = quota.window(now)
        out.append({"provider": provider, "action": quota.action, "period": quota.period, "limit": quota.limit,
                    "used": performed_between(sender_id, quota.action, start, end), "since": start.isoformat(),
                    "resets_at": end.isoformat()})
    return out


def _attention(sequence: str | None) -> tuple[list[dict[str, Any]], int]:
    total, rows = reports.needing_attention(sequence, ATTENTION_LIMIT)
    out = []
    for url, seq, step, state, outcome, error, paused, updated in rows:
        if outcome == "replied":
            why = "replied: hand over to a human"
        elif state == "failed":
            why = f"failed: {error or 'unknown error'}"
        else:
            why = f"paused: {paused or 'no reason recorded'}"
        out.append({"lead": url, "sequence": seq, "step": step, "state": state, "reason": why,
                    "since": from_db_time(updated).isoformat()})
    return out, total


# --- export ---------------------------------------------------------------------------------------
# Everything an export prints comes from the database: the zones an action was judged in are stored
# with it, so an export run anywhere (or after the sequence files changed) says the same thing.

ACTION_COLUMNS = ("action_id", "lead", "lead_key", "sender", "sequence", "step", "action", "variant", "template",
                  "status", "planned_at_utc", "planned_at_local", "performed_at_utc", "performed_at_local",
                  "lead_timezone", "sender_timezone", "relationship", "conversation", "charged", "provider_id",
                  "conversation_id", "error_kind", "error_message", "idempotency_key", "content")
EVENT_COLUMNS = ("event_id", "kind", "source", "occurred_at_utc", "received_at_utc", "lead", "lead_key", "sender",
                 "sequence", "data")
TRANSITION_COLUMNS = ("transition_id", "enrollment_id", "lead", "lead_key", "sequence", "step", "entered_at_utc")
ENROLLMENT_COLUMNS = ("enrollment_id", "lead", "lead_key", "sequence", "sender", "sender_timezone", "state", "step",
                      "outcome", "started_at_utc", "finished_at_utc", "last_error", "paused_reason")
EXPORTS: dict[str, tuple[str, ...]] = {"actions": ACTION_COLUMNS, "events": EVENT_COLUMNS,
                                       "transitions": TRANSITION_COLUMNS, "enrollments": ENROLLMENT_COLUMNS}


def export_rows(kind: str) -> Iterator[dict[str, Any]]:
    """The rows of one export (`EXPORTS` names them and their columns), oldest first."""
    return {"actions": _action_rows, "events": _event_rows, "transitions": _transition_rows,
            "enrollments": _enrollment_rows}[kind]()


def _local(t: str | None, zone: Any) -> str:
    if t is None or zone is None:
        return ""
    return from_db_time(t).astimezone(zone).isoformat()


def _utc(t: str | None) -> str:
    return from_db_time(t).isoformat() if t else ""


def _zone(name: str | None) -> Any:
    """The stored zone; None for actions recorded before seqrun stored it (their local times stay empty)."""
    return ZoneInfo(name) if name else None


def _action_rows() -> Iterator[dict[str, Any]]:
    for (aid, url, key, sender, seq, step, action, variant, template, status_, planned, performed, lead_tz, sender_tz,
         relationship, conversation, charged, provider_id, conversation_id, error_kind, error_message, idem,
         content) in reports.action_log():
        zone = _zone(lead_tz)
        yield {
            "action_id": aid, "lead": url, "lead_key": key, "sender": sender or "", "sequence": seq, "step": step,
            "action": action, "variant": variant or "", "template": template or "", "status": status_,
            "planned_at_utc": _utc(planned), "planned_at_local": _local(planned, zone),
            "performed_at_utc": _utc(performed), "performed_at_local": _local(performed, zone),
            "lead_timezone": lead_tz or "", "sender_timezone": sender_tz or "", "relationship": relationship or "",
            "conversation": conversation or "", "charged": bool(charged), "provider_id": provider_id or "",
            "conversation_id": conversation_id or "", "error_kind": error_kind or "",
            "error_message": error_message or "", "idempotency_key": idem, "content": content or "",
        }


def _event_rows() -> Iterator[dict[str, Any]]:
    for event_id, kind, source, occurred, received, url, key, sender, seq, data in reports.event_log():
        # A profile blocked before it was imported has no lead row; its event carries the profile.
        url = url or json.loads(data or "{}").get("profile_url")
        yield {"event_id": event_id, "kind": kind, "source": source, "occurred_at_utc": _utc(occurred),
               "received_at_utc": _utc(received), "lead": url or "", "lead_key": key or "", "sender": sender or "",
               "sequence": seq or "", "data": data or "{}"}


def _transition_rows() -> Iterator[dict[str, Any]]:
    for tid, enrollment_id, url, key, seq, step, entered in reports.transition_log():
        yield {"transition_id": tid, "enrollment_id": enrollment_id, "lead": url, "lead_key": key, "sequence": seq,
               "step": step, "entered_at_utc": _utc(entered)}


def _enrollment_rows() -> Iterator[dict[str, Any]]:
    for (eid, url, key, seq, sender, sender_tz, state, step, outcome, created, finished, error,
         paused) in reports.enrollment_log():
        yield {"enrollment_id": eid, "lead": url, "lead_key": key, "sequence": seq, "sender": sender or "",
               "sender_timezone": sender_tz or "", "state": state, "step": step or "", "outcome": outcome or "",
               "started_at_utc": _utc(created), "finished_at_utc": _utc(finished), "last_error": error or "",
               "paused_reason": paused or ""}


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(value: Any) -> Any:
    """Neutralise cells a spreadsheet would run as a formula (CSV injection): prefix them with '."""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value
