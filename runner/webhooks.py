"""Receiving provider webhooks: verify each raw delivery, parse it, queue its events for the engine.

The contract a driver that takes webhooks implements (docs/providers/README.md#webhooks):

    def verify_and_parse(self, headers: Mapping[str, str], body: bytes, *, secrets: Sequence[str],
                         received_at: dt.datetime) -> list[ProviderEvent]

- It verifies first, on the raw body and headers exactly as they came off the wire, in constant
  time, against any of `secrets` (more than one while a secret is being rotated). A refused delivery
  raises `ProviderError(INVALID_INPUT, status=401)` before anything in the body is read.
- It then parses; a body the provider would never send raises `INVALID_INPUT` with `status=400`.
- A delivery may also feed the driver's own state (Salesflow's inbox-sync pages); the driver does
  that inside the call, thread-safely, since receivers run on their own threads.
- It returns the events for the engine, each with an `event_id` that a re-delivery repeats.
- Optionally `receive_webhooks()`, called when the driver is mounted: from then on it may count on
  deliveries (Salesflow refuses to wait for inbox syncs otherwise).
- Optionally a `path` keyword: a provider whose deliveries carry no secret (Salesflow's campaign
  webhooks) puts the proof in the URL instead, `POST /webhooks/{provider}/{path}`; its driver gets
  that `path` and verifies it like a header. A driver without the keyword has no URL below its own.

`WebhookInbox` is what an HTTP endpoint calls (`seqrun serve` will mount it; `simulate --wire`
serves it with `WebhookReceiver` on 127.0.0.1): it routes a delivery by provider name to the
mounted drivers with the provider's secrets, answers a status, and queues the verified events,
once per event id, until the engine's own thread drains them (`Runtime.webhook_events`), so that
only that thread writes the store.
"""
from __future__ import annotations

import collections
import datetime as dt
import inspect
import json
import logging
import threading
from typing import Any, Callable, Iterable, Mapping, Protocol, Sequence

from .providers.base import ProviderError, ProviderEvent
from .providers.fakeserver import Reply

log = logging.getLogger(__name__)
UTC = dt.timezone.utc

#: The credential name a sender's `credentials_env` gives to its provider's webhook secret.
SECRET_CREDENTIAL = "webhook_secret"
#: Where the receiver takes each provider's deliveries: POST {PATH_PREFIX}{provider}.
PATH_PREFIX = "/webhooks/"
SEEN_SIZE = 200_000  # event ids remembered for de-duplication within one process


class WebhookDriver(Protocol):
    def verify_and_parse(self, headers: Mapping[str, str], body: bytes, *, secrets: Sequence[str],
                         received_at: dt.datetime) -> list[ProviderEvent]: ...


def verify_and_parse(driver: Any, headers: Mapping[str, str], body: bytes, *, secrets: Sequence[str],
                     received_at: dt.datetime, path: str = "") -> list[ProviderEvent]:
    """The events of one delivery as `driver` verifies and parses it (see the module docstring)."""
    parse = getattr(driver, "verify_and_parse", None)
    if not callable(parse):
        raise TypeError(f"{type(driver).__name__} takes no webhooks")
    if takes_path(driver):
        return list(parse(headers, body, secrets=list(secrets), received_at=received_at, path=path))
    return list(parse(headers, body, secrets=list(secrets), received_at=received_at))


def takes_path(driver: Any) -> bool:
    """Whether the driver's webhooks put their proof in the URL below `/webhooks/{provider}/`."""
    parse = getattr(driver, "verify_and_parse", None)
    return callable(parse) and "path" in inspect.signature(parse).parameters


def secrets_by_provider(credentials: Iterable[tuple[str, Mapping[str, str]]]) -> dict[str, list[str]]:
    """Each provider's webhook secrets from its senders' resolved credentials (provider, credentials)."""
    found: dict[str, list[str]] = collections.defaultdict(list)
    for provider, values in credentials:
        secret = values.get(SECRET_CREDENTIAL)
        if secret and secret not in found[provider]:
            found[provider].append(secret)
    return dict(found)


class WebhookInbox:
    """Verified events waiting for the engine, and the counts a report shows."""

    def __init__(self, secrets: Mapping[str, Sequence[str]], *,
                 clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(UTC)) -> None:
        self._secrets = {name: list(values) for name, values in secrets.items()}
        self._clock = clock
        self._drivers: dict[str, list[Any]] = {}
        self._queue: list[ProviderEvent] = []
        self._seen: collections.OrderedDict[str, None] = collections.OrderedDict()
        self._lock = threading.Lock()
        self.stats: collections.Counter[str] = collections.Counter()

    def set_secrets(self, provider: str, secrets: Sequence[str]) -> None:
        """The secrets a delivery to `provider` may carry (several while one is being rotated)."""
        self._secrets[provider] = [s for s in secrets if s]

    def mount(self, provider: str, driver: Any) -> None:
        """Deliveries to `provider` go to `driver` (several drivers of one provider each get them)."""
        drivers = self._drivers.setdefault(provider, [])
        if all(d is not driver for d in drivers):
            drivers.append(driver)
            hook = getattr(driver, "receive_webhooks", None)
            if callable(hook):
                hook()

    @property
    def providers(self) -> list[str]:
        return sorted(self._drivers)

    def receive(self, provider: str, headers: Mapping[str, str], body: bytes, *,
                path: str = "") -> tuple[int, str]:
        """One delivery: (status, reason) for the HTTP answer: (200, "ok") verified, (200, "duplicate")
        verified and every event already taken, else refused. Only verified events are queued.
        `path` is what followed the provider's name in the URL (drivers that take it verify it)."""
        drivers = self._drivers.get(provider)
        if not drivers:
            self.stats["unknown_provider"] += 1
            return 404, f"no webhooks are taken for {provider}"
        if path and not all(takes_path(d) for d in drivers):
            self.stats["unknown_provider"] += 1
            return 404, "not a webhook endpoint"
        secrets = self._secrets.get(provider, [])
        if not secrets:
            # Without a secret nothing can be verified, so nothing is accepted.
            self.stats["refused"] += 1
            log.warning("webhook for %s refused: no webhook secret is configured", provider)
            return 401, "no webhook secret configured"
        received_at = self._clock()
        events: list[ProviderEvent] = []
        for driver in drivers:
            try:
                events += verify_and_parse(driver, headers, body, secrets=secrets, received_at=received_at,
                                           path=path)
            except ProviderError as err:
                status = err.status if err.status in (400, 401) else 400
                self.stats["refused" if status == 401 else "malformed"] += 1
                log.warning("webhook for %s refused (%s): %s", provider, status, err.message)
                return status, err.message
        self.stats["received"] += 1
        fresh = 0
        with self._lock:
            for event in events:
                if event.event_id in self._seen:
                    self.stats["duplicate_events"] += 1
                    continue
                fresh += 1
                self._seen[event.event_id] = None
                if len(self._seen) > SEEN_SIZE:
                    self._seen.popitem(last=False)
                self._queue.append(event)
                self.stats["events"] += 1
        # A verified delivery whose every event was already taken (a provider's retry) changes nothing.
        return (200, "duplicate") if events and not fresh else (200, "ok")

    def drain(self) -> list[ProviderEvent]:
        """The events queued since the last drain, in arrival order (the engine's thread calls it)."""
        with self._lock:
            out, self._queue = self._queue, []
        return out


class WebhookReceiver:
    """An HTTP app (for `runner.providers.fakeserver.FakeHTTPServer`): POST /webhooks/{provider}."""

    def __init__(self, inbox: WebhookInbox) -> None:
        self.inbox = inbox

    def handle(self, method: str, target: str, headers: Mapping[str, str], body: bytes) -> Reply:
        path = target.split("?", 1)[0]
        provider, _, below = path[len(PATH_PREFIX):].strip("/").partition("/")
        if not path.startswith(PATH_PREFIX) or not provider:
            return _answer(404, "not a webhook endpoint")
        if method != "POST":
            return _answer(405, "webhooks are POSTed")
        status, reason = self.inbox.receive(provider, headers, body, path=below)
        return _answer(status, reason)


def _answer(status: int, reason: str) -> Reply:
    return status, {"Content-Type": "application/json"}, json.dumps({"status": status, "reason": reason}).encode()
