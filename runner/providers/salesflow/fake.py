"""A fake Salesflow API (new API): the sandbox's simulated LinkedIn served in Salesflow's shapes.

`SalesflowFake` is the app (`handle(method, target, headers, body)`), served by
`runner.providers.fakeserver.FakeHTTPServer` for tests, `seqrun fake salesflow` and
`simulate --wire`. What LinkedIn does (who accepts, who replies, when) is decided by a
`SandboxProvider` on the fake's clock; the endpoints are in `fake_api`, the webhooks it sends in
`fake_delivery`. Like Salesflow it keeps no idempotency keys; it records every action it performed
in a ledger, with the `Idempotency-Key` header it got (seqrun's key) and, for messages, whether the
message created the conversation or went into an existing one (and what opened that one).

Control endpoints (documented in docs/providers/salesflow.md), all JSON:
  GET  /_fake/clock; POST /_fake/clock {"now": ISO} | {"advance_seconds": n}
  POST /_fake/errors {"code", "endpoint": name|null, "count": n | "probability": p, "after": bool}
  DELETE /_fake/errors
  POST /_fake/latency {"ms": n}
  GET  /_fake/ledger                      -> {"actions": [...]}
  POST /_fake/auth {"account_id", "state": "expired"|"ok"}
  POST /_fake/profiles {"account_id", "linkedin_profile_urls": [...]}
  POST /_fake/deliver                     -> NEW_CONNECTION webhooks due now go out
  GET  /_fake/webhooks                    -> {"deliveries": [...], "syncs": {...}}
  POST /_fake/webhooks/hold {"count": n}; POST /_fake/webhooks/release
"""
from __future__ import annotations

import collections
import datetime as dt
import itertools
import json
import random
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from runner.language.urls import normalize_profile_url
from runner.providers.base import Account, ErrorKind, LeadRef, ProviderError
from runner.providers.fakeserver import FakeClock, Reply, rule_fires
from runner.providers.salesflow import fake_api
from runner.providers.salesflow.fake_delivery import Deliveries
from runner.providers.salesflow.fake_shapes import SalesflowError, iso, profile_id, unit
from runner.providers.sandbox import SandboxProvider

PREFIX = "/api/v1/"
#: Salesflow's documented default daily limits per account (getting-started/linkedin-limits).
DEFAULT_LIMITS = {"invitations": 15, "invitationsWithNote": 15, "followUps": 20, "openInMails": 20,
                  "profileViews": 20, "withdrawals": 40}
#: ledger action -> the limits field that caps it
LIMITED = {"connect": "invitations", "connect_note": "invitationsWithNote", "message": "followUps",
           "inmail": "openInMails", "withdraw": "withdrawals"}
#: code -> status for injected errors
INJECTABLE = {"DAILY_LIMIT_REACHED": 429, "TOO_MANY_REQUESTS": 429, "ACCOUNT_DISCONNECTED": 403,
              "NOT_CONNECTED": 409, "ALREADY_CONNECTED": 409, "INVITATION_PENDING": 409, "PROFILE_NOT_FOUND": 404,
              "INVITATION_NOT_FOUND": 404, "CONVERSATION_NOT_FOUND": 404, "CONVERSATION_EXISTS": 409,
              "VALIDATION_ERROR": 400, "UNAUTHORIZED": 401, "INTERNAL_ERROR": 500, "BAD_GATEWAY": 502}
#: sandbox error kinds -> (status, code)
FROM_SANDBOX = {
    ErrorKind.ALREADY_CONNECTED: (409, "ALREADY_CONNECTED"), ErrorKind.NOT_CONNECTED: (409, "NOT_CONNECTED"),
    ErrorKind.INVITATION_PENDING: (409, "INVITATION_PENDING"),
    ErrorKind.PROFILE_NOT_ACCESSIBLE: (404, "PROFILE_NOT_FOUND"),
    ErrorKind.AUTH_EXPIRED: (403, "ACCOUNT_DISCONNECTED"), ErrorKind.NOT_FOUND: (404, "INVITATION_NOT_FOUND"),
    ErrorKind.INVALID_INPUT: (400, "VALIDATION_ERROR"), ErrorKind.LIMIT_REACHED: (429, "DAILY_LIMIT_REACHED"),
    ErrorKind.RATE_LIMITED: (429, "TOO_MANY_REQUESTS"), ErrorKind.TRANSIENT: (502, "BAD_GATEWAY"),
}
#: endpoint names for injected errors, and which of them act (an `after` error happens after acting)
ACTING = ("connect", "message", "withdraw")


@dataclass
class Rule:
    code: str
    endpoint: str | None
    count: int | None
    probability: float | None
    after: bool


class SalesflowFake:
    """The fake Salesflow API over one simulated LinkedIn. See the module docstring."""

    def __init__(self, *, clock: FakeClock | None = None, seed: int = 0, api_keys: set[str] | None = None,
                 webhook_url: str | None = None, webhook_secret: str | None = None,
                 connection_delay_hours: float = 6.0, reorder_rate: float = 0.2, duplicate_rate: float = 0.1,
                 limits: Mapping[str, int] | None = DEFAULT_LIMITS, enforce_limits: bool = True,
                 rate_per_minute: int | None = None, sandbox: Mapping[str, Any] | None = None,
                 auto_pump: bool = True, sleep: Callable[[float], None] = time.sleep) -> None:
        self.clock = clock or FakeClock()
        self.world = SandboxProvider(clock=self.clock, seed=seed, **dict(sandbox or {}))
        self.seed = seed
        self.api_keys = api_keys
        self.connection_delay = dt.timedelta(hours=connection_delay_hours)
        self.limits = dict(limits or {})
        self.enforce_limits = enforce_limits
        self.rate_per_minute = rate_per_minute
        self.latency_ms = 0.0
        self.ledger: list[dict[str, Any]] = []
        self.texts: dict[str, str] = {}
        self.requests: collections.Counter[str] = collections.Counter()
        self.deliveries = Deliveries(url=webhook_url, secret=webhook_secret, seed=seed, reorder_rate=reorder_rate,
                                     duplicate_rate=duplicate_rate, auto_pump=self.pump if auto_pump else None)
        self._rules: list[Rule] = []
        self._random = random.Random(seed)
        self._keys = itertools.count(1)
        self._syncs = itertools.count(1)
        self._lock = threading.RLock()
        self._sleep = sleep
        self._windows: dict[str, tuple[int, int]] = {}
        self._scanned: dict[str, dt.datetime] = {}  # account -> acceptances announced up to
        self._done: collections.Counter[tuple[str, str, str]] = collections.Counter()  # (account, day, limit)
        self.messaged: set[tuple[str, str]] = set()  # (account, lead) that got a message from us
        self.refusals: collections.Counter[str] = collections.Counter()  # error codes answered
        if auto_pump:
            self.deliveries.start()  # NEW_CONNECTIONs come due with the clock, before any sync is asked for

    # webhook_url / webhook_secret are set by whoever serves the receiver (simulate --wire)
    @property
    def webhook_url(self) -> str | None:
        return self.deliveries.url

    @webhook_url.setter
    def webhook_url(self, value: str | None) -> None:
        self.deliveries.url = value

    @property
    def webhook_secret(self) -> str | None:
        return self.deliveries.secret

    @webhook_secret.setter
    def webhook_secret(self, value: str | None) -> None:
        self.deliveries.secret = value

    def close(self) -> None:
        self.deliveries.close()

    def wire_check(self, driver: Any, cursors: Mapping[str, dt.datetime]) -> tuple[dict[str, Any], list[str]]:
        """Seed 000's promises after `simulate --wire` (see `fake_audit`): `runner.wire` passes the
        driver (its marker log) and the cursors the engine stored."""
        from runner.providers.salesflow.fake_audit import audit

        return audit(self, driver, cursors)

    # --- dispatch ---------------------------------------------------------------------------------

    def handle(self, method: str, target: str, headers: Mapping[str, str], body: bytes) -> Reply:
        if self.latency_ms:
            self._sleep(self.latency_ms / 1000)
        split = urllib.parse.urlsplit(target)
        path, query = split.path, dict(urllib.parse.parse_qsl(split.query))
        try:
            data = json.loads(body) if body else {}
        except ValueError:
            return self._error(SalesflowError(400, "VALIDATION_ERROR", "the body is not valid JSON"))
        try:
            if path.startswith("/_fake/"):
                return self._json(200, self._control(method, path[len("/_fake/"):], data))
            with self._lock:
                return self._api(method, path, query, headers, data)
        except SalesflowError as err:
            return self._error(err)

    def _api(self, method: str, path: str, query: Mapping[str, str], headers: Mapping[str, str], data: Any) -> Reply:
        self._authorise(headers)
        if not path.startswith(PREFIX):
            raise SalesflowError(404, "NOT_FOUND", f"no route {method} {path}")
        parts = [p for p in path[len(PREFIX):].split("/") if p]
        route = fake_api.route(method, parts)
        if route is None:
            raise SalesflowError(404, "NOT_FOUND", f"no route {method} {path}")
        name, handler, args = route
        self.requests[name] += 1
        account = headers.get("x-accountid", "")
        if not account:
            raise SalesflowError(400, "VALIDATION_ERROR", "the X-AccountId header is required")
        rule = self._injected(name)
        if rule is not None and not rule.after:
            raise self._injected_error(rule)
        now = self.clock()
        if name not in ("account",):
            self._check_session(account, now)
        status, result = handler(self, account, args, query, data if isinstance(data, dict) else {}, headers, now)
        if rule is not None:  # `after`: it happened, but the caller hears an error
            raise self._injected_error(rule)
        return self._json(status, result)

    def _authorise(self, headers: Mapping[str, str]) -> None:
        auth = headers.get("authorization", "")
        key = auth[len("Bearer "):] if auth.startswith("Bearer ") else ""
        if not key or (self.api_keys is not None and key not in self.api_keys):
            raise SalesflowError(401, "UNAUTHORIZED", "invalid or missing API key")
        if self.rate_per_minute:
            minute = int(self.clock().timestamp() // 60)
            start, used = self._windows.get(key, (minute, 0))
            used = used + 1 if start == minute else 1
            self._windows[key] = (minute, used)
            if used > self.rate_per_minute:
                wait = max(1, int((minute + 1) * 60 - self.clock().timestamp()))
                raise SalesflowError(429, "TOO_MANY_REQUESTS", f"more than {self.rate_per_minute} requests a minute",
                                     headers={"Retry-After": str(wait)})

    # --- the simulated LinkedIn ---------------------------------------------------------------------

    def lead(self, url: str) -> LeadRef:
        try:
            key, canonical = normalize_profile_url(url)
        except ValueError as exc:
            raise SalesflowError(400, "VALIDATION_ERROR", f"{url} is not a LinkedIn profile URL ({exc})") from None
        return LeadRef(key, canonical)

    def sandbox(self, call: Callable[[], Any]) -> Any:
        try:
            return call()
        except ProviderError as err:
            status, code = FROM_SANDBOX.get(err.kind, (502, "BAD_GATEWAY"))
            raise SalesflowError(status, code, err.message) from None

    def state(self, account: str, key: str) -> Any:
        with self.world._lock:
            return self.world._world.lead(account, key, self.clock())

    def leads_of(self, account: str) -> list[tuple[str, Any]]:
        with self.world._lock:
            return [(key, s) for (acc, key), s in list(self.world._world.leads.items()) if acc == account]

    def key_of(self, account: str, profile: str) -> str:
        """The lead a profileId names (the fake knows the people it has seen)."""
        for key, _ in self.leads_of(account):
            if profile_id(key) == profile:
                return key
        raise SalesflowError(404, "PROFILE_NOT_FOUND", f"no profile {profile} known to account {account}")

    def text(self, message_id: str, from_lead: bool) -> str:
        return self.texts.get(message_id) or ("Thanks, happy to talk." if from_lead else "(earlier message)")

    def next_key(self) -> str:
        return f"fake-{next(self._keys)}"

    def next_sync_id(self) -> str:
        return f"sync-{self.seed}-{next(self._syncs)}"

    def record(self, account: str, action: str, key: str | None, now: dt.datetime, headers: Mapping[str, str],
               **details: Any) -> None:
        """An action performed: into the ledger, and counted against the account's daily limit."""
        self.ledger.append({"at": iso(now), "account_id": account, "action": action, "lead": key,
                            "seqrun_key": headers.get("idempotency-key"), **details})
        limit = LIMITED["connect_note" if action == "connect" and details.get("note") else action]
        self._done[(account, now.date().isoformat(), limit)] += 1
        if action in ("message", "inmail") and key is not None:
            self.messaged.add((account, key))

    def charge(self, account: str, limit: str, now: dt.datetime) -> None:
        """Salesflow's own daily limits (when enforced, per UTC day): refused before acting."""
        if not self.enforce_limits or limit not in self.limits:
            return
        if self._done[(account, now.date().isoformat(), limit)] >= self.limits[limit]:
            raise SalesflowError(429, "DAILY_LIMIT_REACHED", f"the daily limit of {self.limits[limit]} {limit} is "
                                                             "reached for this account")

    def _check_session(self, account: str, now: dt.datetime) -> None:
        with self.world._lock:
            outage = self.world._world.account(account).outage_at(now)
        if outage is not None:
            raise SalesflowError(403, "ACCOUNT_DISCONNECTED", f"the LinkedIn session of account {account} is "
                                                              "disconnected")

    def introduce(self, account: str, urls: list[str]) -> int:
        """Profiles that exist in the simulated network from now on (see `EdgesFake.introduce`)."""
        now = self.clock()
        with self.world._lock:
            for url in urls:
                key, _ = normalize_profile_url(url)
                self.world._world.lead(account, key, now)
        return len(urls)

    # --- NEW_CONNECTION ---------------------------------------------------------------------------

    def pump(self) -> int:
        """Announce acceptances that happened (each due after a random delay of up to
        `connection_delay`) and send the NEW_CONNECTION webhooks due now."""
        now = self.clock()
        with self.world._lock:
            world = self.world._world
            for account in list(world.accounts):
                world.realise_due(account, now)
                since = self._scanned.get(account)
                for event in world.window(account, since, now):
                    if event.kind != "accepted" or event.lead_key is None:
                        continue
                    delay = self.connection_delay * unit(self.seed, event.event_id, "delay")
                    due = event.occurred_at + delay
                    self.deliveries.at(due, _new_connection(event.lead_key, event.occurred_at, due))
                self._scanned[account] = now
        return self.deliveries.pump(now)

    # --- injected errors ----------------------------------------------------------------------------

    def _injected(self, endpoint: str) -> Rule | None:
        for rule in self._rules:
            if rule.endpoint not in (None, endpoint) or (rule.after and endpoint not in ACTING):
                continue
            if rule_fires(rule, self._random.random):
                return rule
        return None

    def _injected_error(self, rule: Rule) -> SalesflowError:
        headers = {"Retry-After": "60"} if rule.code == "TOO_MANY_REQUESTS" else {}
        return SalesflowError(INJECTABLE[rule.code], rule.code, f"injected by the fake: {rule.code}", headers=headers)

    # --- control ------------------------------------------------------------------------------------

    def _control(self, method: str, name: str, data: Any) -> Any:
        data = data if isinstance(data, dict) else {}
        if name == "clock":
            if method == "POST":
                self.clock.control(data)
            return {"now": iso(self.clock())}
        if name == "errors":
            return self._error_rule(method, data)
        if name == "latency":
            self.latency_ms = max(0.0, float(data.get("ms", 0)))
            return {"ms": self.latency_ms}
        if name == "ledger":
            return {"actions": list(self.ledger)}
        if name == "profiles":
            urls = data.get("linkedin_profile_urls")
            if not isinstance(urls, list) or not all(isinstance(u, str) for u in urls):
                raise SalesflowError(400, "VALIDATION_ERROR", "linkedin_profile_urls must be a list of URLs")
            try:
                return {"introduced": self.introduce(str(data.get("account_id", "")), urls)}
            except ValueError as exc:
                raise SalesflowError(400, "VALIDATION_ERROR", f"not a LinkedIn profile URL ({exc})") from None
        if name == "auth":
            account = str(data.get("account_id", ""))
            if data.get("state") == "expired":
                self.world.expire_auth(account)
            else:
                self.world.restore_auth(account)
            return {"account_id": account, "state": data.get("state", "ok")}
        if name == "deliver":
            return {"delivered": self.pump()}
        if name == "webhooks":
            return {"deliveries": list(self.deliveries.log),
                    "syncs": {sid: {"account_id": r.account_id, "started_at": r.started_at, "pages": len(r.pages),
                                    "delivered": len(r.delivered & r.pages), "complete": r.complete}
                              for sid, r in self.deliveries.syncs.items()}}
        if name == "webhooks/hold":
            self.deliveries.hold(int(data.get("count", 1)))
            return {"hold": int(data.get("count", 1))}
        if name == "webhooks/release":
            return {"released": self.deliveries.release()}
        raise SalesflowError(404, "NOT_FOUND", f"no control endpoint /_fake/{name}")

    def _error_rule(self, method: str, data: Mapping[str, Any]) -> Any:
        if method == "DELETE":
            self._rules.clear()
            return {"rules": 0}
        code = str(data.get("code", ""))
        if code not in INJECTABLE:
            raise SalesflowError(400, "VALIDATION_ERROR", f"unknown code {code!r}; expected one of "
                                                          f"{', '.join(sorted(INJECTABLE))}")
        count, probability = data.get("count"), data.get("probability")
        if (count is None) == (probability is None):
            raise SalesflowError(400, "VALIDATION_ERROR", "give either count or probability")
        endpoint = data.get("endpoint")
        if endpoint is not None and endpoint not in fake_api.ENDPOINTS:
            raise SalesflowError(400, "VALIDATION_ERROR", f"unknown endpoint {endpoint!r}; expected one of "
                                                          f"{', '.join(fake_api.ENDPOINTS)}")
        self._rules.append(Rule(code, endpoint, None if count is None else int(count),
                                None if probability is None else float(probability), bool(data.get("after"))))
        return {"rules": len(self._rules)}

    # --- replies ------------------------------------------------------------------------------------

    def _json(self, status: int, payload: Any, headers: Mapping[str, str] | None = None) -> Reply:
        body = b"" if payload is None else json.dumps(payload).encode()
        return status, {"Content-Type": "application/json", **dict(headers or {})}, body

    def _error(self, err: SalesflowError) -> Reply:
        self.refusals[err.code] += 1
        return self._json(err.status, err.body(), {**err.headers, "Content-Type": "application/problem+json"})


def _new_connection(key: str, at: dt.datetime, due: dt.datetime) -> dict[str, Any]:
    from runner.providers.salesflow.fake_shapes import member_id, names

    first, last = names(key)
    return {"EventType": "NEW_CONNECTION",
            "Payload": {"Data": {"Connections": [{
                "ConnectedAt": iso(at),
                "Profile": {"LinkedInMemberId": member_id(key), "ProfileId": profile_id(key), "FirstName": first,
                            "LastName": last, "PublicIdentifier": key, "Occupation": "Founder"}}]},
                        "SyncFinishedAt": iso(due)}}


def account_ref(account: str) -> Account:
    return Account(sender=account, account_id=account)
