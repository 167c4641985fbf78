"""Edges integration webhooks: AUTH_EXPIRED and AUTH_SUCCESS of an identity's LinkedIn session.

Edges signs nothing; its dashboard (Developer Settings → Webhooks) lets you add custom headers.
seqrun's choice: a shared secret in `X-Webhook-Secret`, compared in constant time; a delivery
without it, or with another value, is refused before anything is read. The body, as third-party
code shows it: `{"event_type": "integration", "event": "AUTH_EXPIRED", "data": {"reason": …}}`; the
identity is read from `identity_uid` (or `identity_id`, at the root or in `data`), an assumption
written down in docs/providers/edges.md. The daemon mounts the endpoint; this module only parses.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
from collections.abc import Mapping
from typing import Any

from runner.providers.base import ErrorKind, ProviderError, ProviderEvent
from runner.providers.http import parse_time

SECRET_HEADER = "X-Webhook-Secret"
EVENTS = {"AUTH_EXPIRED": "auth_expired", "AUTH_FAILED": "auth_expired", "AUTH_SUCCESS": "auth_restored"}


def parse_webhook(headers: Mapping[str, str], body: bytes, *, secret: str,
                  received_at: dt.datetime) -> list[ProviderEvent]:
    """The events of one delivery (an unknown event: none); a bad secret or body raises INVALID_INPUT."""
    given = next((v for k, v in headers.items() if k.lower() == SECRET_HEADER.lower()), "")
    if not secret or not hmac.compare_digest(given.encode(), secret.encode()):
        raise ProviderError(ErrorKind.INVALID_INPUT, f"webhook refused: missing or wrong {SECRET_HEADER}",
                            status=401, label="BAD_SECRET")
    try:
        payload: Any = json.loads(body)
    except ValueError:
        raise ProviderError(ErrorKind.INVALID_INPUT, "webhook body is not JSON", status=400, label="BAD_BODY") from None
    if not isinstance(payload, dict):
        raise ProviderError(ErrorKind.INVALID_INPUT, "webhook body is not an object", status=400, label="BAD_BODY")
    kind = EVENTS.get(str(payload.get("event", "")))
    if payload.get("event_type", "integration") != "integration" or kind is None:
        return []
    data = got if isinstance(got := payload.get("data"), dict) else {}
    identity = next((str(v) for v in (payload.get("identity_uid"), payload.get("identity_id"),
                                      data.get("identity_uid"), data.get("identity_id")) if v), None)
    occurred = parse_time(payload.get("created_at")) or received_at
    # Edges documents no delivery id: the body itself names the delivery, so a re-delivery of the
    # same body is the same event.
    event_id = "edges-webhook:" + hashlib.sha256(body).hexdigest()[:32]
    return [ProviderEvent(event_id, kind, occurred, identity, data={"reason": data.get("reason")})]
