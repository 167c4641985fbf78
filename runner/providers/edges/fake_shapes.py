"""Shapes the fake Edges API shares between its modules: the error it answers, ids, URNs and URLs."""
from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
from collections.abc import Mapping
from typing import Any

UTC = dt.UTC


class EdgesError(Exception):
    """An answer in Edges' error shape: status, `error_label`, message, `params`, headers."""

    def __init__(self, status: int, label: str, message: str, *, params: Mapping[str, Any] | None = None,
                 headers: Mapping[str, str] | None = None, scope: str = "input") -> None:
        super().__init__(message)
        self.status, self.label, self.message = status, label, message
        self.params, self.headers, self.scope = dict(params or {}), dict(headers or {}), scope


def number_id(text: str) -> int:
    """A stable numeric LinkedIn id, like Edges' `linkedin_profile_id`."""
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=6).digest(), "big")


def iso(value: dt.datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"o": offset}).encode()).decode()


def urn(invitation_id: str | None) -> str:
    digits = int(hashlib.blake2b(str(invitation_id).encode(), digest_size=6).hexdigest(), 16)
    return f"urn:li:fsd_invitation:{digits}"


def profile_url(key: str) -> str:
    """The URL Edges' outputs name a person by: always a /in/ URL, also for a lead seqrun knows by
    a Sales Navigator URL (key `sn:ID`), who gets a member handle of its own here."""
    if key.startswith("sn:"):
        return f"https://www.linkedin.com/in/member-{number_id(key)}"
    return f"https://www.linkedin.com/in/{key}"


def sales_navigator_id(key: str) -> str | None:
    """The Sales Navigator id of a lead seqrun knows by a Sales Navigator URL."""
    return key[3:] if key.startswith("sn:") else None


def thread_url(thread_id: str | None) -> str | None:
    return f"https://www.linkedin.com/messaging/thread/{thread_id}/" if thread_id else None
