"""ConnectSafely's error answers, in all three body shapes, turned into seqrun's vocabulary.

ConnectSafely has no error labels. Its bodies come in three shapes (docs, cookbook, generated
reference disagree), and the driver accepts all of them:

    {"success": false, "error": "human-readable message"}                 (+ "holdUntil" on a hold)
    {"success": false, "code": "validation_error", "message": "…"}
    {"success": false, "error": {"name": "ZodError", "issues": [{"path": ["profileId"], "message": "Required"}]}}

What went wrong is read from the status, the `code` and the message text (`MESSAGE_LABELS`, an
assumption written down in docs/providers/connectsafely.md); a 429 is a quota (LIMIT_REACHED until
the quota's reset or `holdUntil`) when it names a quota action, otherwise the per-minute budget.
"""
from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from typing import Any

import httpx

from runner.providers.base import ErrorKind, ProviderError
from runner.providers.connectsafely.shapes import parse_moment
from runner.providers.http import ErrorBody, error_from_response, json_body, parse_time, redact

#: Labels (ours, derived from the message text, or ConnectSafely's `code`) -> our vocabulary.
LABELS: dict[str, ErrorKind] = {
    "AUTH_EXPIRED": ErrorKind.AUTH_EXPIRED,
    "ACCOUNT_NOT_FOUND": ErrorKind.API_KEY_REJECTED,  # the key cannot act for that accountId
    "SUBSCRIPTION_REQUIRED": ErrorKind.API_KEY_REJECTED,
    "ALREADY_CONNECTED": ErrorKind.ALREADY_CONNECTED,
    "INVITATION_PENDING": ErrorKind.INVITATION_PENDING,
    "NO_PENDING_INVITATION": ErrorKind.NOT_FOUND,
    "NOT_CONNECTED": ErrorKind.NOT_CONNECTED,
    "PROFILE_NOT_ACCESSIBLE": ErrorKind.PROFILE_NOT_ACCESSIBLE,
    "QUOTA_REACHED": ErrorKind.LIMIT_REACHED,
    "RATE_LIMITED": ErrorKind.RATE_LIMITED,
    "CONNECTIONS_UNAVAILABLE": ErrorKind.TRANSIENT,
    "validation_error": ErrorKind.INVALID_INPUT,
    "ZodError": ErrorKind.INVALID_INPUT,
}

#: Message text -> label, first match wins (lower-cased text). Where ConnectSafely's docs show no
#: wording, these are the phrases LinkedIn tools use; docs/providers/connectsafely.md lists them.
MESSAGE_LABELS: tuple[tuple[re.Pattern[str], str], ...] = tuple((re.compile(p), label) for p, label in (
    (r"re-?auth|session (has )?expired|reconnect|logged out|\bcookie|linkedin account (is )?(not connected|"
     r"disconnected)|account status (is )?error", "AUTH_EXPIRED"),
    (r"account not found|no linkedin account|unknown account", "ACCOUNT_NOT_FOUND"),
    (r"trial (has )?expired|subscription|upgrade your plan", "SUBSCRIPTION_REQUIRED"),
    (r"connections_unavailable|connections (are )?(temporarily )?unavailable", "CONNECTIONS_UNAVAILABLE"),
    (r"no pending invitation|invitation not found|no invitation (was )?found", "NO_PENDING_INVITATION"),
    (r"already connected|already a (1st[- ]degree )?connection", "ALREADY_CONNECTED"),
    (r"invitation\b.*\bpending|already (been )?(sent|invited)|pending invitation already", "INVITATION_PENDING"),
    (r"not connected|not a (1st[- ]degree )?connection|only message (your )?connections|must be connected",
     "NOT_CONNECTED"),
    (r"profile\b.*?\b(not found|not accessible|unavailable|private)|not visible|cannot (view|access)",
     "PROFILE_NOT_ACCESSIBLE"),
))

#: `X-RateLimit-Action` values that are quotas (per account, per day or week), not per-minute budgets.
QUOTA_ACTIONS = frozenset({"CONNECT", "NEW_CONVERSATION", "MESSAGE"})
_QUOTA_TEXT = re.compile(r"rate limit exceeded for ([a-z_]+):\s*(\d+)\s*/\s*(\d+) used", re.IGNORECASE)
_RESETS_AT = re.compile(r"resets at (\S+?)\.?$", re.IGNORECASE)


def error_body(raw: object) -> tuple[ErrorBody, str | None]:
    """(the body's label, message and params; the quota action a 429's text names) for any shape."""
    raw = raw if isinstance(raw, Mapping) else {}
    code = raw.get("code") if isinstance(raw.get("code"), str) and raw.get("code") else None
    error = raw.get("error")
    label: str | None = None
    if isinstance(error, Mapping):  # Zod
        issues = got if isinstance(got := error.get("issues"), list) else []
        parts = [": ".join(x for x in ('.'.join(str(p) for p in i.get('path') or []), str(i.get('message', 'invalid')))
                           if x) for i in issues if isinstance(i, Mapping)]
        message = "; ".join(parts) or str(error.get("message") or error.get("name") or "invalid request")
        label = str(error.get("name") or "ZodError")
    else:
        message = str(error if isinstance(error, str) and error else raw.get("message") or "")
    params: dict[str, Any] = {}
    hold = parse_moment(raw.get("holdUntil"))
    if hold is not None:
        params["postponed_until"] = hold.isoformat()
    quota = _QUOTA_TEXT.search(message)
    resets = _RESETS_AT.search(message)
    if resets is not None and "postponed_until" not in params and parse_time(resets.group(1)) is not None:
        params["postponed_until"] = resets.group(1)
    lowered = message.lower()
    if label is None:
        label = next((lab for pattern, lab in MESSAGE_LABELS if pattern.search(lowered)), None)
    if label is None and code is not None:
        label = code.upper() if code.upper() in LABELS else code
    return ErrorBody(label, redact(message), params), quota.group(1).upper() if quota else None


def to_error(response: httpx.Response, now: dt.datetime, *, not_found: ErrorKind) -> ProviderError:
    """The `ProviderError` a failed response means; `not_found` is what a bare 404 means for the call
    (a profile that is not there, an invitation that is not pending)."""
    body, quota_action = error_body(json_body(response))
    status = response.status_code
    labels = dict(LABELS)
    if status == 429:
        header = (response.headers.get("X-RateLimit-Action") or "").upper()
        action = quota_action or header
        is_quota = action in QUOTA_ACTIONS or "postponed_until" in body.params
        body = ErrorBody("QUOTA_REACHED" if is_quota else "RATE_LIMITED", body.message, body.params)
    elif status == 404 and body.label not in LABELS:  # no label, or a `code` we do not know
        body = ErrorBody("NOT_FOUND", body.message, body.params)
        labels["NOT_FOUND"] = not_found
    elif status == 502 and body.label is None:
        body = ErrorBody("CONNECTIONS_UNAVAILABLE" if "connection" in str(response.request.url) else None,
                         body.message, body.params)
    return error_from_response(response, body, now, labels=labels, provider="ConnectSafely")
