"""The `salesflow-campaign` driver: seqrun supervises a Salesflow campaign through the v1 public API.

A Salesflow campaign visits, invites, messages and withdraws on its own schedule. seqrun's part:
- `connect` imports the lead into the sender's campaign (`members/Import` with `campaignId` from the
  sender's `campaign_id`, `linkedInUrl`, and the lead's first/last name, occupation and location when
  its fields have them); the campaign sends the invitation when its turn comes;
- relationship: the member's `Status` bit field (GetContact by public identifier, or by the stored
  MemberId): connected (4); invite pending while pending (1), imported (32) or invitation sent (2);
- events: the campaign webhooks (`webhook.parse_webhook`, mounted by the daemon) and, as a safety
  net, polling: the campaign's members (`members/list-contacts?campaignId=`), their statuses in
  batches of 20 public identifiers (`POST members/list-contacts`), GetContact by MemberId for the
  rest. MEMBER_CONNECTED is an acceptance (at `ConnectedAt` when the answer gives it), `HasReply`
  a reply, MEMBER_INVITATION_WITHDRAWN a withdrawal; event ids are shared with the webhooks;
- `visit`, `message` and `withdraw` are refused (`seqrun validate` refuses such steps earlier);
- find_action: the driver's memo of keys, else whether the lead is a member of the campaign added
  since the action was recorded.
docs/providers/salesflow-campaign.md has the long version and the assumptions.
"""
from __future__ import annotations

import collections
import datetime as dt
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence

import httpx

from runner.providers import CAPABILITIES, why_not
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
from runner.providers.http import ActionMemo, RequestBudget
from runner.providers.salesflow_campaign import admin, webhook
from runner.providers.salesflow_campaign.api import CampaignAPI
from runner.providers.salesflow_campaign.members import MEMBER_ID, PROVIDER, Member, event_id, lead_key

UTC = dt.UTC
#: How long a member's status answers relationship questions: the engine asks right before a
#: connect, and the driver asks again inside it; an import updates it at once.
FRESH_FOR = dt.timedelta(seconds=60)
BATCH = 20  # public identifiers per `POST members/list-contacts` (seed 002 speaks of 20)


def utc_now() -> dt.datetime:
    return dt.datetime.now(UTC)


class CampaignProvider:
    """The `salesflow-campaign` driver. `client` comes from `runner.providers.http.make_client` with
    base URL `https://mvc.salesflow.io/api` unless the sender's `base_url` says otherwise."""

    name = PROVIDER
    capabilities = CAPABILITIES[PROVIDER]

    def __init__(self, client: httpx.Client, *, clock: Callable[[], dt.datetime] = utc_now,
                 budget: RequestBudget | None = None, sleep: Callable[[float], None] = time.sleep,
                 page_delay: float = 0.0, fresh_for: dt.timedelta = FRESH_FOR, owns_client: bool = False) -> None:
        self.client = client
        self.api = CampaignAPI(client, clock=clock, budget=budget)
        self._clock = clock
        self._owns_client = owns_client
        self.fresh_for = fresh_for
        # account id -> lead key (or member-N) -> what the driver knows of that member
        self._members: dict[str, dict[str, Member]] = collections.defaultdict(dict)
        self._memo = ActionMemo()
        self._accounts: dict[str, Account] = {}  # sender name -> its account, as met in calls (webhooks)
        self._lock = threading.Lock()  # webhooks are verified on the receiver's threads
        #: (id name, value) -> a lead's key, for a webhook naming a member only by its ids; the daemon
        #: sets it to a store lookup (`runner.store.lookups.lead_key_by_provider_id`)
        self.resolve: webhook.Resolve | None = None

    @property
    def requests(self) -> int:
        return self.api.requests

    def close(self) -> None:
        if self._owns_client:
            self.client.close()

    # --- Provider: reading ----------------------------------------------------------------------

    def relationship(self, account: Account, lead: LeadRef) -> Relationship:
        self._meet(account)
        member = self._fresh_member(account, lead)
        if member is None:
            return Relationship(connected=False, invite_pending=False)
        ids = {MEMBER_ID: member.member_id} if member.member_id else {}
        return Relationship(connected=member.connected, invite_pending=member.pending,
                            connected_at=member.connected_at or member.connected_seen if member.connected else None,
                            provider_ids=ids)

    def conversation(self, account: Account, lead: LeadRef) -> Conversation:
        """The campaign's thread cannot be read through the v1 API; a member with `HasReply` shows as a
        conversation holding one message from the lead (seen when the driver first saw the flag)."""
        member = self._fresh_member(account, lead)
        if member is None or not member.has_reply:
            return Conversation(None)
        at = member.reply_seen or self._now()
        who = member.member_id or member.key or lead.key
        return Conversation(f"salesflow-member-{who}", (Message(f"salesflow-reply-{who}", at, True),))

    # --- Provider: actions ------------------------------------------------------------------------

    def connect(self, account: Account, lead: LeadRef, *, note: str | None, key: str) -> ActionResult:
        self._meet(account)
        if (done := self._memo.replay(account, lead, "connect", key)) is not None:
            return done
        if note:
            raise ProviderError(ErrorKind.INVALID_INPUT, f"{PROVIDER} cannot send a note: {why_not(PROVIDER, 'note')}",
                                label="NOTE_NOT_SUPPORTED")
        member = self._fresh_member(account, lead)
        if member is not None and member.connected:
            raise ProviderError(ErrorKind.ALREADY_CONNECTED, f"{lead.key} is already connected (Salesflow member "
                                f"{member.member_id or '?'})", label="MEMBER_CONNECTED")
        if member is not None and member.pending:
            raise ProviderError(ErrorKind.INVITATION_PENDING, f"{lead.key} is already in campaign "
                                f"{member.campaign_id or '?'} (Salesflow member {member.member_id or '?'})",
                                label="MEMBER_PENDING")
        answer = admin.import_member(self.api, account, lead)
        now = self._now()
        imported = Member.read(answer) if isinstance(answer, Mapping) else Member(lead.key)
        imported.key = lead.key  # the URL we gave is the lead; Salesflow may spell it differently
        if imported.status is None:
            imported.status = 32  # MEMBER_IMPORTED: in the campaign, the invitation still to come
        imported.campaign_id = imported.campaign_id or admin.campaign_id(account)
        imported.date_added = imported.date_added or now
        self._remember_member(account, imported, now)
        ids = {MEMBER_ID: imported.member_id} if imported.member_id else {}
        result = ActionResult(performed_at=now, provider_id=imported.member_id, provider_ids=ids)
        return self._memo.remember(account, lead, "connect", key, result)

    def visit(self, account: Account, lead: LeadRef, *, key: str) -> ActionResult:
        raise self._cannot("visit")

    def send_message(self, account: Account, lead: LeadRef, *, text: str, conversation_id: str | None,
                     subject: str | None, inmail: bool, key: str) -> ActionResult:
        raise self._cannot("inmail" if inmail else "message")

    def withdraw(self, account: Account, lead: LeadRef, *, invitation_id: str | None, key: str) -> ActionResult:
        raise self._cannot("withdraw")

    # --- Provider: reconciliation and events ----------------------------------------------------

    def find_action(self, account: Account, lead: LeadRef, *, action: str, key: str,
                    since: dt.datetime) -> ActionResult | None:
        memo = self._memo.get((account.account_id, key))
        if memo is not None:
            done_action, lead_key_, result = memo
            return result if done_action == action and lead_key_ == lead.key and result.performed_at >= since else None
        if action != "connect":
            return None  # nothing else is ever performed through this provider
        member = self._fetch_member(account, lead)
        if member is None or member.campaign_id not in (None, admin.campaign_id(account)):
            return None
        if member.date_added is not None and member.date_added < since:
            return None  # a member from before the action: our import did not make it one
        ids = {MEMBER_ID: member.member_id} if member.member_id else {}
        return ActionResult(performed_at=max(since, member.date_added or since), provider_id=member.member_id,
                            provider_ids=ids)

    def poll_events(self, account: Account, *, since: dt.datetime | None) -> PollResult:
        """The campaign's members and their statuses; events newer than `since` (see the module doc)."""
        self._meet(account)
        now = self._now()
        campaign = admin.campaign_id(account)
        listed = [Member.read(item) for item in admin.list_campaign_members(self.api, account)]
        known = self._members[account.account_id]
        by_id = {m.member_id: m for m in known.values() if m.member_id}
        stale: list[Member] = []
        for item in listed:
            item.campaign_id = item.campaign_id or campaign
            mine = (by_id.get(item.member_id) if item.member_id else None) or \
                (known.get(item.key) if item.key else None)
            if mine is None:
                mine = Member(item.key)
            mine.merge(item, now)
            self._store(account, mine)
            if mine.settled:
                continue
            if item.status is None or item.key is None:
                stale.append(mine)
        self._read_statuses(account, stale, now)
        found = {e.event_id: e for m in list(known.values()) if m.campaign_id in (None, campaign)
                 for e in self._events(account, campaign, m) if since is None or e.occurred_at > since}
        events = sorted(found.values(), key=lambda e: (e.occurred_at, e.event_id))
        return PollResult(tuple(events), synced_until=max([now] + [e.occurred_at for e in events]))

    def _read_statuses(self, account: Account, members: list[Member], now: dt.datetime) -> None:
        """Statuses in batches of public identifiers; GetContact by MemberId for the rest."""
        by_key = [m for m in members if m.key]
        for start in range(0, len(by_key), BATCH):
            batch = by_key[start:start + BATCH]
            answers = admin.contacts_by_identifiers(self.api, account, [m.key for m in batch if m.key])
            for item in answers:
                answer = Member.read(item)
                target = next((m for m in batch if answer.key == m.key
                               or (answer.member_id and answer.member_id == m.member_id)), None)
                if target is not None:
                    target.merge(answer, now)
        for member in members:
            if (member.checked_at is None or member.checked_at < now) and member.member_id:
                contact = admin.contact_by_member_id(self.api, account, member.member_id)
                if contact is not None:
                    member.merge(Member.read(contact), now)
                    self._store(account, member)

    def _events(self, account: Account, campaign: str, member: Member) -> Iterable[ProviderEvent]:
        who = member.who
        if who is None:
            return
        data = {MEMBER_ID: member.member_id, "campaign_id": campaign}
        if member.connected:
            at = member.connected_at or member.connected_seen or self._now()
            if member.date_added is not None and member.connected_at is not None and member.connected_at < \
                    member.date_added and member.connected_seen is not None:
                # Connected before it joined the campaign: the campaign found out, and so do we, now.
                at = member.connected_seen
            yield ProviderEvent(event_id(account.sender, who, "accepted"), "accepted", at,
                                account.account_id, member.key, data=data)
        if member.has_reply:
            at = member.reply_seen or self._now()
            yield ProviderEvent(event_id(account.sender, who, "replied"), "replied", at,
                                account.account_id, member.key, data=data)
        if member.withdrawn:
            at = member.withdrawn_seen or self._now()
            yield ProviderEvent(event_id(account.sender, who, "invite_withdrawn"), "invite_withdrawn",
                                at, account.account_id, member.key, data=data)

    def verify_and_parse(self, headers: Mapping[str, str], body: bytes, *, secrets: Sequence[str],
                         received_at: dt.datetime, path: str = "") -> list[ProviderEvent]:
        """A campaign webhook (runner.webhooks' contract): the sender's token in the URL below
        `/webhooks/salesflow-campaign/` (`path`: `{sender}/{token}`), then the member's event. The
        account is the sender's as this driver has met it (None before its first call for it)."""
        sender = webhook.verify_path(path, secrets)
        with self._lock:
            account = self._accounts.get(sender)
        return webhook.parse_webhook(body, sender=sender, account_id=account.account_id if account else None,
                                     received_at=received_at, resolve=self.resolve)

    # --- senders check and the campaign's set-up (admin.py has the calls) -------------------------

    def check(self, account: Account) -> SenderCheck:
        self._meet(account)
        return admin.check(self.api, account)

    def setup_webhook(self, account: Account, url: str) -> admin.WebhookChange:
        """Create the webhook for `url` and attach it to the campaign for runOn 1, 2, 7 (idempotent)."""
        self._meet(account)
        return admin.ensure_webhook(self.api, account, url)

    def remove_webhook(self, account: Account, url: str) -> admin.WebhookChange:
        return admin.remove_webhook(self.api, account, url)

    def campaign_members(self, account: Account) -> list[admin.CampaignMember]:
        """Every member of the sender's campaign, for `seqrun leads import --from-campaign`."""
        return admin.campaign_members(self.api, account)

    def remove_member(self, account: Account, lead: LeadRef) -> str | None:
        """DeleteContact of the lead from the sender's campaign (`seqrun leads block`); its MemberId,
        or None when it is not a member there."""
        removed = admin.delete_member(self.api, account, lead, lead.provider_ids.get(MEMBER_ID))
        self._members[account.account_id].pop(lead.key, None)
        return removed

    # --- helpers ----------------------------------------------------------------------------------

    def _now(self) -> dt.datetime:
        return self._clock().astimezone(UTC)

    def _meet(self, account: Account) -> None:
        """Remember the sender's account: a webhook names only the sender (in its URL)."""
        with self._lock:
            self._accounts[account.sender] = account

    def _cannot(self, ability: str) -> ProviderError:
        return ProviderError(ErrorKind.INVALID_INPUT, f"{PROVIDER} cannot {ability}: {why_not(PROVIDER, ability)}",
                             label="NOT_SUPPORTED")

    def _fresh_member(self, account: Account, lead: LeadRef) -> Member | None:
        """The member as known within `fresh_for`, else as Salesflow tells it now."""
        member = self._members[account.account_id].get(lead.key)
        now = self._now()
        if member is not None and member.checked_at is not None and member.checked_at <= now < \
                member.checked_at + self.fresh_for:
            return member
        return self._fetch_member(account, lead)

    def _fetch_member(self, account: Account, lead: LeadRef) -> Member | None:
        """GetContact by the stored MemberId, else by public identifier; None: not a member."""
        known = self._members[account.account_id].get(lead.key)
        stored = lead.provider_ids.get(MEMBER_ID) or (known.member_id if known else None)
        item = admin.contact_by_member_id(self.api, account, stored) if stored else None
        if item is None and _public_identifier(lead.key):
            item = admin.contact_by_identifier(self.api, account, lead.key)
            if item is not None and item.get("Status") is None and item.get("MemberId"):
                item = admin.contact_by_member_id(self.api, account, str(item["MemberId"])) or item
        now = self._now()
        if item is None:
            self._members[account.account_id].pop(lead.key, None)
            return None
        answer = Member.read(item)
        answer.key = lead.key
        member = known if known is not None else Member(lead.key)
        member.merge(answer, now)
        member.checked_at = now
        self._store(account, member)
        return member

    def _remember_member(self, account: Account, member: Member, now: dt.datetime) -> None:
        member.checked_at = now
        member.note_seen(now)
        self._store(account, member)

    def _store(self, account: Account, member: Member) -> None:
        known = self._members[account.account_id]
        if member.key is not None and member.member_id is not None:
            known.pop(f"member-{member.member_id}", None)  # known by its profile from now on
        who = member.who
        if who is not None:
            known[who] = member



def _public_identifier(key: str) -> bool:
    """A public handle (`jane-doe`), not a Sales Navigator id (`sn:…`) or a member token (`ACoA…`)."""
    return bool(key) and not key.startswith("sn:") and not key.startswith("ACoA")


__all__ = ["CampaignProvider", "lead_key"]
