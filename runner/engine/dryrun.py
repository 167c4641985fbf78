"""Dry runs: what `seqrun run --dry-run` would do, without calling any provider or keeping any change.

`DryRunProvider` stands in for every sender's real driver. It answers reads from nothing ("not
connected, no conversation": the engine then shows the path a new lead would take) and records each
action it is asked to perform as a `Planned` line instead of sending it. The caller runs the tick
inside a transaction that it rolls back, so the store is left exactly as it was.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field

from runner.providers.base import Account, ActionResult, Conversation, LeadRef, PollResult, Relationship


@dataclass(frozen=True)
class Planned:
    sender: str
    lead: str
    action: str
    text: str | None = None
    subject: str | None = None
    conversation_id: str | None = None


@dataclass
class DryRunProvider:
    clock: Callable[[], dt.datetime]
    capabilities: frozenset[str] = frozenset({"visit", "connect", "message", "inmail", "withdraw"})
    name: str = "dry-run"
    planned: list[Planned] = field(default_factory=list)

    def _done(self, account: Account, lead: LeadRef, action: str, **details: object) -> ActionResult:
        self.planned.append(Planned(account.sender, lead.profile_url, action, **details))  # type: ignore[arg-type]
        return ActionResult(performed_at=self.clock(), provider_id=f"dry-run-{len(self.planned)}")

    def relationship(self, account: Account, lead: LeadRef) -> Relationship:
        return Relationship(connected=False, invite_pending=False)

    def conversation(self, account: Account, lead: LeadRef) -> Conversation:
        return Conversation(conversation_id=None)

    def visit(self, account: Account, lead: LeadRef, *, key: str) -> ActionResult:
        return self._done(account, lead, "visit")

    def connect(self, account: Account, lead: LeadRef, *, note: str | None, key: str) -> ActionResult:
        return self._done(account, lead, "connect", text=note)

    def send_message(self, account: Account, lead: LeadRef, *, text: str, conversation_id: str | None,
                     subject: str | None, inmail: bool, key: str) -> ActionResult:
        return self._done(account, lead, "inmail" if inmail else "message", text=text, subject=subject,
                          conversation_id=conversation_id)

    def withdraw(self, account: Account, lead: LeadRef, *, invitation_id: str | None, key: str) -> ActionResult:
        return self._done(account, lead, "withdraw")

    def find_action(self, account: Account, lead: LeadRef, *, action: str, key: str,
                    since: dt.datetime) -> ActionResult | None:
        return None

    def poll_events(self, account: Account, *, since: dt.datetime | None) -> PollResult:
        return PollResult(events=(), synced_until=self.clock())
