"""A fake Edges API: the sandbox's simulated LinkedIn served over HTTP in Edges' own shapes.

`EdgesFake` is the app (no sockets: `handle(method, target, headers, body)`), served by
`runner.providers.fakeserver.FakeHTTPServer` for tests, `seqrun fake edges` and `simulate --wire`.
What LinkedIn does (who accepts, who replies, when) is decided by a `SandboxProvider` on the fake's
clock; this module only speaks Edges: paths, bodies, error bodies, status codes, `X-Pagination-Next`,
rate-limit headers, Smart Limits (`LIMIT_REACHED` with `postponed_until`). Like Edges it keeps no
idempotency keys; it records every action it performed in a ledger, with the `custom_data` it got.

Control endpoints (documented in docs/providers/edges.md), all JSON:
  GET  /_fake/clock                       -> {"now"}
  POST /_fake/clock {"now": ISO} | {"advance_seconds": n}
  POST /_fake/errors {"label", "action": slug|null, "count": n | "probability": p, "after": bool}
  DELETE /_fake/errors
  POST /_fake/latency {"ms": n}
  GET  /_fake/ledger                      -> {"actions": [...]}
  POST /_fake/auth {"identity_id", "state": "expired"|"ok"}   (delivers the webhook when configured)
  POST /_fake/webhooks {"event": "AUTH_EXPIRED"|"AUTH_SUCCESS", "identity_id", "reason"}
  POST /_fake/profiles {"identity_id", "linkedin_profile_urls": [...]}  (who exists, before lists show them)
"""
from __future__ import annotations

import base64
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

import httpx

from runner.language.urls import normalize_profile_url
from runner.providers.base import Account, ErrorKind, LeadRef, ProviderError
from runner.providers.edges import fake_reads
from runner.providers.edges.fake_shapes import (
    EdgesError,
    cursor,
    iso,
    number_id,
    profile_url,
    sales_navigator_id,
    thread_url,
    urn,
)
from runner.providers.fakeserver import FakeClock, Reply, rule_fires
from runner.providers.sandbox import SandboxProvider

UTC = dt.UTC
PREFIX = "/v1"
WEBHOOK_SECRET_HEADER = "X-Webhook-Secret"
#: Page sizes from the action docs (messages: not documented, assumed 100).
PAGE_SIZES = {"linkedin-extract-connections": 40, "linkedin-extract-sent-invitations": 100,
              "linkedin-extract-conversations": 20, "linkedin-extract-messages": 100}
#: Edges' Smart Limits for classic accounts, per identity and action, rolling 24 hours.
SMART_LIMITS = {"linkedin-visit-profile": 80, "linkedin-connect-profile": 25, "salesnavigator-connect-profile": 30,
                "linkedin-message-profile": 50}
ACTION_SLUGS = {"linkedin-visit-profile": "visit", "linkedin-connect-profile": "connect",
                "salesnavigator-connect-profile": "connect", "linkedin-message-profile": "message",
                "linkedin-inmail-profile": "inmail", "linkedin-withdraw-invitation": "withdraw"}
#: label -> status for injected errors (LinkedIn-level labels are 424, as in Edges' error reference).
INJECTABLE = {"LIMIT_REACHED": 429, "STATUS_429": 429, "RATE_LIMITED": 429, "AUTH_EXPIRED": 424,
              "NOT_CONNECTED": 424, "ALREADY_CONNECTED": 424, "INVITATION_PENDING": 424,
              "PROFILE_NOT_ACCESSIBLE": 424, "LK_ERROR": 424, "LK_524": 424, "GENERIC_ERROR": 424,
              "NO_DATA_LOADED": 424, "STATUS_404": 424, "BAD_INPUT": 400, "INVALID_INPUT": 400,
              "BAD_PARAMETERS": 400, "UNAUTHORIZED": 401, "NO_ACCESS": 402}
#: sandbox error kinds -> (status, Edges label)
_FROM_SANDBOX = {
    ErrorKind.ALREADY_CONNECTED: (424, "ALREADY_CONNECTED"), ErrorKind.NOT_CONNECTED: (424, "NOT_CONNECTED"),
    ErrorKind.INVITATION_PENDING: (424, "INVITATION_PENDING"),
    ErrorKind.PROFILE_NOT_ACCESSIBLE: (424, "PROFILE_NOT_ACCESSIBLE"), ErrorKind.AUTH_EXPIRED: (424, "AUTH_EXPIRED"),
    ErrorKind.NOT_FOUND: (424, "STATUS_404"), ErrorKind.INVALID_INPUT: (400, "BAD_PARAMETERS"),
    ErrorKind.LIMIT_REACHED: (429, "LIMIT_REACHED"), ErrorKind.RATE_LIMITED: (429, "STATUS_429"),
    ErrorKind.TRANSIENT: (424, "LK_ERROR"),
}
_BODY_KEYS = {"identity_ids", "input", "parameters", "identity_mode"}


@dataclass
class Rule:
    label: str
    slug: str | None
    count: int | None
    probability: float | None
    after: bool  # the action takes effect, then the error is answered (a lost response)


class EdgesFake:
    """The fake Edges API over one simulated LinkedIn. See the module docstring."""

    def __init__(self, *, clock: FakeClock | None = None, seed: int = 0, api_keys: set[str] | None = None,
                 webhook_url: str | None = None, webhook_secret: str | None = None,
                 rate_per_minute: int | None = None, smart_limits: Mapping[str, int] | None = SMART_LIMITS,
                 sandbox: Mapping[str, Any] | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.clock = clock or FakeClock()
        self.world = SandboxProvider(clock=self.clock, seed=seed, **dict(sandbox or {}))
        self.api_keys = api_keys  # None: any non-empty key is accepted
        self.webhook_url, self.webhook_secret = webhook_url, webhook_secret
        self.rate_per_minute = rate_per_minute
        self.smart_limits = dict(smart_limits or {})
        self.latency_ms = 0.0
        self.ledger: list[dict[str, Any]] = []
        self.texts: dict[str, str] = {}  # message id -> text we were sent
        self.requests: collections.Counter[str] = collections.Counter()
        self.webhooks: list[dict[str, Any]] = []  # deliveries made: event, status
        self._rules: list[Rule] = []
        self._random = random.Random(seed)
        self._keys = itertools.count(1)
        self._refs = itertools.count(1)
        self._lock = threading.RLock()
        self._sleep = sleep
        self._windows: dict[str, tuple[int, int]] = {}  # api key -> (minute, requests in it)
        self._done: dict[tuple[str, str], collections.deque[dt.datetime]] = {}  # Smart Limits

    # --- dispatch ---------------------------------------------------------------------------------

    def handle(self, method: str, target: str, headers: Mapping[str, str], body: bytes) -> Reply:
        if self.latency_ms:
            self._sleep(self.latency_ms / 1000)
        split = urllib.parse.urlsplit(target)
        path, query = split.path, dict(urllib.parse.parse_qsl(split.query))
        try:
            data = json.loads(body) if body else {}
        except ValueError:
            return self._error(EdgesError(400, "BAD_INPUT", "body is not valid JSON", scope="request"))
        try:
            if path.startswith("/_fake/"):
                name = path[len("/_fake/"):]
                try:
                    return self._json(200, self._control(method, name, data))
                except (ValueError, TypeError) as exc:  # a value of the wrong kind in a control call
                    raise EdgesError(400, "BAD_INPUT", f"/_fake/{name}: {exc}", scope="request") from None
            with self._lock:
                return self._api(method, path, query, headers, data)
        except EdgesError as err:
            return self._error(err)

    def _api(self, method: str, path: str, query: Mapping[str, str], headers: Mapping[str, str],
             data: Any) -> Reply:
        self._authorise(headers)
        parts = [p for p in path[len(PREFIX):].split("/") if p] if path.startswith(PREFIX + "/") else []
        if method == "POST" and len(parts) == 4 and parts[0] == "actions" and parts[2:] == ["run", "live"]:
            return self._run(parts[1], data, query, headers, path)
        if method == "GET" and len(parts) == 5 and parts[0] == "identities" and parts[2] == "actions" \
                and parts[4] == "limits":
            return self._json(200, self._limits(parts[1], parts[3]))
        raise EdgesError(404, "NOT_FOUND", f"no route {method} {path}", scope="request")

    def _authorise(self, headers: Mapping[str, str]) -> None:
        key = headers.get("x-api-key", "")
        if not key or (self.api_keys is not None and key not in self.api_keys):
            raise EdgesError(401, "UNAUTHORIZED", "invalid or missing API key", scope="request")
        if self.rate_per_minute:
            minute = int(self.clock().timestamp() // 60)
            start, used = self._windows.get(key, (minute, 0))
            used = used + 1 if start == minute else 1
            self._windows[key] = (minute, used)
            if used > self.rate_per_minute:
                reset = (minute + 1) * 60
                wait = max(1, int(reset - self.clock().timestamp()))
                raise EdgesError(429, "RATE_LIMITED", f"API rate limit of {self.rate_per_minute} requests a minute "
                                 "exceeded", params={"retry_after": wait}, scope="request",
                                 headers={"Retry-After": str(wait), "X-RateLimit-Type": "workspace",
                                          "X-RateLimit-Limit": str(self.rate_per_minute),
                                          "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(reset)})

    # --- live runs ----------------------------------------------------------------------------------

    def _run(self, slug: str, data: Any, query: Mapping[str, str], headers: Mapping[str, str], path: str) -> Reply:
        self.requests[slug] += 1
        if not isinstance(data, dict):
            raise EdgesError(400, "BAD_INPUT", "body must be an object", scope="request")
        extra = sorted(set(data) - _BODY_KEYS)
        if extra:
            raise EdgesError(400, "BAD_INPUT", f"body must NOT have additional properties ({', '.join(extra)})",
                             scope="request")
        ids = data.get("identity_ids")
        if not isinstance(ids, list) or len(ids) != 1 or not isinstance(ids[0], str) or not ids[0]:
            raise EdgesError(400, "BAD_INPUT", "identity_ids must hold exactly one identity uid in direct mode",
                             scope="request")
        identity = ids[0]
        given = data.get("input") or {}
        parameters = data.get("parameters") or {}
        if not isinstance(given, dict) or not isinstance(parameters, dict):
            raise EdgesError(400, "BAD_INPUT", "input and parameters must be objects", scope="request")
        rule = self._injected(slug)
        if rule is not None and not rule.after:
            raise self._injected_error(rule, identity)
        handler = _HANDLERS.get(slug)
        if handler is None:
            raise EdgesError(404, "NOT_FOUND", f"unknown action {slug}", scope="request")
        now = self.clock()
        self._check_auth(identity, now)
        self._smart_limit(identity, slug, now)
        result = handler(self, identity, given, parameters, now)
        if rule is not None:  # `after`: it happened, but the caller hears an error
            raise self._injected_error(rule, identity)
        if isinstance(result, list):
            return self._page(slug, result, query, headers, path)
        return self._json(200, result)

    def _page(self, slug: str, items: list[Any], query: Mapping[str, str], headers: Mapping[str, str],
              path: str) -> Reply:
        size = PAGE_SIZES.get(slug, 100)
        offset = 0
        if "cursor" in query:
            try:
                offset = int(json.loads(base64.urlsafe_b64decode(query["cursor"].encode()))["o"])
            except (ValueError, KeyError, TypeError):
                raise EdgesError(400, "BAD_PARAMETERS", "invalid or expired cursor", scope="request") from None
        page = items[offset:offset + size]
        out: dict[str, str] = {"Content-Type": "application/json"}
        origin = f"http://{headers.get('host', '127.0.0.1')}{path}"
        if offset + size < len(items):
            out["X-Pagination-Next"] = f"{origin}?cursor={cursor(offset + size)}"
        if offset > 0:
            out["X-Pagination-Previous"] = f"{origin}?cursor={cursor(max(0, offset - size))}"
        return 200, out, json.dumps(page).encode()

    # --- actions ------------------------------------------------------------------------------------

    def _lead(self, given: Mapping[str, Any], *, sales_navigator: bool = False) -> LeadRef:
        url = given.get("linkedin_profile_url")
        sn_id = given.get("sales_navigator_profile_id")
        if sales_navigator and not url and isinstance(sn_id, str) and sn_id:
            url = f"https://www.linkedin.com/sales/lead/{sn_id}"  # the same person as their SN lead URL
        if not isinstance(url, str) or not url:
            raise EdgesError(400, "BAD_INPUT", "input.linkedin_profile_url is required"
                             + (" (or input.sales_navigator_profile_id)" if sales_navigator else ""))
        try:
            key, canonical = normalize_profile_url(url)
        except ValueError as exc:
            raise EdgesError(400, "INVALID_INPUT", f"{url} is not a LinkedIn profile URL ({exc})") from None
        return LeadRef(key, canonical)

    def _sandbox(self, call: Callable[[], Any]) -> Any:
        try:
            return call()
        except ProviderError as err:
            status, label = _FROM_SANDBOX.get(err.kind, (424, "GENERIC_ERROR"))
            params = {"postponed_until": iso(err.retry_at)} if err.retry_at and label == "LIMIT_REACHED" else {}
            raise EdgesError(status, label, err.message, params=params,
                             scope="identity" if label == "AUTH_EXPIRED" else "input") from None

    def _record(self, identity: str, slug: str, given: Mapping[str, Any], lead: LeadRef | None, now: dt.datetime,
                **ids: Any) -> None:
        custom = got if isinstance(got := given.get("custom_data"), dict) else {}
        self.ledger.append({"at": iso(now), "identity_id": identity, "action": ACTION_SLUGS[slug], "slug": slug,
                            "lead": lead.key if lead else None,
                            "linkedin_profile_url": lead.profile_url if lead else None,
                            "seqrun_key": custom.get("seqrun_key"), "custom_data": custom, **ids})
        self._done.setdefault((identity, slug), collections.deque()).append(now)

    def _visit(self, identity: str, given: dict[str, Any], parameters: dict[str, Any], now: dt.datetime) -> Any:
        lead = self._lead(given)
        self._sandbox(lambda: self.world.visit(_account(identity), lead, key=self._key()))
        self._record(identity, "linkedin-visit-profile", given, lead, now)
        return {"linkedin_profile_url": lead.profile_url, "linkedin_profile_id": number_id(lead.key)}

    def _connect(self, identity: str, given: dict[str, Any], parameters: dict[str, Any], now: dt.datetime,
                 slug: str = "linkedin-connect-profile") -> Any:
        lead = self._lead(given, sales_navigator=slug == "salesnavigator-connect-profile")
        note = parameters.get("message")
        if note is not None and (not isinstance(note, str) or len(note) > 300):
            raise EdgesError(400, "BAD_PARAMETERS", "parameters.message must be a string of at most 300 characters")
        done = self._sandbox(lambda: self.world.connect(_account(identity), lead, note=note or None, key=self._key()))
        self._record(identity, slug, given, lead, now, invitation_urn=urn(done.invitation_id))
        return {"connected": False, "pending": True, "message": note or "", "connection_sent_date": iso(now),
                "linkedin_profile_id": number_id(lead.key), "sales_navigator_profile_id": sales_navigator_id(lead.key)}

    def _connect_sn(self, identity: str, given: dict[str, Any], parameters: dict[str, Any], now: dt.datetime) -> Any:
        return self._connect(identity, given, parameters, now, slug="salesnavigator-connect-profile")

    def _message(self, identity: str, given: dict[str, Any], parameters: dict[str, Any], now: dt.datetime,
                 inmail: bool = False) -> Any:
        lead = self._lead(given)
        text = parameters.get("message")
        if not isinstance(text, str) or not text.strip() or len(text) > 8000:
            raise EdgesError(400, "BAD_PARAMETERS", "parameters.message must be a non-empty string of at most 8000 "
                                                    "characters")
        subject = parameters.get("subject") if inmail else None
        done = self._sandbox(lambda: self.world.send_message(_account(identity), lead, text=text, conversation_id=None,
                                                             subject=subject, inmail=inmail, key=self._key()))
        self.texts[done.provider_id] = text
        slug = "linkedin-inmail-profile" if inmail else "linkedin-message-profile"
        self._record(identity, slug, given, lead, now, message_id=done.provider_id, thread_id=done.conversation_id)
        return {"is_sent": True, "delivered_at": iso(now), "linkedin_message_id": done.provider_id,
                "linkedin_thread_id": done.conversation_id, "linkedin_thread_url": thread_url(done.conversation_id),
                "message": text, "reply": None}

    def _inmail(self, identity: str, given: dict[str, Any], parameters: dict[str, Any], now: dt.datetime) -> Any:
        return self._message(identity, given, parameters, now, inmail=True)

    def _withdraw(self, identity: str, given: dict[str, Any], parameters: dict[str, Any], now: dt.datetime) -> Any:
        wanted = given.get("linkedin_invitation_urn")
        if not isinstance(wanted, str) or not wanted.startswith("urn:li:fsd_invitation:"):
            raise EdgesError(400, "BAD_INPUT", "input.linkedin_invitation_urn must look like urn:li:fsd_invitation:123")
        found = next(((key, inv) for key, state in self._leads(identity)
                      for inv in state.invites if urn(inv.invitation_id) == wanted), None)
        if found is None or not found[1].pending_at(now):
            raise EdgesError(424, "STATUS_404", f"invitation {wanted} not found or no longer pending")
        key = found[0]
        lead = LeadRef(key, profile_url(key))
        self._sandbox(lambda: self.world.withdraw(_account(identity), lead, invitation_id=found[1].invitation_id,
                                                  key=self._key()))
        self._record(identity, "linkedin-withdraw-invitation", given, lead, now, invitation_urn=wanted)
        return {"linkedin_invitation_id": int(wanted.rsplit(":", 1)[1]), "linkedin_invitation_urn": wanted}

    # --- reads --------------------------------------------------------------------------------------

    def _limits(self, identity: str, slug: str) -> dict[str, Any]:
        limit = self.smart_limits.get(slug)
        if limit is None:
            raise EdgesError(404, "NOT_FOUND", f"no Smart Limit for {slug}", scope="request")
        used = len(self._recent(identity, slug, self.clock()))
        return {"limit": limit, "remaining": max(0, limit - used), "window": "24h"}

    def introduce(self, identity: str, urls: list[str]) -> int:
        """Profiles that exist in the simulated network from now on, as the identity sees them.

        The simulated LinkedIn decides who a lead is (already connected, pending, …) the first time
        anything asks about it; lists (connections, invitations) only show leads decided already.
        Real lists show everyone, so `simulate --wire` introduces its leads before the first tick."""
        now = self.clock()
        with self.world._lock:
            for url in urls:
                key, _ = normalize_profile_url(url)
                self.world._world.lead(identity, key, now)
        return len(urls)

    # --- world helpers ------------------------------------------------------------------------------

    def _leads(self, identity: str) -> list[tuple[str, Any]]:
        with self.world._lock:
            return [(key, state) for (acc, key), state in list(self.world._world.leads.items()) if acc == identity]

    def _text(self, message_id: str, from_lead: bool) -> str:
        return self.texts.get(message_id) or ("Thanks, happy to talk." if from_lead else "(earlier message)")

    def _check_auth(self, identity: str, now: dt.datetime) -> None:
        with self.world._lock:
            outage = self.world._world.account(identity).outage_at(now)
        if outage is not None:
            raise EdgesError(424, "AUTH_EXPIRED", f"the LinkedIn session of identity {identity} expired",
                             scope="identity")

    def _recent(self, identity: str, slug: str, now: dt.datetime) -> collections.deque[dt.datetime]:
        done = self._done.setdefault((identity, slug), collections.deque())
        while done and done[0] <= now - dt.timedelta(hours=24):
            done.popleft()
        return done

    def _smart_limit(self, identity: str, slug: str, now: dt.datetime) -> None:
        limit = self.smart_limits.get(slug)
        if limit is None:
            return
        recent = self._recent(identity, slug, now)
        if len(recent) >= limit:
            until = recent[0] + dt.timedelta(hours=24)
            raise EdgesError(429, "LIMIT_REACHED", f"daily Smart Limit of {limit} reached for {slug}",
                             params={"postponed_until": iso(until), "appendix": "24h"}, scope="identity")

    def _key(self) -> str:
        return f"fake-{next(self._keys)}"

    # --- injected errors ----------------------------------------------------------------------------

    def _injected(self, slug: str) -> Rule | None:
        for rule in self._rules:
            if rule.slug not in (None, slug):
                continue
            if rule.after and slug not in ACTION_SLUGS:
                continue
            if rule_fires(rule, self._random.random):
                return rule
        return None

    def _injected_error(self, rule: Rule, identity: str) -> EdgesError:
        now = self.clock()
        status = INJECTABLE[rule.label]
        params: dict[str, Any] = {}
        headers: dict[str, str] = {}
        if rule.label == "LIMIT_REACHED":
            params["postponed_until"] = iso(dt.datetime.combine(now.date() + dt.timedelta(days=1), dt.time(), UTC))
        elif rule.label in ("STATUS_429", "RATE_LIMITED"):
            params["retry_after"] = 60
            headers["Retry-After"] = "60"
            if rule.label == "RATE_LIMITED":
                headers["X-RateLimit-Type"] = "workspace"
        scope = "identity" if rule.label in ("AUTH_EXPIRED", "LIMIT_REACHED") else "input"
        return EdgesError(status, rule.label, f"injected by the fake: {rule.label}", params=params, headers=headers,
                          scope=scope)

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
            label = str(data.get("label", ""))
            if label not in INJECTABLE:
                raise EdgesError(400, "BAD_INPUT", f"unknown label {label!r}; expected one of "
                                                   f"{', '.join(sorted(INJECTABLE))}", scope="request")
            count, probability = data.get("count"), data.get("probability")
            if (count is None) == (probability is None):
                raise EdgesError(400, "BAD_INPUT", "give either count or probability", scope="request")
            self._rules.append(Rule(label, data.get("action"), None if count is None else int(count),
                                    None if probability is None else float(probability), bool(data.get("after"))))
            return {"rules": len(self._rules)}
        if name == "latency":
            self.latency_ms = max(0.0, float(data.get("ms", 0)))
            return {"ms": self.latency_ms}
        if name == "ledger":
            return {"actions": list(self.ledger)}
        if name == "profiles":
            urls = data.get("linkedin_profile_urls")
            if not isinstance(urls, list) or not all(isinstance(u, str) for u in urls):
                raise EdgesError(400, "BAD_INPUT", "linkedin_profile_urls must be a list of URLs", scope="request")
            try:
                return {"introduced": self.introduce(str(data.get("identity_id", "")), urls)}
            except ValueError as exc:
                raise EdgesError(400, "INVALID_INPUT", f"not a LinkedIn profile URL ({exc})") from None
        if name == "auth":
            identity = str(data.get("identity_id", ""))
            if data.get("state") == "expired":
                self.world.expire_auth(identity)
                self.deliver("AUTH_EXPIRED", identity, "session expired (fake)")
            else:
                self.world.restore_auth(identity)
                self.deliver("AUTH_SUCCESS", identity, "re-authenticated (fake)")
            return {"identity_id": identity, "state": data.get("state", "ok")}
        if name == "webhooks":
            status = self.deliver(str(data.get("event", "AUTH_EXPIRED")), str(data.get("identity_id", "")),
                                  str(data.get("reason", "")))
            return {"delivered": status}
        raise EdgesError(404, "NOT_FOUND", f"no control endpoint /_fake/{name}", scope="request")

    def deliver(self, event: str, identity: str, reason: str) -> int | None:
        """POST an integration webhook to the configured URL; returns its status (None: no URL)."""
        if not self.webhook_url:
            return None
        payload = {"event_type": "integration", "event": event, "identity_uid": identity,
                   "created_at": iso(self.clock()), "data": {"reason": reason}}
        headers = {WEBHOOK_SECRET_HEADER: self.webhook_secret} if self.webhook_secret else {}
        try:
            status: int | None = httpx.post(self.webhook_url, json=payload, headers=headers, timeout=10.0).status_code
        except httpx.HTTPError:
            status = None
        self.webhooks.append({"event": event, "identity_id": identity, "status": status})
        return status

    # --- replies ------------------------------------------------------------------------------------

    def _json(self, status: int, payload: Any, headers: Mapping[str, str] | None = None) -> Reply:
        return status, {"Content-Type": "application/json", **dict(headers or {})}, json.dumps(payload).encode()

    def _error(self, err: EdgesError) -> Reply:
        body = {"error_label": err.label, "error_scope": err.scope, "error_ref": f"fake-{next(self._refs)}",
                "message": err.message, "status_code": err.status, "params": err.params}
        return self._json(err.status, body, err.headers)


_HANDLERS: dict[str, Callable[..., Any]] = {
    "linkedin-me": fake_reads.me,
    "linkedin-visit-profile": EdgesFake._visit,
    "linkedin-connect-profile": EdgesFake._connect,
    "salesnavigator-connect-profile": EdgesFake._connect_sn,
    "linkedin-message-profile": EdgesFake._message,
    "linkedin-inmail-profile": EdgesFake._inmail,
    "linkedin-withdraw-invitation": EdgesFake._withdraw,
    "linkedin-extract-connections": fake_reads.connections,
    "linkedin-extract-sent-invitations": fake_reads.invitations,
    "linkedin-extract-conversations": fake_reads.conversations,
    "linkedin-extract-messages": fake_reads.messages,
    "linkedin-get-thread-url": fake_reads.thread,
}


def _account(identity: str) -> Account:
    return Account(sender=identity, account_id=identity)
