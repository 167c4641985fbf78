"""The Edges driver (edges.run, seed 001): every `Provider` call as live runs of Edges actions.

Wire (`api.EdgesAPI`): `POST {base}/actions/{slug}/run/live` with `X-API-Key`, body
`{"identity_ids": [identity], "input": {…}, "parameters": {…}}` (singular `input`); the answer is
the action's output itself. Lists follow `X-Pagination-Next`; errors map through `api.LABELS`.

How each question is answered (docs/providers/edges.md has the long version):
- relationship: `linkedin-extract-connections` (newest first, walked down to what is already known)
  and `linkedin-extract-sent-invitations` (all pages), cached per account for `fresh_for` (60 s);
- conversation: `linkedin-get-thread-url`, then `linkedin-extract-messages` of that thread; who wrote
  each message is told by comparing with the sender's own id from `linkedin-me` (`id`);
- events: connections newer than `since` are acceptances (the first sync, without `since`, is a
  baseline and reports none); conversations whose `last_message` is newer than `since` and not
  from the sender are replies;
- find_action: the driver's own memo of keys (same process), else what Edges shows: the lead's
  invitation sent since, our message in the thread since; a visit cannot be seen (None).
Every action input carries `custom_data: {"seqrun_key": key}` so that Edges' own logs name our key.
"""
from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from runner.language.urls import normalize_profile_url
from runner.providers import CAPABILITIES
from runner.providers.base import (
    Account,
    ActionResult,
    Conversation,
    ErrorKind,
    LeadRef,
    Message,
    PollResult,
    ProviderError,
    ProviderEvent,
    Relationship,
    SenderCheck,
)
from runner.providers.edges.api import PAGE_DELAY, SLUGS, EdgesAPI
from runner.providers.edges.api import text as _str
from runner.providers.edges.webhook import parse_webhook
from runner.providers.http import ActionMemo, RequestBudget, json_body, parse_time

log = logging.getLogger(__name__)
UTC = dt.UTC

#: How long connections and sent invitations read from Edges answer relationship questions. An
#: acceptance seen a minute late only delays a wait; our own invites and withdrawals update the
#: cache at once, and reconciliation always reads afresh.
FRESH_FOR = dt.timedelta(seconds=60)


def utc_now() -> dt.datetime:
    return dt.datetime.now(UTC)


@dataclass
class _Known:
    """What the driver knows about one account's LinkedIn, as of `at` (the driver's clock)."""

    at: dt.datetime | None = None
    connections: dict[str, tuple[dt.datetime, str]] = field(default_factory=dict)  # key -> (connected_at, id)
    newest: dt.datetime | None = None  # the newest connected_at seen: connection walks stop below it
    invitations: dict[str, dict[str, Any]] = field(default_factory=dict)  # key -> sent-invitation item
    threads: dict[str, str] = field(default_factory=dict)  # lead key -> linkedin_thread_url


class EdgesProvider:
    """The `edges` driver. `client` is built by `runner.providers.http.make_client` (base URL
    `https://api.edges.run/v1` unless the sender's `base_url` says otherwise)."""

    name = "edges"
    capabilities = CAPABILITIES["edges"]

    def __init__(self, client: httpx.Client, *, clock: Callable[[], dt.datetime] = utc_now,
                 budget: RequestBudget | None = None, sleep: Callable[[float], None] = time.sleep,
                 page_delay: float = PAGE_DELAY, fresh_for: dt.timedelta = FRESH_FOR,
                 owns_client: bool = False) -> None:
        self.client = client
        self.api = EdgesAPI(client, clock=clock, budget=budget, sleep=sleep, page_delay=page_delay)
        self._owns_client = owns_client
        self._clock = clock
        self.fresh_for = fresh_for
        self._me: dict[str, str] = {}
        self._known: dict[str, _Known] = {}
        self._memo = ActionMemo()

    @property
    def requests(self) -> int:
        """HTTP requests made, for reports."""
        return self.api.requests

    def close(self) -> None:
        """Close the client when the driver was given it to own (built for it by the registry)."""
        if self._owns_client:
            self.client.close()

    # --- Provider: reading ----------------------------------------------------------------------

    def relationship(self, account: Account, lead: LeadRef) -> Relationship:
        known = self._refresh(account)
        connection = known.connections.get(lead.key) or _by_profile_id(known, lead.provider_ids.get("edges_profile_id"))
        invitation = known.invitations.get(lead.key)
        ids = dict(self._ids(invitation or {}))
        if connection is not None:
            ids["edges_profile_id"] = connection[1]
            return Relationship(connected=True, invite_pending=False, connected_at=connection[0], provider_ids=ids)
        if invitation is not None:
            return Relationship(connected=False, invite_pending=True,
                                invitation_id=str(invitation.get("linkedin_invitation_urn") or "") or None,
                                provider_ids=ids)
        return Relationship(connected=False, invite_pending=False)

    def conversation(self, account: Account, lead: LeadRef) -> Conversation:
        url = self._thread_url(account, lead)
        if url is None:
            return Conversation(None)
        own = self.me(account)
        items = list(self.api.pages(account, SLUGS["messages"], {"linkedin_thread_url": url}, {}))
        messages = sorted((Message(str(m.get("message_id")), _time(m.get("delivered_at")),
                                   str(m.get("linkedin_profile_id")) != own) for m in items),
                          key=lambda m: (m.sent_at, m.message_id))
        thread_id = next((str(m["linkedin_thread_id"]) for m in items if m.get("linkedin_thread_id")), None)
        return Conversation(thread_id or _thread_id(url), tuple(messages))

    # --- Provider: actions ------------------------------------------------------------------------

    def visit(self, account: Account, lead: LeadRef, *, key: str) -> ActionResult:
        if (done := self._memo.replay(account, lead, "visit", key)) is not None:
            return done
        output = self.api.live(account, SLUGS["visit"], self._input(lead, key), {})
        ids = self._ids(output if isinstance(output, Mapping) else {})
        return self._memo.remember(account, lead, "visit", key, ActionResult(performed_at=self._now(), provider_ids=ids))

    def connect(self, account: Account, lead: LeadRef, *, note: str | None, key: str) -> ActionResult:
        if (done := self._memo.replay(account, lead, "connect", key)) is not None:
            return done
        sn_id = lead.provider_ids.get("sales_navigator_profile_id") or _sales_navigator_id(lead.key)
        if account.account_type == "sales_navigator" and sn_id:
            slug, data = SLUGS["connect_sn"], {"sales_navigator_profile_id": sn_id, "custom_data": {"seqrun_key": key}}
        else:
            slug, data = SLUGS["connect"], self._input(lead, key)
        output = self.api.live(account, slug, data, {"message": note} if note else {})
        out = output if isinstance(output, Mapping) else {}
        sent_at = _time(out.get("connection_sent_date"), self._now())
        if sent_at.date() == self._now().date() and sent_at.time() == dt.time():
            sent_at = self._now()  # Edges may give only the date; the call itself is the better time
        result = ActionResult(performed_at=min(sent_at, self._now()), provider_ids=self._ids(out))
        known = self._account(account)
        known.invitations[lead.key] = {"linkedin_profile_url": lead.profile_url, "sent_date": _iso(result.performed_at),
                                       **{k: v for k, v in out.items() if k.endswith("_id")}}
        return self._memo.remember(account, lead, "connect", key, result)

    def send_message(self, account: Account, lead: LeadRef, *, text: str, conversation_id: str | None,
                     subject: str | None, inmail: bool, key: str) -> ActionResult:
        action = "inmail" if inmail else "message"
        if (done := self._memo.replay(account, lead, action, key)) is not None:
            return done
        parameters: dict[str, Any] = {"message": text}
        if inmail:
            parameters["subject"] = subject or ""
        output = self.api.live(account, SLUGS[action], self._input(lead, key), parameters)
        out = output if isinstance(output, Mapping) else {}
        if out.get("is_sent") is False:
            raise ProviderError(ErrorKind.TRANSIENT, "Edges answered is_sent: false", label="NOT_SENT")
        url = out.get("linkedin_thread_url")
        if isinstance(url, str) and url:
            self._account(account).threads[lead.key] = url
        thread = out.get("linkedin_thread_id") or (_thread_id(url) if isinstance(url, str) and url else None)
        result = ActionResult(performed_at=min(_time(out.get("delivered_at"), self._now()), self._now()),
                              provider_id=_str(out.get("linkedin_message_id")),
                              conversation_id=_str(thread) or conversation_id, provider_ids=self._ids(out))
        return self._memo.remember(account, lead, action, key, result)

    def withdraw(self, account: Account, lead: LeadRef, *, invitation_id: str | None, key: str) -> ActionResult:
        if (done := self._memo.replay(account, lead, "withdraw", key)) is not None:
            return done
        known = self._refresh(account, force=True)
        invitation = known.invitations.get(lead.key)
        urn = str(invitation.get("linkedin_invitation_urn") or "") if invitation else ""
        if not urn:
            raise ProviderError(ErrorKind.NOT_FOUND, f"no pending invitation to {lead.key} in Edges' sent invitations",
                                label="NO_RESULT")
        if invitation_id is not None and invitation_id.startswith("urn:") and invitation_id != urn:
            raise ProviderError(ErrorKind.NOT_FOUND, f"invitation {invitation_id} is not pending", label="NO_RESULT")
        self.api.live(account, SLUGS["withdraw"],
                   {"linkedin_invitation_urn": urn, "linkedin_invitation_type": "CONNECTION",
                    "custom_data": {"seqrun_key": key}}, {})
        known.invitations.pop(lead.key, None)
        result = ActionResult(performed_at=self._now(), provider_id=urn, invitation_id=urn)
        return self._memo.remember(account, lead, "withdraw", key, result)

    # --- Provider: reconciliation and events ----------------------------------------------------

    def find_action(self, account: Account, lead: LeadRef, *, action: str, key: str,
                    since: dt.datetime) -> ActionResult | None:
        """See the module docstring; docs/providers/edges.md has the table per action."""
        memo = self._memo.get((account.account_id, key))
        if memo is not None:
            done_action, lead_key, result = memo
            ok = done_action == action and lead_key == lead.key and result.performed_at >= since
            return result if ok else None
        if action == "connect":
            known = self._refresh(account, force=True)
            invitation = known.invitations.get(lead.key)
            sent = _time(invitation.get("sent_date"), since) if invitation else None
            if invitation is not None and sent is not None and sent >= since:
                urn = _str(invitation.get("linkedin_invitation_urn"))
                return ActionResult(performed_at=sent, provider_id=urn, invitation_id=urn,
                                    provider_ids=self._ids(invitation))
            connection = known.connections.get(lead.key)
            if connection is not None and connection[0] >= since:  # sent and already accepted
                return ActionResult(performed_at=since, provider_ids={"edges_profile_id": connection[1]})
            return None
        if action in ("message", "inmail"):
            conversation = self.conversation(account, lead)
            ours = [m for m in conversation.messages if not m.from_lead and m.sent_at >= since]
            if not ours:
                return None
            return ActionResult(performed_at=ours[0].sent_at, provider_id=ours[0].message_id,
                                conversation_id=conversation.conversation_id)
        if action == "withdraw":
            known = self._refresh(account, force=True)
            if lead.key in known.invitations or lead.key in known.connections:
                return None  # still pending (not withdrawn) or accepted before the withdrawal
            return ActionResult(performed_at=since)
        if action == "visit":
            return None  # Edges keeps no list of visits: the visit is made again
        raise ProviderError(ErrorKind.INVALID_INPUT, f"unknown action {action!r}")

    def poll_events(self, account: Account, *, since: dt.datetime | None) -> PollResult:
        now = self._now()
        own = self.me(account)
        events: dict[str, ProviderEvent] = {}
        known = self._account(account)
        for item in self.api.pages(account, SLUGS["connections"], None, {},
                                stop=lambda item: since is not None and _time(item.get("connected_at"), now) <= since):
            at = _time(item.get("connected_at"), now)
            key = _lead_key(item)
            if key is None:
                continue
            known.connections[key] = (at, str(item.get("linkedin_profile_id")))
            # The first sync (no cursor yet) is a baseline: connections made before seqrun ever
            # looked are not acceptances of its invites.
            if since is not None and at > since:
                event_id = f"edges:{account.account_id}:accepted:{key}:{_iso(at)}"
                events[event_id] = ProviderEvent(event_id, "accepted", at, account.account_id, key,
                                                 data={"linkedin_profile_id": item.get("linkedin_profile_id")})
        for item in self.api.pages(account, SLUGS["conversations"], {}, {"read": True},
                                stop=lambda item: since is not None
                                and _time(item.get("last_activity_at"), now) <= since):
            last = item.get("last_message") or {}
            at = _time(last.get("delivered_at"), now)
            if str(last.get("linkedin_profile_id")) == own or (since is not None and at <= since):
                continue
            key = _participant_key(item, own)
            if key is None:
                continue
            thread = _str(item.get("linkedin_thread_id"))
            if isinstance(item.get("linkedin_thread_url"), str):
                known.threads[key] = item["linkedin_thread_url"]
            event_id = f"edges:{account.account_id}:replied:{thread}:{last.get('message_id')}"
            events[event_id] = ProviderEvent(event_id, "replied", at, account.account_id, key, thread,
                                             {"message_id": last.get("message_id")})
        ordered = sorted(events.values(), key=lambda e: (e.occurred_at, e.event_id))
        # Edges' clock is the authority on when things happened; a cursor behind its newest event
        # would bring that event again forever (the fake's clock may run ahead of ours).
        return PollResult(tuple(ordered), synced_until=max([now] + [e.occurred_at for e in ordered]))

    def parse_webhook(self, headers: Mapping[str, str], body: bytes, *, secret: str,
                      received_at: dt.datetime) -> list[ProviderEvent]:
        """Integration webhooks (AUTH_EXPIRED, AUTH_SUCCESS) behind the shared secret; see `webhook`."""
        return parse_webhook(headers, body, secret=secret, received_at=received_at)

    def verify_and_parse(self, headers: Mapping[str, str], body: bytes, *, secrets: Sequence[str],
                         received_at: dt.datetime) -> list[ProviderEvent]:
        """`runner.webhooks`' contract: `parse_webhook` with whichever of `secrets` the delivery carries."""
        refused: ProviderError | None = None
        for secret in secrets or [""]:
            try:
                return parse_webhook(headers, body, secret=secret, received_at=received_at)
            except ProviderError as err:
                if err.label != "BAD_SECRET":
                    raise
                refused = err
        assert refused is not None
        raise refused

    # --- senders check ----------------------------------------------------------------------------

    def me(self, account: Account) -> str:
        """The sender's own LinkedIn id (`linkedin-me` → `id`), once per process."""
        own = self._me.get(account.account_id)
        if own is None:
            output = self.api.live(account, SLUGS["me"], None, {})
            value = output.get("id") if isinstance(output, Mapping) else None
            if value is None:
                raise ProviderError(ErrorKind.TRANSIENT, "linkedin-me returned no id", label="NO_DATA_LOADED")
            own = self._me[account.account_id] = str(value)
        return own

    def check(self, account: Account) -> SenderCheck:
        """Key and session through `linkedin-me`; the provider's limits where Edges tells them."""
        try:
            own = self.me(account)
        except ProviderError as err:
            if err.kind is ErrorKind.API_KEY_REJECTED:
                return SenderCheck(False, "missing" if err.status is None else "rejected", "unknown",
                                   problem=f"{err.message}")
            if err.kind is ErrorKind.AUTH_EXPIRED:
                return SenderCheck(False, "ok", "auth expired", problem="the LinkedIn session of identity "
                                   f"{account.account_id} expired: reconnect LinkedIn in Edges, then "
                                   f"`seqrun senders resume {account.sender}`")
            return SenderCheck(False, "unknown", "unknown", problem=f"{err.kind.value}: {err.message}")
        return SenderCheck(True, "ok", "ok", profile_id=own, limits=self._limits(account))

    def _limits(self, account: Account) -> dict[str, Any]:
        """`GET /identities/{uid}/actions/{slug}/limits` per outreach action; absent ones are skipped."""
        found: dict[str, Any] = {}
        for action in ("visit", "connect", "message"):
            try:
                path = f"identities/{account.account_id}/actions/{SLUGS[action]}/limits"
                response = self.api.send(account, "GET", path)
            except ProviderError as err:
                log.info("sender %s: limits of %s not available: %s", account.sender, action, err.message)
                continue
            body = json_body(response)
            if isinstance(body, Mapping):
                found[action] = {k: body[k] for k in ("limit", "remaining", "window", "reset_at") if k in body}
        return found

    # --- the wire ---------------------------------------------------------------------------------

    # --- helpers ----------------------------------------------------------------------------------

    def _now(self) -> dt.datetime:
        return self._clock().astimezone(UTC)

    def _account(self, account: Account) -> _Known:
        return self._known.setdefault(account.account_id, _Known())

    def _refresh(self, account: Account, *, force: bool = False) -> _Known:
        """Connections (incrementally) and pending invitations (all), at most once per instant."""
        known = self._account(account)
        now = self._now()
        if known.at is not None and known.at <= now < known.at + self.fresh_for and not force:
            return known
        newest, seen = known.newest, known.newest
        for item in self.api.pages(account, SLUGS["connections"], None, {},
                                stop=lambda item: newest is not None and _time(item.get("connected_at"), now) < newest):
            key = _lead_key(item)
            if key is not None:
                at = _time(item.get("connected_at"), now)
                known.connections[key] = (at, str(item.get("linkedin_profile_id")))
                seen = at if seen is None else max(seen, at)
        # Only a walk that reached its end moves the mark: one cut short by an error is walked again.
        known.newest = seen
        invitations: dict[str, dict[str, Any]] = {}
        for item in self.api.pages(account, SLUGS["invitations"], None, {}):
            for key in (_lead_key(item), _sales_navigator_key(item)):  # a lead may be known by either URL
                if key is not None:
                    invitations[key] = dict(item)
        known.invitations = invitations
        for key in known.connections:
            known.invitations.pop(key, None)
        known.at = now
        return known

    def _thread_url(self, account: Account, lead: LeadRef) -> str | None:
        known = self._account(account)
        url = known.threads.get(lead.key)
        if url is not None:
            return url
        output = self.api.live(account, SLUGS["thread"], {"linkedin_profile_url": lead.profile_url}, {})
        found = output.get("linkedin_thread_url") if isinstance(output, Mapping) else None
        if isinstance(found, str) and found:
            known.threads[lead.key] = found  # a 1:1 thread never changes: worth keeping
            return found
        return None

    @staticmethod
    def _input(lead: LeadRef, key: str) -> dict[str, Any]:
        return {"linkedin_profile_url": lead.profile_url, "custom_data": {"seqrun_key": key}}

    @staticmethod
    def _ids(out: Mapping[str, Any]) -> dict[str, str]:
        ids = {}
        if out.get("linkedin_profile_id") is not None:
            ids["edges_profile_id"] = str(out["linkedin_profile_id"])
        if out.get("sales_navigator_profile_id"):
            ids["sales_navigator_profile_id"] = str(out["sales_navigator_profile_id"])
        return ids



def _iso(value: dt.datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _time(value: object, default: dt.datetime | None = None) -> dt.datetime:
    parsed = parse_time(value)
    if parsed is not None:
        return parsed
    if default is not None:
        return default
    return dt.datetime.min.replace(tzinfo=UTC)


def _lead_key(item: Mapping[str, Any]) -> str | None:
    url = item.get("linkedin_profile_url")
    if not isinstance(url, str) or not url:
        return None
    try:
        return normalize_profile_url(url)[0]
    except ValueError:
        return None


def _by_profile_id(known: _Known, profile_id: str | None) -> tuple[dt.datetime, str] | None:
    """A connection found by Edges' `linkedin_profile_id` (learnt from the invitation's answer): how a
    lead imported by a Sales Navigator URL is found in a list that names people by /in/ URL."""
    if not profile_id:
        return None
    return next((c for c in known.connections.values() if c[1] == profile_id), None)


def _sales_navigator_key(item: Mapping[str, Any]) -> str | None:
    """`sn:ID` for an item naming a Sales Navigator id: the key of a lead imported by its SN URL."""
    sn_id = item.get("sales_navigator_profile_id")
    return f"sn:{sn_id}" if isinstance(sn_id, str) and sn_id else None


def _sales_navigator_id(key: str) -> str | None:
    return key[3:] if key.startswith("sn:") else None


def _participant_key(item: Mapping[str, Any], own: str) -> str | None:
    for person in item.get("participants") or ():
        if isinstance(person, Mapping) and str(person.get("linkedin_profile_id")) != own:
            key = _lead_key(person)
            if key is not None:
                return key
    return None


def _thread_id(url: str) -> str:
    """`https://www.linkedin.com/messaging/thread/2-abc==/` -> `2-abc==`."""
    parts = [p for p in httpx.URL(url).path.split("/") if p]
    return parts[-1] if parts else url
