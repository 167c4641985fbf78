"""ConnectSafely `message.received`: the signature is checked in constant time before anything is
read, a forged or unsigned delivery is refused, a re-delivery is the same event, and the fake
delivers signed webhooks with ConnectSafely's retries."""
from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
from typing import Any

import pytest

from runner.language.diagnostics import UserError
from runner.providers.base import ErrorKind
from runner.providers.connectsafely import webhook
from runner.providers.connectsafely.webhook import parse_webhook, secret_from_env, sign
from runner.providers.fakeserver import FakeHTTPServer
from runner.providers.http import redact

from .connectsafely_harness import ACCOUNT, START, ConnectSafelyHarness
from .contract import expect_error

UTC = dt.UTC
SECRET = "whsec_cs_6f5e4d3c2b1a09f8e7d6"
MESSAGE = "urn:li:messagingMessage:2-ZTI4OGQ3ZDQtN2Q1"
THREAD = "urn:li:messagingThread:2-ZTI4OGQ3ZDQ"
SENDER_URN = "urn:li:fsd_profile:ACoAABcdefghijklmnopqrstuv"


def delivery(**data: Any) -> bytes:
    body = {"event": "message.received", "object": "event", "data": {
        "id": MESSAGE, "message_urn": MESSAGE, "account_id": ACCOUNT, "provider": "LINKEDIN",
        "sender": {"id": SENDER_URN, "name": "Jane Doe", "profile_url": "https://www.linkedin.com/in/jane-doe/",
                   "profile_picture": None},
        "body": "Sounds good", "timestamp": "2026-03-02T14:33:21.000Z", "conversation_id": THREAD,
        "attachments": [], **data}}
    return json.dumps(body).encode()


def signed(body: bytes, secret: str = SECRET) -> dict[str, str]:
    return {"Content-Type": "application/json", "X-Webhook-Signature": sign(body, secret)}


def test_a_signed_message_received_is_one_reply_named_by_its_message_urn() -> None:
    body = delivery()
    assert signed(body)["X-Webhook-Signature"] == "sha256=" + hmac.new(SECRET.encode(), body,
                                                                      hashlib.sha256).hexdigest()
    (event,) = parse_webhook(signed(body), body, secret=SECRET, received_at=START)
    assert (event.event_id, event.kind, event.occurred_at) == (
        f"connectsafely:message:{MESSAGE}", "replied", dt.datetime(2026, 3, 2, 14, 33, 21, tzinfo=UTC))
    assert (event.account_id, event.lead_key, event.conversation_id) == (ACCOUNT, "jane-doe", THREAD)
    assert event.data == {"message_urn": MESSAGE, "sender_urn": SENDER_URN, "sender_name": "Jane Doe"}


@pytest.mark.parametrize("headers", [
    {},  # unsigned
    {"X-Webhook-Signature": ""},
    {"X-Webhook-Signature": sign(delivery(), "someone-elses-secret")},  # forged
    {"X-Webhook-Signature": sign(delivery(), SECRET).removeprefix("sha256=")},  # no scheme
    {"X-Webhook-Signature": sign(delivery(), SECRET)[:-2]},  # another length
    {"X-Webhook-Signature": sign(delivery(body="Sounds good!"), SECRET)},  # another body's signature
])
def test_a_forged_or_unsigned_delivery_is_refused_before_it_is_read(headers: dict[str, str]) -> None:
    err = expect_error(ErrorKind.INVALID_INPUT, lambda: parse_webhook(headers, delivery(), secret=SECRET,
                                                                      received_at=START))
    assert (err.status, err.label, err.message) == (401, "BAD_SIGNATURE",
                                                    "webhook refused: missing or wrong X-Webhook-Signature")


def test_without_a_secret_nothing_is_accepted() -> None:
    body = delivery()
    err = expect_error(ErrorKind.INVALID_INPUT, lambda: parse_webhook(signed(body, ""), body, secret="",
                                                                      received_at=START))
    assert err.message == "webhook refused: no secret configured to check it against"


def test_the_signature_is_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    compared: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest
    monkeypatch.setattr(webhook.hmac, "compare_digest", lambda a, b: compared.append((a, b)) or real(a, b))
    body = delivery()
    parse_webhook(signed(body), body, secret=SECRET, received_at=START)
    assert compared == [(sign(body, SECRET).encode(), sign(body, SECRET).encode())]


def test_a_redelivery_and_the_same_message_in_other_json_are_the_same_event() -> None:
    first = delivery()
    again = json.dumps(json.loads(first), indent=2, sort_keys=True).encode()  # another serialisation
    one = parse_webhook(signed(first), first, secret=SECRET, received_at=START)
    two = parse_webhook(signed(again), again, secret=SECRET, received_at=START + dt.timedelta(seconds=20))
    assert [e.event_id for e in one] == [e.event_id for e in two]


def test_the_lead_is_found_by_url_or_by_the_urn_the_driver_stored() -> None:
    body = delivery(sender={"id": SENDER_URN, "name": "Jane Doe", "profile_url": None})
    (event,) = parse_webhook(signed(body), body, secret=SECRET, received_at=START)
    assert (event.lead_key, event.data["sender_urn"]) == (None, SENDER_URN)
    (event,) = parse_webhook(signed(body), body, secret=SECRET, received_at=START,
                             lead_for_urn={SENDER_URN: "jane-doe"}.get)
    assert event.lead_key == "jane-doe"


def test_other_events_are_none_and_a_bad_body_is_refused() -> None:
    other = json.dumps({"event": "account.updated", "data": {}}).encode()
    assert parse_webhook(signed(other), other, secret=SECRET, received_at=START) == []
    for body, message in ((b"not json", "webhook body is not JSON"),
                          (b"[1, 2]", "webhook body is not an object"),
                          (json.dumps({"event": "message.received", "data": {"body": "x"}}).encode(),
                           "message.received without message_urn")):
        err = expect_error(ErrorKind.INVALID_INPUT, lambda body=body: parse_webhook(signed(body), body, secret=SECRET,
                                                                          received_at=START))
        assert (err.status, err.message) == (400, message)


def test_the_secret_comes_from_the_environment_and_is_never_shown() -> None:
    with pytest.raises(UserError) as info:
        secret_from_env({})
    assert str(info.value) == ("environment variable CONNECTSAFELY_WEBHOOK_SECRET is not set: put the secret "
                               "ConnectSafely showed when you created the webhook there")
    assert secret_from_env({"CONNECTSAFELY_WEBHOOK_SECRET": SECRET}) == SECRET
    assert redact(f"secret was {SECRET}") == "secret was [redacted]"


# --- the fake's deliveries ------------------------------------------------------------------------------

class Receiver:
    def __init__(self, statuses: list[int]) -> None:
        self.statuses = statuses
        self.got: list[tuple[dict[str, str], bytes]] = []

    def handle(self, method: str, target: str, headers: Any, body: bytes) -> Any:
        self.got.append((dict(headers), body))
        status = self.statuses.pop(0) if self.statuses else 204
        return status, {}, b""


def test_the_fake_delivers_signed_replies_that_the_parser_accepts() -> None:
    receiver = Receiver([])
    with FakeHTTPServer(receiver) as hooks:
        h = ConnectSafelyHarness(budgets=None, webhook_url=hooks.url + "/hooks/connectsafely", webhook_secret=SECRET)
        try:
            who = h.fresh_lead()
            h.provider.connect(h.account, who, note="Hi", key="c")
            h.make_accept(who)
            sent = h.provider.send_message(h.account, who, text="Thanks!", conversation_id=None, subject=None,
                                           inmail=False, key="m")
            h.control("POST", "clock", advance_seconds=3 * 3600)  # the lead answers after 3 hours
            polled = h.provider.poll_events(h.account, since=sent.performed_at)
            assert h.control("POST", "webhooks") == {"delivered": []}  # already delivered on the clock move
        finally:
            h.close()
    ((headers, body),) = receiver.got
    (event,) = parse_webhook(headers, body, secret=SECRET, received_at=START,
                             lead_for_urn=lambda urn: who.key if urn == sent.provider_ids["profile_urn"] else None)
    (reply,) = [e for e in polled.events if e.kind == "replied"]
    assert (event.event_id, event.lead_key, event.conversation_id, event.account_id) == (
        reply.event_id, who.key, sent.conversation_id, ACCOUNT)


def test_a_failing_receiver_gets_three_attempts_ten_and_twenty_seconds_apart() -> None:
    receiver = Receiver([500, 503])
    with FakeHTTPServer(receiver) as hooks:
        h = ConnectSafelyHarness(budgets=None, webhook_url=hooks.url + "/hooks", webhook_secret=SECRET)
        try:
            h.control("POST", "replies", account_id=ACCOUNT, profile_id="kim-lee", text="Hello there")
            (delivered,) = h.control("POST", "webhooks")["delivered"]
            assert (delivered["attempts"], delivered["status"], delivered["lead"]) == (3, 204, "kim-lee")
            assert h.slept == [10.0, 20.0]
            assert h.control("POST", "webhooks") == {"delivered": []}  # once delivered, never again
        finally:
            h.close()
    bodies = {body for _, body in receiver.got}
    assert len(receiver.got) == 3 and len(bodies) == 1  # the same body every time: one event
    assert json.loads(bodies.pop())["data"]["body"] == "Hello there"
