"""Outgoing events: lead events POSTed to the URLs `seqrun.yaml` subscribes, signed the Standard Webhooks way.

The entry point is `Outgoing.deliver_due(now)`, built once per process with `Outgoing.from_config(config,
client)` (None when nothing is subscribed). Each call first derives new events from the ledger into
the outbox (runner.outgoing_derive), then tries the events that are due, a bounded number per call,
each with the client's timeout. It never touches the engine: `seqrun run` calls it between passes,
and `seqrun serve` runs it in a thread of its own, e.g.

    with httpx.Client() as client:
        outgoing = Outgoing.from_config(config, client)   # UserError now if a variable is missing
        while not stopping:
            if outgoing: outgoing.deliver_due(utc_now())
            stop.wait(1.0)

Each delivery carries `webhook-id` (the event id, the same on every retry), `webhook-timestamp`
(seconds, the attempt's) and `webhook-signature: v1,<base64 HMAC-SHA256 of "id.timestamp.body">`
keyed by the secret in the subscription's `secret_env` (`whsec_<base64>` as the Standard Webhooks
libraries make them, or any other text, used as is). A 2xx delivers; anything else (another status,
a timeout, a refused connection) is tried again with exponential backoff and jitter, `MAX_ATTEMPTS`
times in all, after which the event is `failed` (`seqrun status` shows it; `seqrun outgoing retry`
tries it again). A process killed mid-attempt tries the event again after its claim runs out, so a
receiver may see an event twice and dedupes on `webhook-id`. Neither a URL nor a secret is ever
written to the database or a log: errors name the subscription.
"""
from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import hmac
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import httpx

from runner.language.diagnostics import UserError
from runner.language.model import Pos
from runner.outgoing_derive import EVENT_TYPES, derive
from runner.store.outgoing import OutgoingEvent, claim, due_events, mark_delivered, mark_failed_attempt

log = logging.getLogger(__name__)

#: Attempts per event before it is failed; with the delays below they span about a day.
MAX_ATTEMPTS = 10
#: The delay after the first failed attempt, multiplied by 4 each time up to `MAX_DELAY`.
FIRST_DELAY = dt.timedelta(seconds=30)
MAX_DELAY = dt.timedelta(hours=6)
#: Seconds a receiver has to answer.
TIMEOUT = 10.0
#: Events tried per call of `deliver_due`, so one call stays short however long the backlog.
PER_CALL = 50


@dataclass(frozen=True, slots=True)
class Subscription:
    """An `outgoing:` entry of seqrun.yaml: where to POST which events, and the secret's variable."""

    name: str
    secret_env: str
    url: str | None = None  # None: the URL is in the environment variable `url_env`
    url_env: str | None = None
    events: tuple[str, ...] = EVENT_TYPES
    pos: Pos | None = field(default=None, compare=False)

    @property
    def shown_url(self) -> str:
        """The URL as commands show it: one from the environment stays there."""
        return self.url if self.url is not None else f"${self.url_env}"


@dataclass(frozen=True, slots=True)
class _Target:
    sub: Subscription
    url: str
    key: bytes


@dataclass
class DeliveryReport:
    added: int = 0  # events put in the outbox by this call
    delivered: int = 0
    retrying: int = 0
    failed: int = 0


def signing_key(secret: str) -> bytes:
    """The HMAC key of a secret: `whsec_<base64>` decoded (Standard Webhooks), anything else as UTF-8."""
    if secret.startswith("whsec_"):
        return base64.b64decode(secret[len("whsec_"):], validate=True)
    return secret.encode("utf-8")


def sign(key: bytes, message_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` header value for one delivery."""
    digest = hmac.new(key, f"{message_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def backoff(attempt: int, event_id: str) -> dt.timedelta:
    """The wait after failed attempt number `attempt` (1-based): 30 s times 4^(n-1) up to 6 h, then
    between half of it and all of it, the same for the same event and attempt (no herd of retries)."""
    growth: int = 4 ** (attempt - 1)
    base = min(FIRST_DELAY * growth, MAX_DELAY)
    spread = int.from_bytes(hashlib.sha256(f"{event_id}:{attempt}".encode()).digest()[:4], "big") / 2 ** 32
    return base * (0.5 + spread / 2)


class Outgoing:
    """Derives and delivers the events of the configured subscriptions; one per process."""

    def __init__(self, subscriptions: Sequence[Subscription], client: httpx.Client, *,
                 environ: Mapping[str, str] | None = None, clock: Callable[[], dt.datetime] | None = None,
                 timeout: float = TIMEOUT, per_call: int = PER_CALL, max_attempts: int = MAX_ATTEMPTS) -> None:
        env = os.environ if environ is None else environ
        self.targets = {s.name: _Target(s, _url(s, env), _key(s, env)) for s in subscriptions}
        hidden = [t.url for t in self.targets.values() if t.sub.url_env is not None]
        if hidden:  # httpx logs every request's URL (at INFO); one from the environment is a secret
            _HIDE_URLS.urls.update(hidden)
        self.client = client
        self.clock = clock
        self.timeout = timeout
        self.per_call = per_call
        self.max_attempts = max_attempts

    @classmethod
    def from_config(cls, config: object, client: httpx.Client, **options: object) -> Outgoing | None:
        subs = tuple(getattr(config, "outgoing", ()) or ())
        return cls(subs, client, **options) if subs else None  # type: ignore[arg-type]

    def deliver_due(self, now: dt.datetime) -> DeliveryReport:
        """New events into the outbox, then the due ones out; never raises for a receiver's failure.

        A receiver that fails is tried once per call: its other due events wait for the next call
        (untried, so they spend no attempt), and one call lasts at most about a timeout per failing
        subscription plus the deliveries that succeed."""
        report = DeliveryReport()
        report.added = derive([(name, frozenset(t.sub.events)) for name, t in self.targets.items()], now)
        failing: set[str] = set()
        for event in due_events(list(self.targets), now, self.per_call):
            name = event.subscription.name
            if name in failing:
                continue  # its receiver just failed: its other events wait for the next call, untried
            at = self.clock() if self.clock is not None else now
            if not claim(event, at, at + dt.timedelta(seconds=self.timeout + 60)):
                continue  # another process took it
            if not self._attempt(self.targets[name], event, at, report):
                failing.add(name)
        return report

    def _attempt(self, target: _Target, event: OutgoingEvent, at: dt.datetime, report: DeliveryReport) -> bool:
        """One POST of one event; whether the receiver took it."""
        eid, body, attempt = event.event_id, event.body.encode("utf-8"), event.attempts + 1
        stamp = int(at.timestamp())
        headers = {"content-type": "application/json", "user-agent": "seqrun-webhooks",
                   "webhook-id": eid, "webhook-timestamp": str(stamp),
                   "webhook-signature": sign(target.key, eid, stamp, body)}
        retry_after: float | None = None
        try:
            response = self.client.post(target.url, content=body, headers=headers, timeout=self.timeout)
            if 200 <= response.status_code < 300:
                mark_delivered(event.id, at)
                report.delivered += 1
                return True
            error = f"HTTP {response.status_code} {response.reason_phrase}".rstrip()
            retry_after = _retry_after(response)
        except httpx.TimeoutException:
            error = f"no answer within {self.timeout:g} s"
        except (httpx.HTTPError, httpx.InvalidURL) as exc:  # the message may quote the URL, maybe a secret
            error = f"could not connect ({type(exc).__name__})"
        if attempt >= self.max_attempts:
            mark_failed_attempt(event.id, f"{error} (gave up after {attempt} attempts)", None)
            report.failed += 1
            log.warning("outgoing %s: event %s (%s) failed: %s; gave up after %d attempts (seqrun outgoing retry)",
                        target.sub.name, eid, event.type, error, attempt)
            return False
        wait = backoff(attempt, eid)
        if retry_after is not None:
            wait = min(max(wait, dt.timedelta(seconds=retry_after)), MAX_DELAY)
        mark_failed_attempt(event.id, error, at + wait)
        report.retrying += 1
        log.warning("outgoing %s: event %s (%s) attempt %d failed: %s; trying again in %d s",
                    target.sub.name, eid, event.type, attempt, error, wait.total_seconds())
        return False


class _HiddenUrls(logging.Filter):
    """Replaces the URLs of url_env subscriptions in the records of httpx's logger by `<url_env URL>`."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if self.urls:
            message = record.getMessage()
            hidden = message
            for url in self.urls:
                hidden = hidden.replace(url, "<url_env URL>")
            if hidden != message:
                record.msg, record.args = hidden, ()
        return True


_HIDE_URLS = _HiddenUrls()
logging.getLogger("httpx").addFilter(_HIDE_URLS)


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after", "").strip()
    return float(value) if value.isdigit() else None


def _variable(sub: Subscription, variable: str, key: str, env: Mapping[str, str]) -> str:
    value = env.get(variable, "").strip()
    if not value:
        raise UserError(f"outgoing {sub.name}: environment variable {variable} ({key}) is not set")
    return value


def _key(sub: Subscription, env: Mapping[str, str]) -> bytes:
    secret = _variable(sub, sub.secret_env, "secret_env", env)
    try:
        return signing_key(secret)
    except (binascii.Error, ValueError):
        raise UserError(f"outgoing {sub.name}: environment variable {sub.secret_env} (secret_env) starts with "
                        "whsec_ but the rest is not base64, as a Standard Webhooks secret is (the value is "
                        "not shown)") from None


def _url(sub: Subscription, env: Mapping[str, str]) -> str:
    if sub.url is not None:
        return sub.url
    assert sub.url_env is not None
    url = _variable(sub, sub.url_env, "url_env", env)
    if not url.lower().startswith(("http://", "https://")) or any(c.isspace() for c in url):
        raise UserError(f"outgoing {sub.name}: environment variable {sub.url_env} (url_env) does not hold an "
                        "http(s) URL (the value is not shown)")
    return url
