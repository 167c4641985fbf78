"""A fake Salesflow v1 API (seed 002): campaigns over the sandbox's simulated LinkedIn, over HTTP.

`CampaignFake` is the app (`handle(method, target, headers, body)`), served by `FakeHTTPServer`
for tests, `seqrun fake salesflow-campaign` and `simulate --wire`. The endpoints of seed 002 under
`/api` (the fake serves the mvc and the app host alike), authenticated by the `token` and
`accountId` query parameters; errors as `{"Status": …, "Message": …}` with the seed's statuses.
What the campaigns do on their own (`fake_campaign.Campaigns`) happens as the fake's clock passes
it, checked at every request and every clock move; the campaign webhooks attached through the API
are then delivered with the seed's payload. Like Salesflow, it keeps no idempotency keys; the
ledger records the imports (`removed`: the members deleted through the API).

Shapes, as the seed shows them: GetContact answers `Status` as names ("MEMBER_PENDING,
MEMBER_ERROR"), `POST members/list-contacts` as a number (both forms exist in the docs); ListContacts
by campaign carries only the sample's fields (no public identifier, no status). GetContact and
`POST members/list-contacts` also carry `ConnectedAt`, `HasReply` and `DateAdded`, the webhook's
member fields (an assumption: docs/providers/salesflow-campaign.md).

Control endpoints (JSON; docs/providers/salesflow-campaign.md): GET/POST /_fake/clock,
POST|DELETE /_fake/errors, POST /_fake/latency, GET /_fake/ledger, GET /_fake/activity,
GET /_fake/deliveries, POST /_fake/campaigns, POST /_fake/accounts, POST /_fake/profiles.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import random
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from runner.language.urls import normalize_profile_url
from runner.providers.fakeserver import FakeClock, Reply, rule_fires
from runner.providers.salesflow_campaign.api import status_names
from runner.providers.salesflow_campaign.fake_campaign import (
    RUN_ON_NAMES,
    Campaign,
    Campaigns,
    Delivery,
    FakeMember,
    Pace,
)
from runner.providers.salesflow_campaign.fake_shapes import FakeError, contact, iso, listed_contact, webhook_payload
from runner.providers.sandbox import SandboxProvider

PREFIX = "/api"
#: Errors `/_fake/errors` can inject, by status (seed 002's codes, and what any API answers).
INJECTABLE = {403: "Invalid token/account", 404: "Not found", 409: "Conflict",
              422: "Request cannot be processed", 429: "Too many requests", 500: "Internal server error",
              503: "Service unavailable"}


@dataclass
class Rule:
    status: int
    route: str | None  # e.g. "members/Import"; None: every API route
    count: int | None
    probability: float | None
    message: str | None


class CampaignFake:
    """The fake Salesflow v1 API; see the module docstring."""

    #: `members/Import` carries no key of ours: simulate --wire compares by (account, action, lead).
    keyed_ledger = False

    def __init__(self, *, clock: FakeClock | None = None, seed: int = 0, tokens: set[str] | None = None,
                 sandbox: Mapping[str, Any] | None = None, pace: Pace | None = None,
                 accounts: Mapping[str, list[int]] | None = None, sleep: Callable[[float], None] = time.sleep,
                 deliver: Callable[[str, Mapping[str, Any]], int | None] | None = None,
                 lose_share: float = 0.0) -> None:
        self.clock = clock or FakeClock()
        self._world_time: dt.datetime | None = None
        self.world = SandboxProvider(clock=self._world_now, seed=seed, **dict(sandbox or {}))
        self.campaigns = Campaigns(self.world, self._set_world_time, pace)
        self.tokens = tokens  # None: any non-empty token is accepted
        self.fixed_accounts = accounts is not None  # only these accounts (and campaigns) exist
        for account, campaign_ids in (accounts or {}).items():
            self.campaigns.account(account)
            for number in campaign_ids:
                self.campaigns.campaign(account, int(number))
        self.ledger: list[dict[str, Any]] = []  # imports: the actions seqrun performs here
        self.removed: list[dict[str, Any]] = []  # members deleted through the API (DeleteContact)
        self.deliveries: list[dict[str, Any]] = []
        self.webhooks: dict[int, dict[str, Any]] = {}
        self.requests: dict[str, int] = {}
        self.latency_ms = 0.0
        self._rules: list[Rule] = []
        self._random = random.Random(seed)
        self._webhook_ids = iter(range(10265, 10**9))
        self._attachment_ids = iter(range(27830, 10**9))
        self._lock = threading.RLock()
        self._sleep = sleep
        self._deliver = deliver or _post
        self._seed = seed
        #: the share of webhook deliveries lost on the way (the same ones for the same seed), as real
        #: ones sometimes are: what polling is there to catch
        self.lose_share = lose_share

    # --- clock --------------------------------------------------------------------------------------

    def _world_now(self) -> dt.datetime:
        return self._world_time or self.clock()

    def _set_world_time(self, when: dt.datetime | None) -> None:
        self._world_time = when

    # --- dispatch -----------------------------------------------------------------------------------

    def handle(self, method: str, target: str, headers: Mapping[str, str], body: bytes) -> Reply:
        if self.latency_ms:
            self._sleep(self.latency_ms / 1000)
        split = urllib.parse.urlsplit(target)
        path, query = split.path, dict(urllib.parse.parse_qsl(split.query))
        try:
            data = json.loads(body) if body.strip() else None
        except ValueError:
            return self._error(FakeError(400, "body is not valid JSON"))
        try:
            with self._lock:
                owed = self.campaigns.catch_up(self.clock())
                if path.startswith("/_fake/"):
                    reply = self._json(200, self._control(method, path[len("/_fake/"):], data))
                elif path.startswith(PREFIX + "/"):
                    reply = self._api(method, path[len(PREFIX) + 1:].strip("/"), query, data)
                else:
                    raise FakeError(404, f"no route {method} {path}")
                owed += self.campaigns.catch_up(self.clock())  # a clock move or a campaign started
                sends = self._owed(owed)
        except FakeError as err:
            return self._error(err)
        self._send(sends)
        return reply

    def _api(self, method: str, route: str, query: Mapping[str, str], data: Any) -> Reply:
        self.requests[route] = self.requests.get(route, 0) + 1
        scoped = route != "accounts/list"
        account = self._authorise(query, scoped)
        rule = self._injected(route)
        if rule is not None:
            raise FakeError(rule.status, rule.message or f"injected by the fake: {INJECTABLE[rule.status]}",
                            headers={"Retry-After": "60"} if rule.status == 429 else None)
        now = self.clock()
        parts = route.split("/")
        if route == "accounts/list" and method == "GET":
            return self._json(200, [{"AccountId": _number(a), "AccountEmail": f"{a}@example.com", "Status": s}
                                    for a, s in self.campaigns.accounts.items()])
        if route == "campaigns/list-campaigns" and method == "GET":
            return self._json(200, [{"CampaignId": c.campaign_id, "CampaignName": c.name, "Status": c.status}
                                    for c in self.campaigns.campaigns.values() if c.account == account])
        if route == "campaigns/start" and method == "POST":
            return self._start(account, query, now)
        if route == "statistics/GetCampaignStatistics" and method == "GET":
            return self._json(200, self._statistics(self._campaign(account, query), now))
        if route.lower() == "members/import" and method in ("GET", "POST"):
            return self._import(account, query, now)
        if route == "members" and method == "GET":
            return self._by_identifier(account, query)
        if route == "members/list-contacts" and method == "GET":
            campaign = self._campaign(account, query)
            members = [m for m in self.campaigns.members.values()
                       if m.campaign_id == campaign.campaign_id and m.state != "deleted"]
            return self._json(200, [listed_contact(m) for m in members])
        if route == "members/list-contacts" and method == "POST":
            return self._list_by_identifiers(account, data)
        if len(parts) == 2 and parts[0] == "members" and parts[1].isdigit():
            return self._member(method, account, int(parts[1]), query, data, now)
        if parts[0] == "webhooks" and len(parts) == 2:
            return self._webhooks(method, parts[1], account, query, data)
        raise FakeError(404, f"no route {method} /api/{route}")

    def _authorise(self, query: Mapping[str, str], scoped: bool) -> str:
        token = query.get("token", "")
        if not token or (self.tokens is not None and token not in self.tokens):
            raise FakeError(403, "Invalid token/account")
        if not scoped:
            return ""
        account = query.get("accountId", "")
        if not account or (self.fixed_accounts and account not in self.campaigns.accounts):
            raise FakeError(403, "Invalid token/account")
        self.campaigns.account(account)
        return account

    def _campaign(self, account: str, query: Mapping[str, str]) -> Campaign:
        raw = query.get("campaignId", "")
        if not raw.isdigit():
            raise FakeError(422, "campaignId is required")
        found = self.campaigns.campaigns.get(int(raw))
        if found is None and not self.fixed_accounts:
            found = self.campaigns.campaign(account, int(raw))
        if found is None or found.account != account:
            raise FakeError(404, "Campaign not found")
        return found

    # --- members ------------------------------------------------------------------------------------

    def _import(self, account: str, query: Mapping[str, str], now: dt.datetime) -> Reply:
        campaign = self._campaign(account, query)
        url = query.get("linkedInUrl", "")
        try:
            key, canonical = normalize_profile_url(url)
        except ValueError as exc:
            raise FakeError(422, f"linkedInUrl is not a LinkedIn profile URL ({exc})") from None
        existing = self.campaigns.find(account, key)
        if existing is not None:
            raise FakeError(409, f"Member already exists in campaign {existing.campaign_id}")
        names = {"first_name": query.get("firstName"), "last_name": query.get("lastName"),
                 "occupation": query.get("occupation"), "location": query.get("location")}
        member = self.campaigns.import_member(campaign, key, canonical, now, names)
        self.ledger.append({"at": iso(now), "account_id": account, "campaign_id": campaign.campaign_id,
                            "action": "connect", "route": "members/Import", "lead": key,
                            "linkedin_profile_url": canonical, "member_id": member.member_id, "seqrun_key": None})
        return self._json(200, contact(member, self.campaigns))

    def _by_identifier(self, account: str, query: Mapping[str, str]) -> Reply:
        identifier = query.get("publicIdentifier", "")
        member = self.campaigns.find(account, identifier.lower()) if identifier else None
        if member is None:
            raise FakeError(404, "Member not found")
        return self._json(200, contact(member, self.campaigns))

    def _list_by_identifiers(self, account: str, data: Any) -> Reply:
        identifiers = data.get("PublicIdentifiers") if isinstance(data, dict) else None
        if not isinstance(identifiers, list) or not identifiers or \
                not all(isinstance(i, str) and i.strip() for i in identifiers):
            raise FakeError(422, "PublicIdentifiers can't be null or empty, nor hold an empty element")
        found = [self.campaigns.find(account, i.strip().lower()) for i in identifiers]
        return self._json(200, [contact(m, self.campaigns, status_as_number=True) for m in found if m is not None])

    def _member(self, method: str, account: str, member_id: int, query: Mapping[str, str], data: Any,
                now: dt.datetime) -> Reply:
        member = self.campaigns.members.get(member_id)
        if member is None or member.account != account or member.state == "deleted":
            raise FakeError(404, "Member not found")
        if method == "GET":
            return self._json(200, contact(member, self.campaigns))
        if method == "DELETE":
            self.campaigns.delete(member, now)
            self.removed.append({"at": iso(now), "account_id": account, "campaign_id": member.campaign_id,
                                 "lead": member.key, "member_id": member.member_id})
            return self._json(200, {"Status": 204, "Message": None})
        if method == "POST":
            for name, field_ in (("firstName", "first_name"), ("lastName", "last_name"), ("location", "location"),
                                 ("occupation", "occupation")):
                value = next((v for k, v in (data or {}).items() if k.lower() == name.lower()), None)
                if isinstance(value, str):
                    setattr(member, field_, value)
            return self._json(200, contact(member, self.campaigns))
        raise FakeError(405, f"{method} not allowed on members/{member_id}")

    def _start(self, account: str, query: Mapping[str, str], now: dt.datetime) -> Reply:
        campaign = self._campaign(account, query)
        if campaign.status == "CAMPAIGN_RUNNING":
            raise FakeError(409, "Campaign is already running")
        self.campaigns.set_status(campaign, "CAMPAIGN_RUNNING", now)
        return self._json(200, {"Status": 200, "Message": "Campaign has been started."})

    def _statistics(self, campaign: Campaign, now: dt.datetime) -> dict[str, Any]:
        members = [m for m in self.campaigns.members.values() if m.campaign_id == campaign.campaign_id]
        alive = [m for m in members if m.state != "deleted"]
        return {"CampaignId": campaign.campaign_id, "Total": len(alive), "InMails": 0,
                "Imported": sum(m.state == "imported" for m in alive),
                "Connections": sum(m.connected_at is not None for m in alive),
                "Messages": sum(m.messaged_at is not None for m in alive),
                "Pending": sum(m.state in ("imported", "invited") for m in alive),
                "Replies": sum(m.has_reply for m in alive),
                "Withdrawn": sum(m.state == "withdrawn" for m in alive),
                "Invitations": sum(m.invited_at is not None for m in alive),
                "UpdatedAt": f"/Date({int(now.timestamp() * 1000)})/", "Elapsed": 0.01}

    # --- webhooks -----------------------------------------------------------------------------------

    def _webhooks(self, method: str, action: str, account: str, query: Mapping[str, str], data: Any) -> Reply:
        if action == "list" and method == "GET":
            return self._json(200, [self._hook(h) for h in self.webhooks.values() if h["account"] == account])
        if action == "create" and method in ("GET", "POST"):
            body = data if isinstance(data, dict) else {}
            name, url = body.get("Name"), body.get("Url")
            if not isinstance(name, str) or not name or len(name) > 255:
                raise FakeError(422, "Name is required (at most 255 characters)")
            if not isinstance(url, str) or not url.startswith(("http://", "https://")) or len(url) > 511:
                raise FakeError(422, "Url is required (an http(s) URL of at most 511 characters)")
            number = next(self._webhook_ids)
            self.webhooks[number] = {"account": account, "WebhookId": number, "Name": name, "Url": url,
                                     "DisableForMutedContacts": body.get("DisableForMutedContacts"), "attached": []}
            return self._json(200, self._hook(self.webhooks[number]))
        if action == "delete" and method == "DELETE":
            hook = self._find_hook(account, query.get("webhookId", ""))
            del self.webhooks[hook["WebhookId"]]
            return self._json(200, {"Status": 204, "Message": None})
        if action == "attach" and method == "POST":
            hook = self._find_hook(account, query.get("webhookId", ""))
            campaign = self._campaign(account, query)
            run_on = query.get("runOn", "")
            if not run_on.isdigit() or int(run_on) not in RUN_ON_NAMES:
                raise FakeError(422, "runOn must be 1, 2 or 7")
            if any(a["CampaignId"] == campaign.campaign_id and a["RunOn"] == int(run_on) for a in hook["attached"]):
                raise FakeError(409, "The webhook is already attached to this campaign for this event")
            item = {"WebhookCampaignId": next(self._attachment_ids), "CampaignId": campaign.campaign_id,
                    "RunOn": int(run_on)}
            hook["attached"].append(item)
            return self._json(200, item)
        if action == "detach" and method == "POST":
            wanted = query.get("webhookCampaignId", "")
            for hook in self.webhooks.values():
                if hook["account"] != account:
                    continue
                for item in hook["attached"]:
                    if str(item["WebhookCampaignId"]) == wanted:
                        hook["attached"].remove(item)
                        return self._json(200, {"Status": 204, "Message": None})
            raise FakeError(404, "Webhook campaign not found")
        raise FakeError(404, f"no route {method} /api/webhooks/{action}")

    def _find_hook(self, account: str, raw: str) -> dict[str, Any]:
        hook = self.webhooks.get(int(raw)) if raw.isdigit() else None
        if hook is None or hook["account"] != account:
            raise FakeError(404, "Webhook not found")
        return hook

    @staticmethod
    def _hook(hook: Mapping[str, Any]) -> dict[str, Any]:
        return {"WebhookId": hook["WebhookId"], "Name": hook["Name"], "Url": hook["Url"],
                "DisableForMutedContacts": hook["DisableForMutedContacts"],
                "AttachedWebhookCampaigns": [dict(a) for a in hook["attached"]]}

    def _owed(self, owed: list[Delivery]) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
        """(url, payload, log entry) for each attached webhook of each delivery, in time order."""
        sends = []
        for delivery in sorted(owed, key=lambda d: (d.at, d.member.member_id, d.run_on)):
            member = delivery.member
            campaign = self.campaigns.campaigns[member.campaign_id]
            for hook in self.webhooks.values():
                if any(a["CampaignId"] == campaign.campaign_id and a["RunOn"] == delivery.run_on
                       for a in hook["attached"]):
                    payload = webhook_payload(member, campaign, delivery.run_on)
                    entry = {"at": iso(delivery.at), "event": RUN_ON_NAMES[delivery.run_on],
                             "webhook_id": hook["WebhookId"], "member_id": member.member_id, "lead": member.key,
                             "status": None}
                    self.deliveries.append(entry)
                    if self._lost(member.member_id, delivery.run_on):
                        entry["status"] = "lost"
                        continue
                    sends.append((hook["Url"], payload, entry))
        return sends

    def _lost(self, member_id: int, run_on: int) -> bool:
        if self.lose_share <= 0:
            return False
        digest = hashlib.blake2b(f"{self._seed}:{member_id}:{run_on}".encode(), digest_size=8).digest()
        return int.from_bytes(digest, "big") / 2.0 ** 64 < self.lose_share

    def _send(self, sends: list[tuple[str, dict[str, Any], dict[str, Any]]]) -> None:
        """POST them outside the lock: the receiver may call this fake back."""
        for url, payload, entry in sends:
            entry["status"] = self._deliver(url, payload)

    def pump(self) -> int:
        """Let the campaigns catch up with the clock and send the webhooks owed (simulate --wire calls
        it before every tick, so that deliveries arrive when they happen on the virtual clock)."""
        with self._lock:
            sends = self._owed(self.campaigns.catch_up(self.clock()))
        self._send(sends)
        return len(sends)

    def redeliver(self, index: int) -> int | None:
        """Deliver the `index`th delivery again (a sender retrying), with the same payload."""
        with self._lock:
            entry = self.deliveries[index]
            member = self.campaigns.members[entry["member_id"]]
            run_on = next(n for n, name in RUN_ON_NAMES.items() if name == entry["event"])
            hook = self.webhooks[entry["webhook_id"]]
            payload = webhook_payload(member, self.campaigns.campaigns[member.campaign_id], run_on)
        return self._deliver(hook["Url"], payload)

    # --- injected errors ----------------------------------------------------------------------------

    def _injected(self, route: str) -> Rule | None:
        for rule in self._rules:
            if rule.route not in (None, route):
                continue
            if rule_fires(rule, self._random.random):
                return rule
        return None

    # --- control ------------------------------------------------------------------------------------

    def _control(self, method: str, name: str, data: Any) -> Any:
        data = data if isinstance(data, dict) else {}
        if name == "clock":
            if method == "POST":
                self.clock.control(data)
            return {"now": iso(self.clock())}
        if name == "errors":
            if method == "DELETE":
                self._rules.clear()
                return {"rules": 0}
            status = data.get("status")
            if status not in INJECTABLE:
                raise FakeError(400, f"unknown status {status!r}; expected one of {', '.join(map(str, INJECTABLE))}")
            count, probability = data.get("count"), data.get("probability")
            if (count is None) == (probability is None):
                raise FakeError(400, "give either count or probability")
            self._rules.append(Rule(int(status), data.get("route"), None if count is None else int(count),
                                    None if probability is None else float(probability), data.get("message")))
            return {"rules": len(self._rules)}
        if name == "latency":
            self.latency_ms = max(0.0, float(data.get("ms", 0)))
            return {"ms": self.latency_ms}
        if name == "ledger":
            return {"actions": list(self.ledger), "removed": list(self.removed)}
        if name == "activity":
            return {"activity": list(self.campaigns.activity)}
        if name == "deliveries":
            if method == "POST":
                share = data.get("lose_share", self.lose_share)
                if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0 <= share <= 1:
                    raise FakeError(400, "lose_share must be a number from 0 to 1")
                self.lose_share = float(share)
            return {"deliveries": list(self.deliveries), "lose_share": self.lose_share}
        if name == "campaigns":
            return self._control_campaign(data)
        if name == "accounts":
            account = str(data.get("account_id", ""))
            if not account:
                raise FakeError(400, "account_id is required")
            self.campaigns.accounts[account] = str(data.get("status", "ACCOUNT_ACTIVE"))
            return {"account_id": account, "status": self.campaigns.accounts[account]}
        if name == "profiles":
            return {"introduced": self._introduce(str(data.get("account_id", "")), data.get("linkedin_profile_urls"))}
        raise FakeError(404, f"no control endpoint /_fake/{name}")

    def _control_campaign(self, data: Mapping[str, Any]) -> Any:
        account = str(data.get("account_id", ""))
        if not account:
            raise FakeError(400, "account_id is required")
        raw = data.get("campaign_id")
        campaign = self.campaigns.campaign(account, None if raw is None else int(raw), data.get("name"))
        if "status" in data:
            if data["status"] not in ("CAMPAIGN_RUNNING", "CAMPAIGN_PAUSED", "CAMPAIGN_STOPPED"):
                raise FakeError(400, "status must be CAMPAIGN_RUNNING, CAMPAIGN_PAUSED or CAMPAIGN_STOPPED")
            self.campaigns.set_status(campaign, str(data["status"]), self.clock())
        pace = campaign.pace
        for key in ("invite_every_minutes", "message_delay_minutes", "withdraw_after_days"):
            if key in data:
                value = data[key]
                unit = "days" if key.endswith("days") else "minutes"
                setattr(pace, key.rsplit("_", 1)[0], None if value is None else dt.timedelta(**{unit: float(value)}))
        if "invites_per_day" in data:
            pace.invites_per_day = None if data["invites_per_day"] is None else int(data["invites_per_day"])
        return {"account_id": account, "campaign_id": campaign.campaign_id, "status": campaign.status}

    def _introduce(self, account: str, urls: Any) -> int:
        if not isinstance(urls, list) or not all(isinstance(u, str) for u in urls):
            raise FakeError(400, "linkedin_profile_urls must be a list of URLs")
        return self.introduce(account, urls)

    def introduce(self, account: str, urls: list[str]) -> int:
        """Profiles that exist in the simulated network from now on (see `EdgesFake.introduce`)."""
        now = self.clock()
        with self.world._lock:
            for url in urls:
                key, _ = normalize_profile_url(url)
                self.world._world.lead(account, key, now)
        return len(urls)

    def add_campaign(self, account: str) -> int:
        """A running campaign for `account` (simulate --wire gives each simulated sender one)."""
        with self._lock:
            return self.campaigns.campaign(account).campaign_id

    # --- replies ------------------------------------------------------------------------------------

    def _json(self, status: int, payload: Any, headers: Mapping[str, str] | None = None) -> Reply:
        return status, {"Content-Type": "application/json", **dict(headers or {})}, json.dumps(payload).encode()

    def _error(self, err: FakeError) -> Reply:
        return self._json(err.status, {"Status": err.status, "Message": err.message}, err.headers)


def _number(text: str) -> int | str:
    return int(text) if text.isdigit() else text


def _post(url: str, payload: Mapping[str, Any]) -> int | None:
    try:
        return httpx.post(url, json=dict(payload), timeout=10.0).status_code
    except httpx.HTTPError:
        return None


__all__ = ["CampaignFake", "Pace", "FakeMember", "status_names"]
