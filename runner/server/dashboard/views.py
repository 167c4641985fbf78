"""What each dashboard page shows, gathered from the store (runner.report and runner.store.dashboard).

Plain data for the templates; nothing here knows about HTTP.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from runner.charts import hbars
from runner.holds import API_KEY_REJECTED, AUTH_EXPIRED
from runner.language.graph import build_graph
from runner.language.model import Sequence
from runner.project.config import Config
from runner.report import status
from runner.server.dashboard.flowchart import flowchart_svg
from runner.store import dashboard as store
from runner.store import inbox as store_inbox
from runner.store import outgoing, sender_state


@dataclass
class Project:
    """What the dashboard shows: the project's configuration and its sequences, by name."""

    config: Config
    sequences: Mapping[str, Sequence] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Meter:
    action: str
    used: int
    cap: int | None

    @property
    def share(self) -> float:
        return min(1.0, self.used / self.cap) if self.cap else 0.0

    @property
    def level(self) -> str:
        return "full" if self.cap is not None and self.used >= self.cap else "high" if self.share >= 0.8 else "ok"


@dataclass(frozen=True, slots=True)
class Hold:
    """An action the provider refuses for a sender until a time (runner.store.sender_state)."""

    action: str
    until: dt.datetime
    reason: str


@dataclass(frozen=True, slots=True)
class Inbox:
    """The event inbox at a glance: events waiting to be applied, how long the oldest has waited, dead ones."""

    pending: int
    lag: dt.timedelta | None
    dead: int


@dataclass(frozen=True, slots=True)
class SenderCard:
    name: str
    provider: str
    status: str  # active | provider hold | paused | auth expired | API key rejected
    detail: str  # the pause reason
    today: list[Meter]
    week: list[Meter]
    week_from: str
    last_activity: dt.datetime | None
    last_error: str | None
    last_error_at: dt.datetime | None
    holds: list[Hold] = field(default_factory=list)

    @property
    def tone(self) -> str:
        return "good" if self.status == "active" else "bad" if self.status in (AUTH_EXPIRED, API_KEY_REJECTED) else "warn"


#: the status of an active sender one of whose actions its provider refuses for now
PROVIDER_HOLD = "provider hold"


def sender_status(status_: str, reason: str | None) -> tuple[str, str]:
    """(status, detail) as the dashboard names them."""
    if status_ != "paused":
        return status_, ""
    if reason in (AUTH_EXPIRED, API_KEY_REJECTED):
        return reason, ""
    return "paused", reason or ""


def overview(project: Project, now: dt.datetime) -> dict[str, Any]:
    report = status(project.config, project.sequences, now)
    by_name = {row[1]: row for row in store.senders()}
    holds: dict[int, list[Hold]] = {}
    for held_id, action, until, why in sender_state.provider_holds(now):
        holds.setdefault(held_id, []).append(Hold(action, until, why))
    cards = []
    for usage in report.usage:
        sender_id, name, provider, tz, status_, reason = by_name[usage["sender"]]
        state, detail = sender_status(status_, reason)
        if state == "active" and sender_id in holds:
            state = PROVIDER_HOLD
        today = [Meter(action, usage["used"].get(action, 0), cap) for action, cap in usage["limits"].items()]
        day = dt.date.fromisoformat(usage["day"])
        monday = day - dt.timedelta(days=day.weekday())
        week_used = store.usage_between(sender_id, monday.isoformat(), day.isoformat())
        quotas = {q["action"]: q for q in usage.get("quotas", ()) if q["period"] == "week"}
        week = [Meter(action, quotas[action]["used"] if action in quotas else week_used.get(action, 0),
                      quotas[action]["limit"] if action in quotas else None)
                for action in usage["limits"]]
        activity = store.sender_activity(sender_id)
        cards.append(SenderCard(name, provider, state, detail, today, week, monday.isoformat(),
                                activity.last_activity, activity.last_error, activity.last_error_at,
                                holds.get(sender_id, [])))
    sequences = []
    for seq in report.sequences:
        rows = []
        for step in seq["steps"]:
            actions = step["actions"]
            rows.append({"id": step["id"], "here": step["leads_here"], "done": actions.get("done", 0),
                         "failed": actions.get("failed", 0), "skipped": actions.get("skipped", 0),
                         "in_flight": actions.get("in_flight", 0), "in_file": step.get("in_file", True)})
        total = sum(seq["states"].values())
        funnel = _funnel(seq, total)
        sequences.append({"name": seq["name"], "states": seq["states"], "total": total, "outcomes": seq["outcomes"],
                          "steps": rows, "funnel": funnel, "earlier": seq["on_earlier_versions"]})
    _, waiting = store.attention(limit=1)
    return {"senders": cards, "sequences": sequences, "attention_total": waiting, "outgoing": outgoing.summary(),
            "inbox": inbox_state(now)}


def inbox_state(now: dt.datetime) -> Inbox:
    counts = store_inbox.counts()
    oldest = store_inbox.oldest_pending_received_at()
    return Inbox(counts["pending"], max(now - oldest, dt.timedelta(0)) if oldest is not None else None, counts["dead"])


def _funnel(seq: Mapping[str, Any], total: int) -> str:
    """Leads enrolled, then the leads each action step performed for (done), in step order."""
    rows: list[tuple[str, float]] = [("enrolled", float(total))]
    rows += [(step["id"], float(step["actions"].get("done", 0))) for step in seq["steps"] if step["actions"]]
    return hbars(rows, title=f"funnel of {seq['name']}", note="(actions done per step)")


def attention_page(limit: int = 200) -> dict[str, Any]:
    rows, total = store.attention(limit)
    return {"rows": rows, "total": total}


def lead_page(enrollment_id: int) -> dict[str, Any] | None:
    lead = store.lead_row(enrollment_id)
    if lead is None:
        return None
    return {"lead": lead, "timeline": store.timeline(enrollment_id), "handled_at": store.handled_at(enrollment_id),
            "needs_human": store.needs_human(enrollment_id)}


def sequence_page(project: Project, name: str) -> dict[str, Any] | None:
    seq = project.sequences.get(name)
    if seq is None:
        return None
    svg = flowchart_svg(build_graph(seq), [s.id for s in seq.steps], store.leads_on_steps(name), store.outcomes(name))
    return {"name": name, "svg": svg, "on_step": store.leads_on_steps(name), "path": getattr(seq, "path", "")}


def webhook_rows(deliveries: Any, limit: int = 200) -> list[Any]:
    """The newest deliveries first, from `seqrun serve`'s delivery log (runner.server.deliveries),
    which keeps them oldest first."""
    if deliveries is None:
        return []
    return list(reversed(deliveries.recent(limit=limit)))
