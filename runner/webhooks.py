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

`WebhookInbox` is what an HTTP endpoint calls (`seqrun serve` mounts it; `simulate --wire`
serves it with `WebhookReceiver` on 127.0.0.1), from any thread: it routes a delivery by provider
name to the mounted drivers with the provider's secrets and, once verified, appends its events to
the event inbox (runner.store.inbox: unique by provider and event id, the raw body kept, never the
headers) and commits, and only then answers 2xx. A delivery that is refused stores nothing; one that
cannot be stored gets 503, so that the provider delivers it again. The engine applies the stored
events (runner.engine.inbox).
"""
from __future__ import annotations

import collections
import datetime as dt
import inspect
import json
import logging
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol

import peewee

from runner.providers.base import ProviderError, ProviderEvent
from runner.providers.fakeserver import Reply
from runner.store import inbox as store_inbox
from runner.store.inbox import Received

log = logging.getLogger(__name__)
UTC = dt.UTC

#: The credential name a sender's `credentials_env` gives to its provider's webhook secret.
SECRET_CREDENTIAL = "webhook_secret"
#: Where the receiver takes each provider's deliveries: POST {PATH_PREFIX}{provider}.
PATH_PREFIX = "/webhooks/"


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
    """Verifies deliveries and stores their events in the inbox; the counts a report shows."""

    def __init__(self, secrets: Mapping[str, Sequence[str]], *,
                 clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(UTC)) -> None:
        self._secrets = {name: list(values) for name, values in secrets.items()}
        self._clock = clock
        self._drivers: dict[str, list[Any]] = {}
        self._lock = threading.Lock()  # for the counts: deliveries arrive on several threads
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
        verified and every event already stored, else refused. Only verified events are stored, and
        committed before the answer. `path` is what followed the provider's name in the URL (drivers
        that take it verify it)."""
        drivers = self._drivers.get(provider)
        if not drivers:
            self._count("unknown_provider")
            return 404, f"no webhooks are taken for {provider}"
        if path and not all(takes_path(d) for d in drivers):
            self._count("unknown_provider")
            return 404, "not a webhook endpoint"
        secrets = self._secrets.get(provider, [])
        if not secrets:
            # Without a secret nothing can be verified, so nothing is accepted.
            self._count("refused")
            log.debug("webhook for %s refused: no webhook secret is configured", provider)
            return 401, "no webhook secret configured"
        received_at = self._clock()
        events: list[ProviderEvent] = []
        for driver in drivers:
            try:
                events += verify_and_parse(driver, headers, body, secrets=secrets, received_at=received_at,
                                           path=path)
            except ProviderError as err:
                status = err.status if err.status in (400, 401) else 400
                self._count("refused" if status == 401 else "malformed")
                log.debug("webhook for %s refused (%s): %s", provider, status, err.message)
                return status, err.message
        payload = body.decode("utf-8", errors="replace")
        try:
            new = store_inbox.append([Received(event, payload) for event in events], source="webhook",
                                     provider=provider, received_at=received_at)
        except peewee.DatabaseError as exc:
            self._count("unstored")
            log.error("webhook for %s could not be stored: %s", provider, exc)
            return 503, "the delivery could not be stored; deliver it again"
        with self._lock:
            self.stats["received"] += 1
            self.stats["events"] += len(new)
            self.stats["duplicate_events"] += len(events) - len(new)
        # A verified delivery whose every event was already stored (a provider's retry) changes nothing.
        return (200, "duplicate") if events and not new else (200, "ok")

    def _count(self, name: str) -> None:
        with self._lock:
            self.stats[name] += 1


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
        if status >= 400:  # the HTTP side logs the verdict once (`seqrun serve`: runner.server.receiving)
            log.warning("webhook for %s refused (%s): %s", provider, status, reason)
        return _answer(status, reason)


def _answer(status: int, reason: str) -> Reply:
    return status, {"Content-Type": "application/json"}, json.dumps({"status": status, "reason": reason}).encode()
