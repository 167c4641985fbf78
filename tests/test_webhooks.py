"""The shared webhook plumbing (runner/webhooks.py): routes, refusals, de-duplication, and the engine
applying what a receiver queued, in its own thread, once per event id."""
from __future__ import annotations

import datetime as dt
import json
import threading
from typing import Any, Callable, Iterator, Mapping, Sequence

import httpx
import pytest

from runner.providers.base import ErrorKind, ProviderError, ProviderEvent
from runner.providers.edges.driver import EdgesProvider
from runner.providers.fakeserver import FakeHTTPServer
from runner.providers.http import make_client
from runner.webhooks import WebhookReceiver, secrets_by_provider, verify_and_parse
from tests.providers.stored_inbox import StoredInbox

UTC = dt.timezone.utc
AT = dt.datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


class Echo:
    """A driver whose deliveries are `{"events": [[event id, kind, lead]]}` behind header X-Token."""

    def __init__(self) -> None:
        self.mounted = False

    def receive_webhooks(self) -> None:
        self.mounted = True

    def verify_and_parse(self, headers: Mapping[str, str], body: bytes, *, secrets: Sequence[str],
                         received_at: dt.datetime) -> list[ProviderEvent]:
        if headers.get("x-token") not in secrets:
            raise ProviderError(ErrorKind.INVALID_INPUT, "webhook refused: bad token", status=401)
        try:
            items = json.loads(body)["events"]
        except (ValueError, KeyError):
            raise ProviderError(ErrorKind.INVALID_INPUT, "webhook body refused", status=400) from None
        return [ProviderEvent(i, kind, received_at, "acc-alice", lead) for i, kind, lead in items]


def post(server: FakeHTTPServer, path: str, body: Any, token: str | None = "t-1") -> httpx.Response:
    headers = {"X-Token": token} if token else {}
    return httpx.post(server.url + path, content=json.dumps(body).encode(), headers=headers)


@pytest.fixture
def make_inbox() -> Iterator[Callable[..., StoredInbox]]:
    """Inboxes over a store of their own, closed after the test."""
    made: list[StoredInbox] = []

    def make(secrets: Mapping[str, Sequence[str]]) -> StoredInbox:
        made.append(StoredInbox(secrets, clock=lambda: AT))
        return made[-1]

    yield make
    for inbox in made:
        inbox.close()


def test_the_receiver_routes_verifies_and_queues_each_event_once(make_inbox: Callable[..., StoredInbox]) -> None:
    driver = Echo()
    inbox = make_inbox({"echo": ["t-0", "t-1"]})  # two secrets: one is being rotated
    inbox.mount("echo", driver)
    assert driver.mounted and inbox.providers == ["echo"]
    with FakeHTTPServer(WebhookReceiver(inbox)) as server:
        one = {"events": [["e-1", "accepted", "ann"]]}
        assert post(server, "/webhooks/echo", one).status_code == 200
        assert post(server, "/webhooks/echo", one).status_code == 200  # a re-delivery
        assert post(server, "/webhooks/echo", {"events": [["e-2", "replied", "bob"]]}, token="t-0").status_code == 200
        refused = post(server, "/webhooks/echo", one, token="wrong")
        assert (refused.status_code, refused.json()) == (401, {"status": 401, "reason": "webhook refused: bad token"})
        assert post(server, "/webhooks/echo", {"nope": 1}).status_code == 400
        assert post(server, "/webhooks/other", one).json() == {"status": 404,
                                                               "reason": "no webhooks are taken for other"}
        assert post(server, "/elsewhere", one).status_code == 404
        assert httpx.get(server.url + "/webhooks/echo").status_code == 405
    assert [(e.event_id, e.kind, e.occurred_at) for e in inbox.drain()] == [("e-1", "accepted", AT),
                                                                           ("e-2", "replied", AT)]
    assert inbox.drain() == []
    assert dict(inbox.stats) == {"received": 3, "events": 2, "duplicate_events": 1, "refused": 1, "malformed": 1,
                                 "unknown_provider": 1}


def test_a_provider_without_a_secret_accepts_nothing(make_inbox: Callable[..., StoredInbox]) -> None:
    inbox = make_inbox({})
    inbox.mount("echo", Echo())
    assert inbox.receive("echo", {"x-token": ""}, b'{"events": []}') == (401, "no webhook secret configured")


def test_secrets_come_from_the_senders_credentials() -> None:
    assert secrets_by_provider([("salesflow", {"api_key": "k", "webhook_secret": "s-1"}),
                                ("salesflow", {"webhook_secret": "s-2"}), ("salesflow", {"webhook_secret": "s-1"}),
                                ("edges", {"api_key": "k"})]) == {"salesflow": ["s-1", "s-2"]}


def test_verify_and_parse_needs_a_driver_that_takes_webhooks() -> None:
    with pytest.raises(TypeError, match="object takes no webhooks"):
        verify_and_parse(object(), {}, b"", secrets=["s"], received_at=AT)


def test_edges_plugs_into_the_same_contract() -> None:
    with make_client("http://127.0.0.1:9/v1") as client:
        driver = EdgesProvider(client)
        body = json.dumps({"event_type": "integration", "event": "AUTH_EXPIRED", "identity_uid": "id-1"}).encode()
        (event,) = verify_and_parse(driver, {"X-Webhook-Secret": "new"}, body, secrets=["old", "new"], received_at=AT)
        assert (event.kind, event.account_id) == ("auth_expired", "id-1")
        with pytest.raises(ProviderError) as refused:
            verify_and_parse(driver, {"X-Webhook-Secret": "other"}, body, secrets=["old", "new"], received_at=AT)
        assert refused.value.status == 401


class Pathed(Echo):
    """A driver whose proof is in the URL (Salesflow's campaign webhooks carry no secret): it takes the
    part of the path after the provider's name."""

    def verify_and_parse(self, headers: Mapping[str, str], body: bytes, *, secrets: Sequence[str],
                         received_at: dt.datetime, path: str = "") -> list[ProviderEvent]:
        if path not in (f"alice/{s}" for s in secrets):
            raise ProviderError(ErrorKind.INVALID_INPUT, "webhook refused: not this sender's URL", status=401)
        return [ProviderEvent(i, kind, received_at, "acc-alice", lead) for i, kind, lead in json.loads(body)["events"]]


def test_a_driver_that_takes_the_path_gets_what_follows_the_provider(make_inbox: Callable[..., StoredInbox]) -> None:
    inbox = make_inbox({"pathed": ["t-1"], "echo": ["t-1"]})
    inbox.mount("pathed", Pathed())
    inbox.mount("echo", Echo())
    with FakeHTTPServer(WebhookReceiver(inbox)) as server:
        one = {"events": [["e-1", "accepted", "ann"]]}
        assert post(server, "/webhooks/pathed/alice/t-1", one, token=None).status_code == 200
        assert post(server, "/webhooks/pathed/alice/wrong", one, token=None).status_code == 401
        assert post(server, "/webhooks/pathed", one, token=None).status_code == 401
        # A driver that does not take the path has no URL below its own.
        assert post(server, "/webhooks/echo/alice/t-1", one).json() == {"status": 404,
                                                                         "reason": "not a webhook endpoint"}
    assert [e.event_id for e in inbox.drain()] == ["e-1"]


def test_a_verified_delivery_is_committed_before_the_answer_with_its_body_and_no_headers(
        make_inbox: Callable[..., StoredInbox]) -> None:
    from runner.store.models import InboxEvent

    inbox = make_inbox({"echo": ["t-1"]})
    inbox.mount("echo", Echo())
    body = json.dumps({"events": [["e-1", "replied", "ann"]]}).encode()
    assert inbox.receive("echo", {"x-token": "wrong"}, body) == (401, "webhook refused: bad token")
    assert InboxEvent.select().count() == 0  # refused: nothing stored
    seen: list[tuple[str, str, str | None, str | None, str]] = []

    def look() -> None:  # another thread: another connection sees only what was committed
        seen.extend((r.event_id, r.source, r.lead_key, r.payload, r.state) for r in InboxEvent.select())

    assert inbox.receive("echo", {"x-token": "t-1"}, body) == (200, "ok")
    other = threading.Thread(target=look)
    other.start()
    other.join()
    assert seen == [("e-1", "webhook", "ann", body.decode(), "pending")]
    assert "t-1" not in json.dumps([list(r) for r in InboxEvent.select().tuples()], default=str)  # no header


def test_a_delivery_that_cannot_be_stored_gets_503_so_that_it_comes_again(
        make_inbox: Callable[..., StoredInbox], monkeypatch: pytest.MonkeyPatch) -> None:
    import peewee

    from runner.store import inbox as store_inbox

    inbox = make_inbox({"echo": ["t-1"]})
    inbox.mount("echo", Echo())

    def full(*args: Any, **kwargs: Any) -> list[int]:
        raise peewee.OperationalError("database or disk is full")

    monkeypatch.setattr(store_inbox, "append", full)
    body = json.dumps({"events": [["e-1", "replied", "ann"]]}).encode()
    assert inbox.receive("echo", {"x-token": "t-1"}, body) == (503, "the delivery could not be stored; deliver it again")
    assert inbox.stats["unstored"] == 1 and inbox.drain() == []
