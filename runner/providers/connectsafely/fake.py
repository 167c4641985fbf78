"""A fake ConnectSafely API: the sandbox's simulated LinkedIn served over HTTP in ConnectSafely's shapes.

`ConnectSafelyFake` is the app (`handle(method, target, headers, body)`), served by
`runner.providers.fakeserver.FakeHTTPServer` for tests, `seqrun fake connectsafely` and `simulate
--wire`. What LinkedIn does is decided by a `SandboxProvider` on the fake's clock; this module speaks
ConnectSafely: bearer keys, `accountId`, the routes of `fake_routes`, error bodies, quotas
(invitations 90 a week from Monday 00:00 UTC, new conversations 150 a day; going over the invitation
quota puts the account on a 24-hour hold), per-minute budgets with `X-RateLimit-*` headers and
`Retry-After`, and signed `message.received` webhooks. It keeps no idempotency keys; it records
every action it performed in a ledger.

Control endpoints (`fake_control`; documented in docs/providers/connectsafely.md), all JSON:
  GET  /_fake/clock                       -> {"now"}
  POST /_fake/clock {"now": ISO} | {"advance_seconds": n}   (then delivers due webhooks)
  POST /_fake/errors {"kind", "path": "/connect"|null, "count": n | "probability": p, "after", "shape"}
  DELETE /_fake/errors
  POST /_fake/latency {"ms": n}
  GET  /_fake/ledger                      -> {"actions": [...]}
  GET  /_fake/quotas?account_id=ID        -> {"quotas": [...]}
  POST /_fake/auth {"account_id", "state": "expired"|"ok"}
  POST /_fake/profiles {"account_id", "profile_ids": [...]}  (who exists, before lists show them)
  POST /_fake/replies {"account_id", "profile_id", "text"}   (the lead writes now)
  POST /_fake/webhooks                    -> deliver every due message.received now
"""
from __future__ import annotations

import collections
import datetime as dt
import hashlib
import itertools
import json
import logging
import random
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping
from typing import Any

import httpx

from runner.language.urls import normalize_profile_url
from runner.providers.base import Account, ErrorKind, LeadRef, ProviderError
from runner.providers.connectsafely import fake_control
from runner.providers.connectsafely import fake_routes as routes
from runner.providers.connectsafely.fake_control import Rule
from runner.providers.connectsafely.fake_routes import CSError, Request, invalid
from runner.providers.connectsafely.shapes import PROFILE_URN, THREAD_URN, iso
from runner.providers.connectsafely.webhook import SIGNATURE_HEADER, sign
from runner.providers.fakeserver import FakeClock, Reply
from runner.providers.quotas import Quota
from runner.providers.sandbox import SandboxProvider
from runner.providers.sandbox_state import Note

log = logging.getLogger(__name__)
UTC = dt.UTC
PREFIX = "/linkedin"
#: ConnectSafely's quotas per LinkedIn account
QUOTAS = {"CONNECT": Quota("connect", 90, "week"), "NEW_CONVERSATION": Quota("message", 150, "day")}
HOLD = dt.timedelta(hours=24)  # asking past the invitation quota puts the account on hold this long
#: per-minute budgets: per API key, and per account by kind of call (inbox reads are unlimited)
BUDGETS = {"key": 60, "read": 30, "write": 15, "account": 10}
WEBHOOK_RETRIES = (10.0, 20.0)  # seconds before the second and third attempt

class ConnectSafelyFake:
    """The fake ConnectSafely API over one simulated LinkedIn. See the module docstring."""

    #: ConnectSafely carries no idempotency key: `simulate --wire` compares by (account, action, lead)
    keyed_ledger = False

    def __init__(self, *, clock: FakeClock | None = None, seed: int = 0, api_keys: set[str] | None = None,
                 accounts: set[str] | None = None, webhook_url: str | None = None,
                 webhook_secret: str | None = None, budgets: Mapping[str, int] | None = BUDGETS,
                 quotas: Mapping[str, Quota] | None = QUOTAS, sales_navigator: set[str] | None = None,
                 sandbox: Mapping[str, Any] | None = None, sleep: Callable[[float], None] = time.sleep) -> None:
        self.clock = clock or FakeClock()
        self.world = SandboxProvider(clock=self.clock, seed=seed, **dict(sandbox or {}))
        self.api_keys = api_keys  # None: any non-empty key
        self.accounts = accounts  # None: any accountId
        self.webhook_url, self.webhook_secret = webhook_url, webhook_secret
        self.budgets = dict(budgets or {})
        self.quota_limits = dict(quotas or {})
        self.sales_navigator = set(sales_navigator or ())
        self.latency_ms = 0.0
        self.ledger: list[dict[str, Any]] = []
        self.texts: dict[str, str] = {}  # message id -> text we were sent
        self.requests: collections.Counter[str] = collections.Counter()  # per route pattern
        self.webhooks: list[dict[str, Any]] = []  # deliveries: message_urn, attempts, status
        self.refused_over_quota: collections.Counter[str] = collections.Counter()  # per quota action
        self.rules: list[Rule] = []
        self.random = random.Random(seed)
        self._keys = itertools.count(1)
        self.lock = threading.RLock()
        self._sleep = sleep
        self._minutes: dict[str, tuple[int, int]] = {}  # budget bucket -> (minute, requests in it)
        self._holds: dict[str, dt.datetime] = {}  # account -> on hold until
        self._done: dict[tuple[str, str], list[dt.datetime]] = collections.defaultdict(list)  # quota charges
        self._urns: dict[str, str] = {}  # profile URN -> lead key, for webhooks and URN targets
        self._delivered: dict[str, dt.datetime] = {}  # account -> replies delivered up to
        self._last_quota: dict[str, str] | None = None  # the quota headers of the request being answered

    # --- dispatch ---------------------------------------------------------------------------------

    def handle(self, method: str, target: str, headers: Mapping[str, str], body: bytes) -> Reply:
        if self.latency_ms:
            self._sleep(self.latency_ms / 1000)
        split = urllib.parse.urlsplit(target)
        query = dict(urllib.parse.parse_qsl(split.query))
        try:
            try:
                data = json.loads(body) if body else {}
            except ValueError:
                raise CSError(400, "body is not valid JSON") from None
            if split.path.startswith("/_fake/"):
                return self._json(200, self._control(method, split.path[len("/_fake/"):], data, query))
            with self.lock:
                return self._api(method, split.path, query, headers, data)
        except CSError as err:
            return self._json(err.status, err.body(), err.headers)

    def _api(self, method: str, path: str, query: Mapping[str, str], headers: Mapping[str, str], data: Any) -> Reply:
        key = self._authorise(headers)
        segments = [urllib.parse.unquote(s) for s in path[len(PREFIX):].split("/") if s] \
            if path.startswith(PREFIX + "/") else []
        found = routes.match(method, segments)
        if found is None:
            raise CSError(404, f"Cannot {method} {path}")
        pattern, kind, handler, params = found
        self.requests[pattern] += 1
        if method == "POST" and not isinstance(data, dict):
            raise invalid("", "Expected object, received " + type(data).__name__, "invalid_type")
        body = data if isinstance(data, dict) else {}
        extra = sorted(set(body) - routes.BODY_KEYS.get(pattern, frozenset()))
        if method == "POST" and extra:
            raise invalid("", f"Unrecognized key(s) in object: {', '.join(repr(k) for k in extra)}",
                          "unrecognized_keys")
        account = str((body.get("accountId") if method == "POST" else query.get("accountId")) or "default")
        if self.accounts is not None and account not in self.accounts:
            raise CSError(404, "Account not found")
        now = self.clock()
        budget_headers = self._budget(key, account, kind, now)
        rule = fake_control.injected(self, pattern)
        if rule is not None and not rule.after:
            raise fake_control.injected_error(self, rule, now)
        if kind != "account":
            self._check_session(account, now)
        self._last_quota = None
        answer = handler(self, account, Request(params, query, body), now)
        if rule is not None:  # `after`: it happened, but the caller hears an error
            raise fake_control.injected_error(self, rule, now)
        return self._json(200, answer, self._last_quota or budget_headers)

    def _authorise(self, headers: Mapping[str, str]) -> str:
        auth = headers.get("authorization", "")
        key = auth[len("Bearer "):].strip() if auth.startswith("Bearer ") else ""
        if not key or (self.api_keys is not None and key not in self.api_keys):
            raise CSError(401, "Unauthorized: invalid or missing API key")
        return key

    # --- budgets and quotas -------------------------------------------------------------------------

    def _budget(self, key: str, account: str, kind: str, now: dt.datetime) -> dict[str, str]:
        """Count the request against the key's and the account's per-minute budgets; 429 when over."""
        if not self.budgets:
            return {}
        minute = int(now.timestamp() // 60)
        reset = dt.datetime.fromtimestamp((minute + 1) * 60, UTC)
        shown: dict[str, str] = {}
        for bucket, action, limit in ((f"key:{hashlib.sha256(key.encode()).hexdigest()[:12]}", "KEY",
                                       self.budgets.get("key")),
                                      (f"{kind}:{account}", kind.upper(), self.budgets.get(kind))):
            if not limit:
                continue
            start, used = self._minutes.get(bucket, (minute, 0))
            used = used + 1 if start == minute else 1
            self._minutes[bucket] = (minute, used)
            headers = {"X-RateLimit-Action": action, "X-RateLimit-Limit": str(limit),
                       "X-RateLimit-Used": str(min(used, limit)), "X-RateLimit-Remaining": str(max(0, limit - used)),
                       "X-RateLimit-Reset": iso(reset)}
            if used > limit:
                wait = max(1, int((reset - now).total_seconds() + 0.999))
                raise CSError(429, f"Too many requests: {limit} {action.lower()} requests per minute",
                              headers={**headers, "Retry-After": str(wait)})
            if action != "KEY" or not shown:
                shown = headers
        return shown

    def charge_quota(self, account: str, action: str, now: dt.datetime) -> None:
        """Count an invitation or a new conversation; 429 over the quota (and a hold for invitations)."""
        quota = self.quota_limits.get(action)
        if quota is None:
            return
        start, end = quota.window(now)
        hold = self._holds.get(account) if action == "CONNECT" else None
        done = [t for t in self._done[(account, action)] if start <= t < end]
        if (hold is not None and now < hold) or len(done) >= quota.limit:
            self.refused_over_quota[action] += 1
            if action == "CONNECT" and (hold is None or now >= hold):
                hold = self._holds[account] = now + HOLD  # overshoot: LinkedIn holds the account
            extra = {"holdUntil": iso(hold)} if hold is not None else {}
            raise CSError(429, f"Rate limit exceeded for {action}: {len(done)}/{quota.limit} used. Resets at "
                               f"{iso(end)}", extra=extra, headers=self.quota_headers(action, quota, len(done), end))
        self._done[(account, action)].append(now)
        self._last_quota = self.quota_headers(action, quota, len(done) + 1, end)

    def quota_headers(self, action: str, quota: Quota, used: int, end: dt.datetime) -> dict[str, str]:
        return {"X-RateLimit-Action": action, "X-RateLimit-Limit": str(quota.limit), "X-RateLimit-Used": str(used),
                "X-RateLimit-Remaining": str(max(0, quota.limit - used)), "X-RateLimit-Reset": iso(end)}

    def quota_usage(self, account: str, action: str, now: dt.datetime) -> dict[str, Any]:
        quota = self.quota_limits[action]
        start, end = quota.window(now)
        used = sum(1 for t in self._done[(account, action)] if start <= t < end)
        return {"action": action, "limit": quota.limit, "used": used, "remaining": max(0, quota.limit - used),
                "window": quota.period, "reset": iso(end)}

    # --- the world ----------------------------------------------------------------------------------

    def account(self, account_id: str) -> Account:
        return Account(sender=account_id, account_id=account_id)

    def next_key(self) -> str:
        return f"fake-{next(self._keys)}"

    def on_world(self, call: Callable[[], Any]) -> Any:
        """Run a sandbox call; its errors become ConnectSafely's answers."""
        try:
            return call()
        except ProviderError as err:
            raise _from_sandbox(err) from None

    def seen(self, account: str, lead: LeadRef, now: dt.datetime) -> Any:
        """The lead as the account sees it (decided on first sight, like every sandbox call)."""
        with self.world._lock:
            state = self.world._world.lead(account, lead.key, now)
        if state.profile == "inaccessible":
            raise CSError(404, f"Profile {lead.key} not found or not accessible")
        return state

    def leads(self, account: str) -> list[tuple[str, Any]]:
        with self.world._lock:
            return [(key, state) for (acc, key), state in list(self.world._world.leads.items()) if acc == account]

    def lead_by_id(self, profile_id: str) -> LeadRef:
        if profile_id.startswith("urn:li:"):
            # A URN the fake handed out, or one naming a member token (a lead known only by it).
            token = profile_id.rsplit(":", 1)[-1]
            key = self._urns.get(profile_id) or (token if token.startswith("ACoA") and len(token) >= 24 else None)
            if key is None:
                raise CSError(404, f"Profile {profile_id} not found or not accessible")
            return LeadRef(key, f"https://www.linkedin.com/in/{key}")
        try:
            key, url = normalize_profile_url(f"https://www.linkedin.com/in/{profile_id}")
        except ValueError:
            raise invalid("profileId", f"{profile_id!r} is not a LinkedIn public profile id") from None
        self._urns.setdefault(self.profile_urn(key), key)
        return LeadRef(key, url)

    def lead_of(self, body: Mapping[str, Any]) -> LeadRef:
        profile, urn = body.get("profileId"), body.get("profileUrn")
        if isinstance(profile, str) and profile:
            return self.lead_by_id(profile)
        if isinstance(urn, str) and urn:
            return self.lead_by_id(urn)
        raise invalid("profileId", "Either profileId or profileUrn is required")

    def profile_urn(self, key: str) -> str:
        urn = PROFILE_URN + SandboxProvider._profile_ids(key)["profile_id"]
        self._urns.setdefault(urn, key)
        return urn

    def thread_urn(self, account: str, key: str) -> str:
        return THREAD_URN + self.world._world.thread_id(account, key)

    @staticmethod
    def member_number(text: str) -> int:
        return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=4).digest(), "big")

    @staticmethod
    def own_public_id(account: str) -> str:
        return f"sender-{ConnectSafelyFake.member_number(account)}"

    def text(self, message_id: str, from_lead: bool) -> str:
        return self.texts.get(message_id) or ("Thanks, happy to talk." if from_lead else "(earlier message)")

    def session_expired(self, account: str, now: dt.datetime) -> bool:
        with self.world._lock:
            return self.world._world.account(account).outage_at(now) is not None

    def _check_session(self, account: str, now: dt.datetime) -> None:
        if self.session_expired(account, now):
            raise CSError(400, f"LinkedIn session expired for account {account}: re-authenticate it in the dashboard")

    def record(self, account: str, action: str, lead: LeadRef, now: dt.datetime, **extra: Any) -> None:
        self.ledger.append({"at": iso(now), "account_id": account, "action": action, "lead": lead.key, **extra})

    def introduce(self, account: str, urls: list[str]) -> int:
        """Profiles that exist in the simulated network from now on (see `EdgesFake.introduce`)."""
        now = self.clock()
        with self.world._lock:
            for url in urls:
                key, _ = normalize_profile_url(url)
                self.world._world.lead(account, key, now)
                self.profile_urn(key)
        return len(urls)

    # --- webhooks -------------------------------------------------------------------------------------

    def deliver_every(self, seconds: float, stop: threading.Event) -> threading.Thread:
        """Deliver due replies every `seconds` until `stop` is set (`seqrun fake connectsafely`)."""

        def loop() -> None:
            while not stop.wait(seconds):
                try:
                    self.deliver_due()
                except Exception:  # noqa: BLE001 - a fake's delivery bug must not stop the fake
                    log.exception("fake ConnectSafely: webhook delivery failed")

        thread = threading.Thread(target=loop, name="seqrun-fake-webhooks", daemon=True)
        thread.start()
        return thread

    def deliver_due(self) -> list[dict[str, Any]]:
        """POST a signed `message.received` for every lead message that became visible since the last
        delivery (three attempts: now, 10 s and 20 s later); returns what was delivered."""
        if not self.webhook_url:
            return []
        now = self.clock()
        due = []
        with self.world._lock:
            for (account, key), state in list(self.world._world.leads.items()):
                since = self._delivered.get(account)
                for note in state.messages:
                    # Messages from before the lead was first seen are history, not deliveries.
                    if note.from_lead and state.first_seen <= note.sent_at <= now \
                            and (since is None or note.sent_at > since):
                        due.append((note.sent_at, account, key, note))
            for account in {acc for (acc, _) in self.world._world.leads}:
                self._delivered[account] = now
        out = []
        for _at, account, key, note in sorted(due, key=lambda d: (d[0], d[3].message_id)):
            out.append(self._deliver(account, key, note))
        return out

    def _deliver(self, account: str, key: str, note: Note) -> dict[str, Any]:
        urn = f"urn:li:messagingMessage:{note.message_id}"
        payload = {"event": "message.received", "object": "event", "data": {
            "id": urn, "message_urn": urn, "account_id": account, "provider": "LINKEDIN",
            "sender": {"id": self.profile_urn(key), "name": key.replace("-", " ").title(), "profile_url": None,
                       "profile_picture": None},
            "body": self.text(note.message_id, True), "timestamp": iso(note.sent_at),
            "conversation_id": self.thread_urn(account, key), "attachments": []}}
        body = json.dumps(payload).encode()
        headers = {"Content-Type": "application/json", SIGNATURE_HEADER: sign(body, self.webhook_secret or "")}
        status: int | None = None
        attempts = 0
        for delay in (0.0, *WEBHOOK_RETRIES):
            if delay:
                self._sleep(delay)
            attempts += 1
            try:
                status = httpx.post(str(self.webhook_url), content=body, headers=headers, timeout=15.0).status_code
            except httpx.HTTPError:
                status = None
            if status is not None and 200 <= status < 300:
                break
        entry = {"message_urn": urn, "account_id": account, "lead": key, "attempts": attempts, "status": status}
        self.webhooks.append(entry)
        return entry

    # --- levers (fake_control) ------------------------------------------------------------------------

    def _control(self, method: str, name: str, data: Any, query: Mapping[str, str]) -> Any:
        return fake_control.control(self, method, name, data, query)

    def wire_check(self) -> tuple[dict[str, Any], list[str]]:
        """What `simulate --wire` reports beyond the ledger (see `fake_control.wire_check`)."""
        return fake_control.wire_check(self)

    # --- replies ------------------------------------------------------------------------------------

    def _json(self, status: int, payload: Any, headers: Mapping[str, str] | None = None) -> Reply:
        return status, {"Content-Type": "application/json", **dict(headers or {})}, json.dumps(payload).encode()


def _from_sandbox(err: ProviderError) -> CSError:
    """The simulated LinkedIn's refusal in ConnectSafely's words."""
    kind = err.kind
    if kind is ErrorKind.ALREADY_CONNECTED:
        return CSError(400, f"Already connected: {err.message}")
    if kind is ErrorKind.INVITATION_PENDING:
        return CSError(400, f"An invitation is already pending: {err.message}")
    if kind is ErrorKind.NOT_CONNECTED:
        return CSError(400, f"Cannot send message: the recipient is not a 1st-degree connection ({err.message})")
    if kind is ErrorKind.PROFILE_NOT_ACCESSIBLE:
        return CSError(404, f"Profile not found or not accessible: {err.message}")
    if kind is ErrorKind.NOT_FOUND:
        return CSError(404, f"No pending invitation found: {err.message}")
    if kind is ErrorKind.AUTH_EXPIRED:
        return CSError(400, f"LinkedIn session expired: {err.message}; re-authenticate the account in the dashboard")
    if kind is ErrorKind.INVALID_INPUT:
        return CSError(400, err.message)
    return CSError(500, f"Internal server error ({err.message})")
