"""The fake ConnectSafely API's levers: `/_fake/` control endpoints, injected errors, and the checks
`simulate --wire` reports (documented in docs/providers/connectsafely.md)."""
from __future__ import annotations

import collections
import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from runner.providers.connectsafely.fake_routes import CSError
from runner.providers.connectsafely.shapes import iso
from runner.providers.fakeserver import rule_fires
from runner.providers.sandbox_state import Note

if TYPE_CHECKING:
    from runner.providers.connectsafely.fake import ConnectSafelyFake

#: kind -> (status, message) of an injected error
INJECTABLE: dict[str, tuple[int, str]] = {
    "UNAUTHORIZED": (401, "Unauthorized: invalid or missing API key"),
    "SUBSCRIPTION": (403, "Trial expired or no active subscription"),
    "ACCOUNT_NOT_FOUND": (404, "Account not found"),
    "PROFILE_NOT_ACCESSIBLE": (404, "Profile not found or not accessible"),
    "NOT_FOUND": (404, "Not found"),
    "ALREADY_CONNECTED": (400, "Already connected to this profile"),
    "INVITATION_PENDING": (400, "An invitation to this profile is already pending"),
    "NOT_CONNECTED": (400, "Cannot send message: the recipient is not a 1st-degree connection"),
    "NO_PENDING_INVITATION": (404, "No pending invitation found for this profile"),
    "AUTH_EXPIRED": (400, "LinkedIn session expired for this account: re-authenticate it in the dashboard"),
    "VALIDATION": (400, "Invalid request body"),
    "RATE_LIMITED": (429, "Too many requests: 15 writes per minute for this account"),
    "QUOTA_CONNECT": (429, "Rate limit exceeded for CONNECT"),
    "SERVER_ERROR": (500, "Internal server error"),
    "CONNECTIONS_UNAVAILABLE": (502, "CONNECTIONS_UNAVAILABLE: LinkedIn connections are temporarily unavailable"),
}
SHAPES = ("error", "code", "plain", "zod")


@dataclass
class Rule:
    kind: str
    path: str | None
    count: int | None
    probability: float | None
    after: bool  # the action takes effect, then the error is answered (a lost response)
    shape: str


# --- injected errors ----------------------------------------------------------------------------------

def injected(fake: ConnectSafelyFake, pattern: str) -> Rule | None:
    """The rule that answers this call of route `pattern`, if any (counting it down)."""
    for rule in fake.rules:
        if rule.path is not None and rule.path.strip("/") != pattern:
            continue
        if rule_fires(rule, fake.random.random):
            return rule
    return None


def injected_error(fake: ConnectSafelyFake, rule: Rule, now: dt.datetime) -> CSError:
    from runner.providers.connectsafely.fake import HOLD, QUOTAS

    status, message = INJECTABLE[rule.kind]
    extra: dict[str, Any] = {}
    headers: dict[str, str] = {}
    if rule.kind == "RATE_LIMITED":
        headers = {"Retry-After": "60", "X-RateLimit-Action": "WRITE", "X-RateLimit-Limit": "15",
                   "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": iso(now + dt.timedelta(seconds=60))}
    elif rule.kind == "QUOTA_CONNECT":
        end = QUOTAS["CONNECT"].window(now)[1]
        message = f"Rate limit exceeded for CONNECT: 90/90 used. Resets at {iso(end)}"
        extra = {"holdUntil": iso(now + HOLD)}
        headers = fake.quota_headers("CONNECT", QUOTAS["CONNECT"], 90, end)
    code = "validation_error" if rule.kind == "VALIDATION" else rule.kind.lower()
    return CSError(status, message, shape=rule.shape, code=code, extra=extra, headers=headers)


# --- control endpoints ----------------------------------------------------------------------------------

def control(fake: ConnectSafelyFake, method: str, name: str, data: Any, query: Mapping[str, str]) -> Any:
    data = data if isinstance(data, dict) else {}
    # Deliveries are posted outside the lock: a receiver may call the API back meanwhile.
    if name == "clock":
        if method == "POST":
            with fake.lock:
                fake.clock.control(data)
            fake.deliver_due()
        return {"now": iso(fake.clock())}
    if name == "webhooks":
        return {"delivered": fake.deliver_due()}
    with fake.lock:
        if name == "errors":
            return _errors(fake, method, data)
        if name == "latency":
            fake.latency_ms = max(0.0, float(data.get("ms", 0)))
            return {"ms": fake.latency_ms}
        if name == "ledger":
            return {"actions": list(fake.ledger)}
        if name == "quotas":
            account = str(query.get("account_id") or data.get("account_id") or "default")
            return {"quotas": [fake.quota_usage(account, a, fake.clock()) for a in fake.quota_limits]}
        if name == "auth":
            account = str(data.get("account_id", ""))
            (fake.world.expire_auth if data.get("state") == "expired" else fake.world.restore_auth)(account)
            return {"account_id": account, "state": data.get("state", "ok")}
        if name == "profiles":
            ids = data.get("profile_ids")
            if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
                raise CSError(400, "profile_ids must be a list of public profile ids")
            account = str(data.get("account_id", "default"))
            return {"introduced": fake.introduce(account, [f"https://www.linkedin.com/in/{i}" for i in ids])}
        if name == "replies":
            return _reply_now(fake, str(data.get("account_id", "default")), str(data.get("profile_id", "")),
                              str(data.get("text") or "Thanks, happy to talk."))
    raise CSError(404, f"no control endpoint /_fake/{name}")


def _errors(fake: ConnectSafelyFake, method: str, data: Mapping[str, Any]) -> Any:
    if method == "DELETE":
        fake.rules.clear()
        return {"rules": 0}
    kind = str(data.get("kind", ""))
    if kind not in INJECTABLE:
        raise CSError(400, f"unknown kind {kind!r}; expected one of {', '.join(sorted(INJECTABLE))}")
    shape = str(data.get("shape") or "error")
    if shape not in SHAPES:
        raise CSError(400, f"unknown shape {shape!r}; expected one of {', '.join(SHAPES)}")
    count, probability = data.get("count"), data.get("probability")
    if (count is None) == (probability is None):
        raise CSError(400, "give either count or probability")
    fake.rules.append(Rule(kind, data.get("path"), None if count is None else int(count),
                           None if probability is None else float(probability), bool(data.get("after")), shape))
    return {"rules": len(fake.rules)}


def _reply_now(fake: ConnectSafelyFake, account: str, profile_id: str, text: str) -> Any:
    """The lead writes now (delivered by the next webhook run, seen by the next poll)."""
    lead = fake.lead_by_id(profile_id)
    now = fake.clock()
    with fake.world._lock:
        state = fake.world._world.lead(account, lead.key, now)
        number = len(state.replies)
        message_id = fake.world._world.ident("msg", account, lead.key, f"manual-reply:{number}")
        state.replies.append(now)
        state.messages.append(Note(message_id, now, True))
        if state.thread_at is None:
            state.thread_at = now
    fake.texts[message_id] = text
    return {"message_urn": f"urn:li:messagingMessage:{message_id}", "at": iso(now)}


# --- simulate --wire ------------------------------------------------------------------------------------

def wire_check(fake: ConnectSafelyFake) -> tuple[dict[str, Any], list[str]]:
    """What `simulate --wire` reports beyond the ledger: invitations per account and week against the
    quota, requests refused over a quota, and whether every first message after a noted invite went
    into the conversation that invite created."""
    from runner.providers.connectsafely.fake import QUOTAS

    facts: dict[str, Any] = {}
    problems: list[str] = []
    quota = fake.quota_limits.get("CONNECT") or QUOTAS["CONNECT"]
    weeks: collections.Counter[tuple[str, str]] = collections.Counter()
    for entry in fake.ledger:
        if entry["action"] == "connect":
            at = dt.datetime.fromisoformat(entry["at"].replace("Z", "+00:00"))
            weeks[(entry["account_id"], quota.window(at)[0].date().isoformat())] += 1
    facts["connect_quota"] = quota.limit
    facts["connects_per_week_max"] = max(weeks.values(), default=0)
    facts["connect_weeks"] = {f"{acc} {week}": n for (acc, week), n in sorted(weeks.items())}
    for (acc, week), n in sorted(weeks.items()):
        if n > quota.limit:
            problems.append(f"account {acc} sent {n} invitations in the week from {week}; the quota is {quota.limit}")
    facts["refused_over_quota"] = dict(fake.refused_over_quota)
    for action, n in sorted(fake.refused_over_quota.items()):
        problems.append(f"the driver asked {n} time(s) past the {action} quota")
    firsts = [e for e in fake.ledger if e.get("first_after_noted_invite")]
    facts["first_messages_after_noted_invite"] = len(firsts)
    facts["into_the_invite_conversation"] = sum(1 for e in firsts if e.get("conversation_urn") == e.get("thread_urn"))
    for entry in firsts:
        if entry.get("conversation_urn") != entry.get("thread_urn"):
            problems.append(f"the first message to {entry['lead']} after a noted invite went without that "
                            f"invite's conversationUrn ({entry.get('conversation_urn')})")
    return facts, problems
