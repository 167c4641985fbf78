"""The provider-neutral interface between the engine and whatever acts on LinkedIn.

Designed against the three real APIs (see shared research): Salesflow (ids resolved from profile
URLs, acceptance by webhook or polling, replies only through inbox syncs, withdraw by invitation
id), Edges (everything by profile URL, polling only, error labels with `postponed_until`),
ConnectSafely (vanity ids or URNs, message webhooks, withdraw by profile id). So:

- every call takes the sender's `Account` and a `LeadRef`; a driver may cache provider ids
  (profile id, URN, invitation id) on the returned records, and the engine stores them in
  `LeadRef.provider_ids` for later calls;
- acceptance and replies arrive either through `poll_events` (the engine calls it per sender,
  walking newest to oldest down to a stored cursor minus an overlap) or through `parse_webhook`
  (the daemon); both produce `ProviderEvent`s with a stable `event_id` for de-duplication;
- `send_message` goes into `conversation_id` when one is known (the thread an invite with a note
  created) and starts a new conversation otherwise;
- `find_action` answers "did the action with this idempotency key happen?" after a crash, so the
  engine never resends blindly;
- failures are `ProviderError`s with a kind from one vocabulary (seed 001's labels), mapped by each
  driver from its own statuses and bodies.

Drivers never read the clock for decisions the engine makes; the sandbox takes an injected clock so
that a simulation runs in virtual time.
"""
from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol


class ErrorKind(str, enum.Enum):  # noqa: UP042 - a StrEnum would change how str() and f-strings show a kind
    """What went wrong, in provider-neutral terms. The engine's reaction is fixed per kind."""

    LIMIT_REACHED = "LIMIT_REACHED"  # provider-side daily limit; retry at `retry_at` (postponed_until)
    NOT_CONNECTED = "NOT_CONNECTED"  # message needs a connection; back to the invite path
    ALREADY_CONNECTED = "ALREADY_CONNECTED"  # invite not needed; counts as accepted
    INVITATION_PENDING = "INVITATION_PENDING"  # an invite is already out; wait for acceptance
    PROFILE_NOT_ACCESSIBLE = "PROFILE_NOT_ACCESSIBLE"  # deleted, blocked or moved; lead fails
    INVALID_INPUT = "INVALID_INPUT"  # the request was wrong; lead fails, reason kept
    AUTH_EXPIRED = "AUTH_EXPIRED"  # sender's LinkedIn session no longer works; pause sender until re-auth
    API_KEY_REJECTED = "API_KEY_REJECTED"  # the provider refused our API key (401/402/403): a configuration
    # error, not the LinkedIn session; pause the sender with "API key rejected"
    RATE_LIMITED = "STATUS_429"  # raw rate limiting; exponential backoff (or `retry_at`)
    TRANSIENT = "TRANSIENT"  # 5xx, timeouts, network errors, LK_ERROR; exponential backoff
    NOT_FOUND = "NOT_FOUND"  # e.g. withdraw of an invitation that no longer exists
    NOT_READY = "NOT_READY"  # the provider cannot act safely yet (Salesflow: no finished inbox sync to check
    # for replies); the sender's action waits until `retry_at`, which is not a failure of the lead

    @property
    def retryable(self) -> bool:
        return self in (ErrorKind.RATE_LIMITED, ErrorKind.TRANSIENT, ErrorKind.LIMIT_REACHED, ErrorKind.NOT_READY)


class ProviderError(Exception):
    def __init__(self, kind: ErrorKind, message: str = "", *, retry_at: dt.datetime | None = None,
                 status: int | None = None, label: str | None = None) -> None:
        self.kind = kind
        self.message = message or kind.value
        self.retry_at = retry_at  # postponed_until / Retry-After / holdUntil, UTC
        self.status = status  # HTTP status when there was one
        self.label = label  # the provider's own error label, for the audit log
        super().__init__(f"{kind.value}: {self.message}")


@dataclass(frozen=True, slots=True)
class Account:
    """A sender as the provider sees it. Credentials are resolved from environment variables."""

    sender: str  # seqrun's name for the sender
    account_id: str  # X-AccountId / identity uid / accountId
    account_type: str = "classic"  # classic | sales_navigator
    profile_id: str | None = None  # the sender's own LinkedIn profile id (to tell who wrote last)
    credentials: Mapping[str, str] = field(default_factory=dict)
    #: provider-specific settings of the sender from seqrun.yaml (Salesflow campaigns: campaign_id)
    settings: Mapping[str, str] = field(default_factory=dict)

    def __repr__(self) -> str:  # never show credentials
        return f"Account(sender={self.sender!r}, account_id={self.account_id!r}, account_type={self.account_type!r})"


@dataclass(frozen=True, slots=True)
class LeadRef:
    """A lead as drivers need it. `key` is seqrun's normalised profile key (public id or SN id)."""

    key: str
    profile_url: str
    provider_ids: Mapping[str, str] = field(default_factory=dict)  # e.g. {"profile_id": "ACoAA…"}
    #: the lead's fields (full_name, company_name, …) for providers that take them along (an import)
    fields: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Relationship:
    connected: bool
    invite_pending: bool
    invitation_id: str | None = None  # needed by some providers to withdraw
    connected_at: dt.datetime | None = None
    provider_ids: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Message:
    message_id: str
    sent_at: dt.datetime
    from_lead: bool  # True when the lead wrote it, False when the sender did


@dataclass(frozen=True, slots=True)
class Conversation:
    """The sender's thread with one lead, as fresh as the provider can make it (sync-before-send)."""

    conversation_id: str | None  # None: no thread exists
    messages: tuple[Message, ...] = ()  # newest last; may be only the recent ones

    @property
    def exists(self) -> bool:
        return self.conversation_id is not None

    @property
    def last_message(self) -> Message | None:
        return self.messages[-1] if self.messages else None

    def lead_wrote_since(self, since: dt.datetime) -> bool:
        return any(m.from_lead and m.sent_at >= since for m in self.messages)


@dataclass(frozen=True, slots=True)
class ActionResult:
    performed_at: dt.datetime
    provider_id: str | None = None  # message id, invitation id, …
    conversation_id: str | None = None  # set by send_message (and by connect on providers that know it)
    invitation_id: str | None = None
    provider_ids: Mapping[str, str] = field(default_factory=dict)  # ids learnt about the lead


EVENT_KINDS = ("accepted", "replied", "invite_withdrawn", "auth_expired", "auth_restored")


@dataclass(frozen=True, slots=True)
class ProviderEvent:
    """Something that happened on LinkedIn. `event_id` is stable across re-deliveries and polls."""

    event_id: str
    kind: str  # one of EVENT_KINDS
    occurred_at: dt.datetime
    account_id: str | None = None  # whose account; None when the payload does not say
    lead_key: str | None = None  # normalised profile key when the payload identifies the lead
    conversation_id: str | None = None
    data: Mapping[str, Any] = field(default_factory=dict)  # custom data echoed back, raw fields


@dataclass(frozen=True, slots=True)
class PollResult:
    events: tuple[ProviderEvent, ...]
    #: when the sync started; the engine stores it as the cursor afterwards. None: the provider's
    #: sync has not finished (Salesflow's inbox arrives by webhook), so the cursor stays
    synced_until: dt.datetime | None


class Provider(Protocol):
    """What every driver implements. All methods may raise ProviderError."""

    name: str
    #: Actions this provider can perform: a subset of visit, connect, message, inmail, withdraw.
    capabilities: frozenset[str]

    def relationship(self, account: Account, lead: LeadRef) -> Relationship: ...

    def conversation(self, account: Account, lead: LeadRef) -> Conversation: ...

    def visit(self, account: Account, lead: LeadRef, *, key: str) -> ActionResult: ...

    def connect(self, account: Account, lead: LeadRef, *, note: str | None, key: str) -> ActionResult: ...

    def send_message(self, account: Account, lead: LeadRef, *, text: str, conversation_id: str | None,
                     subject: str | None, inmail: bool, key: str) -> ActionResult: ...

    def withdraw(self, account: Account, lead: LeadRef, *, invitation_id: str | None, key: str) -> ActionResult: ...

    def find_action(self, account: Account, lead: LeadRef, *, action: str, key: str,
                    since: dt.datetime) -> ActionResult | None:
        """Reconciliation after a crash: the result if the action keyed `key` happened, else None."""
        ...

    def poll_events(self, account: Account, *, since: dt.datetime | None) -> PollResult:
        """Acceptances and replies newer than `since` (None: everything the provider keeps)."""
        ...

    # Optional, where a provider needs them (the engine and runner.webhooks look them up):
    #   poll_due(account) -> datetime | None: a poll wanted sooner than the engine's schedule;
    #   verify_and_parse(headers, body, *, secrets, received_at) -> list[ProviderEvent]: webhooks;
    #   account_limits(account) -> dict[action, int]: the provider's own daily caps (seqrun's stay below).


@dataclass(frozen=True, slots=True)
class SenderCheck:
    """What `seqrun senders check` learns from a provider about one sender."""

    ready: bool  # credentials accepted and the LinkedIn account usable
    credentials: str  # "ok" | "rejected" | "missing"
    account_status: str  # "ok" | "auth expired" | "unknown" | …
    profile_id: str | None = None  # the sender's own LinkedIn id, as the provider names it
    limits: Mapping[str, Any] = field(default_factory=dict)  # the provider's own limits, where it tells them
    problem: str | None = None  # what is wrong and what to do, when not ready
    details: Mapping[str, Any] = field(default_factory=dict)  # more the provider tells (a campaign's status)
