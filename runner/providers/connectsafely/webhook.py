"""ConnectSafely `message.received` webhooks: verified, parsed, one event per message.

ConnectSafely POSTs `{"event": "message.received", "object": "event", "data": {…}}` when a LinkedIn
message or InMail reaches a connected account (its only event; there is none for acceptances). It
signs the raw body: `X-Webhook-Signature: sha256=<hex HMAC-SHA256(raw body, secret)>`, the secret
shown once when the webhook is created in the dashboard. It delivers at least once (three attempts:
now, ~10 s, ~20 s), in no particular order, and wants a 2xx within 15 seconds.

`parse_webhook` checks the signature in constant time before reading anything (a forged, unsigned
or re-signed body raises and changes nothing), then returns one `replied` event whose id is the
message's `message_urn`: a re-delivery, or the same message found by polling, is the same event
(the engine stores an event id once). Parsing is quick and touches nothing: the daemon stores the
events and answers, well within 15 s. The secret comes from the environment (`secret_from_env`).
"""
from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import os
from collections.abc import Callable, Mapping
from typing import Any

from runner.language.diagnostics import UserError
from runner.language.urls import normalize_profile_url
from runner.providers.base import ErrorKind, ProviderError, ProviderEvent
from runner.providers.connectsafely.shapes import parse_moment
from runner.providers.http import register_secret

SIGNATURE_HEADER = "X-Webhook-Signature"
SECRET_ENV = "CONNECTSAFELY_WEBHOOK_SECRET"
EVENT = "message.received"


def sign(body: bytes, secret: str) -> str:
    """The header value ConnectSafely sends for `body`: `sha256=<hex>`."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def secret_from_env(environ: Mapping[str, str] | None = None, variable: str = SECRET_ENV) -> str:
    """The webhook secret from the environment (never from seqrun.yaml); a UserError when unset."""
    value = (os.environ if environ is None else environ).get(variable, "")
    if not value:
        raise UserError(f"environment variable {variable} is not set: put the secret ConnectSafely showed when "
                        "you created the webhook there")
    register_secret(value)
    return value


def verify(headers: Mapping[str, str], body: bytes, secret: str) -> None:
    """INVALID_INPUT (status 401) unless `X-Webhook-Signature` is the body's HMAC under `secret`."""
    given = next((v for k, v in headers.items() if k.lower() == SIGNATURE_HEADER.lower()), "")
    if not secret:
        raise ProviderError(ErrorKind.INVALID_INPUT, "webhook refused: no secret configured to check it against",
                            status=401, label="BAD_SIGNATURE")
    expected = sign(body, secret)
    # compare_digest on bytes of any length: a wrong length takes the same path as a wrong digest.
    if not hmac.compare_digest(given.strip().encode(), expected.encode()):
        raise ProviderError(ErrorKind.INVALID_INPUT, f"webhook refused: missing or wrong {SIGNATURE_HEADER}",
                            status=401, label="BAD_SIGNATURE")


def parse_webhook(headers: Mapping[str, str], body: bytes, *, secret: str, received_at: dt.datetime,
                  lead_for_urn: Callable[[str], str | None] | None = None) -> list[ProviderEvent]:
    """The events of one delivery: one `replied` for `message.received`, none for other events.

    The lead is named by `sender.profile_url` when the payload has one; otherwise `lead_for_urn`
    (the daemon's look-up of a lead by the profile URN the driver stored) may name it from
    `sender.id`; the URN is kept in the event's data either way.
    """
    verify(headers, body, secret)
    try:
        payload: Any = json.loads(body)
    except ValueError:
        raise ProviderError(ErrorKind.INVALID_INPUT, "webhook body is not JSON", status=400, label="BAD_BODY") from None
    if not isinstance(payload, dict):
        raise ProviderError(ErrorKind.INVALID_INPUT, "webhook body is not an object", status=400, label="BAD_BODY")
    if payload.get("event") != EVENT:
        return []
    data = payload.get("data")
    if not isinstance(data, dict):
        raise ProviderError(ErrorKind.INVALID_INPUT, "message.received without data", status=400, label="BAD_BODY")
    message_urn = data.get("message_urn") or data.get("id")
    if not isinstance(message_urn, str) or not message_urn:
        raise ProviderError(ErrorKind.INVALID_INPUT, "message.received without message_urn", status=400,
                            label="BAD_BODY")
    sender = got if isinstance(got := data.get("sender"), dict) else {}
    sender_urn = sender.get("id") if isinstance(sender.get("id"), str) else None
    lead_key = _key(sender.get("profile_url"))
    if lead_key is None and sender_urn and lead_for_urn is not None:
        lead_key = lead_for_urn(sender_urn)
    account = data.get("account_id")
    occurred = parse_moment(data.get("timestamp")) or received_at
    return [ProviderEvent(f"connectsafely:message:{message_urn}", "replied", occurred,
                          str(account) if account else None, lead_key,
                          str(data["conversation_id"]) if data.get("conversation_id") else None,
                          {"message_urn": message_urn, "sender_urn": sender_urn, "sender_name": sender.get("name")})]


def _key(url: object) -> str | None:
    if not isinstance(url, str) or not url:
        return None
    try:
        return normalize_profile_url(url)[0]
    except ValueError:
        return None
