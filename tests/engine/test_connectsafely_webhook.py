"""ConnectSafely's `message.received` through the engine, as the daemon will apply it: a genuine
delivery marks the lead replied once however often it comes; a forged or unsigned one is refused
by the verifier and changes nothing."""
from __future__ import annotations

import datetime as dt
import json

from runner.providers.base import ErrorKind, ProviderError
from runner.providers.connectsafely.webhook import parse_webhook, sign
from runner.store import Event

from .conftest import HarnessFactory, lead_row, sequence_yaml

SECRET = "whsec_cs_0a1b2c3d4e5f60718293"
WAITING = """\
  - {id: hello, action: message, template: intro.j2, inmail: true, subject: Hello}
  - wait: 5 days
  - end: no_reply
"""


def delivery(at: dt.datetime) -> bytes:
    return json.dumps({"event": "message.received", "object": "event", "data": {
        "id": "urn:li:messagingMessage:2-abc", "message_urn": "urn:li:messagingMessage:2-abc",
        "account_id": "acc-alice", "provider": "LINKEDIN",
        "sender": {"id": "urn:li:fsd_profile:ACoAAanna", "name": "Anna Example",
                   "profile_url": "https://www.linkedin.com/in/anna"},
        "body": "Sounds good", "timestamp": at.isoformat().replace("+00:00", "Z"),
        "conversation_id": "urn:li:messagingThread:2-xyz", "attachments": []}}).encode()


def receive(h, headers: dict[str, str], body: bytes, at: dt.datetime) -> int:  # type: ignore[no-untyped-def]
    """What the daemon's endpoint does: verify and parse, then store and apply; 401 on a bad signature."""
    try:
        events = parse_webhook(headers, body, secret=SECRET, received_at=at)
    except ProviderError as err:
        assert err.kind is ErrorKind.INVALID_INPUT
        return err.status or 400
    for event in events:
        h.engine.apply_event(event, at, source="webhook")
    return 200


def test_forged_and_unsigned_deliveries_change_nothing_and_a_genuine_one_counts_once(
        make_harness: HarnessFactory) -> None:
    h = make_harness(sequence_yaml("s", WAITING))
    h.enroll(lead_row("anna"))
    h.run(days=1)
    before = h.enrollment("anna")
    assert (before.step_id, before.state) == ("hello+1", "active")
    at = h.now + dt.timedelta(hours=1)
    body = delivery(at)

    assert receive(h, {}, body, at) == 401
    assert receive(h, {"X-Webhook-Signature": sign(body, "not-the-secret")}, body, at) == 401
    assert receive(h, {"X-Webhook-Signature": sign(body, SECRET)}, body.replace(b"Sounds good", b"Stop"), at) == 401
    after = h.enrollment("anna")
    assert Event.select().count() == 0
    assert (after.facts, after.due_at, after.state) == (before.facts, before.due_at, before.state)

    genuine = {"X-Webhook-Signature": sign(body, SECRET)}
    assert receive(h, genuine, body, at) == 200
    assert receive(h, genuine, body, at + dt.timedelta(seconds=10)) == 200  # ConnectSafely's second attempt
    assert Event.select().count() == 1
    enr = h.enrollment("anna")
    assert (enr.facts["replied"], enr.due_at) == (True, at)
    h.tick(at)
    assert (h.enrollment("anna").state, h.enrollment("anna").outcome) == ("done", "replied")
