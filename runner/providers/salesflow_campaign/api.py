"""Salesflow's v1 public API (seed 002) on the wire: the token in every query string, errors mapped.

Every call carries `token` and `accountId` as query parameters (`accounts/list` only the token).
The token therefore rides in every URL: it is registered with `register_secret` before the first
request, the request URLs are only ever shown through `redact_url`, and error messages are built
from the answer's body (redacted), never from the URL. httpx's own log lines go through the log
redaction every client installs.

Errors are `{"Status": 409, "Message": "…"}` bodies (seed 002: 403 invalid token/account, 404 not
found, 409 already running, 422 with a reason). The body is kept verbatim (redacted) in the
`ProviderError` message, so it reaches the audit log; each call may say what a status means for it
(`overrides`), e.g. a 409 from `members/Import` means the lead is already in a campaign.

`parse_status` reads a member's `Status` bit field in both forms the docs show: a number (`4`) and
a comma-separated list of names (`"MEMBER_PENDING, MEMBER_ERROR"`).
"""
from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Mapping
from typing import Any

import httpx

from runner.providers.base import Account, ErrorKind, ProviderError
from runner.providers.http import (
    ErrorBody,
    RequestBudget,
    budget_key,
    credential,
    error_from_response,
    json_body,
    redact,
    redact_url,
    transport_error,
)

UTC = dt.UTC
PROVIDER = "Salesflow"
#: Where GetCampaignStatistics lives when the sender's base_url is Salesflow's own (seed 002).
APP_BASE_URL = "https://app.salesflow.io/api"
PUBLIC_BASE_HOST = "mvc.salesflow.io"

#: The member `Status` bits (seed 002, GetContact).
STATUS_BITS: dict[str, int] = {
    "MEMBER_NOT_SET": 0,
    "MEMBER_PENDING": 1,
    "MEMBER_INVITATION_SENT": 2,
    "MEMBER_CONNECTED": 4,
    "MEMBER_DISCONNECTED": 8,
    "MEMBER_DELETED": 16,
    "MEMBER_IMPORTED": 32,
    "MEMBER_INVITATION_WITHDRAWN": 64,
    "MEMBER_ERROR": 1024,
    "MEMBER_DUPLICATE": 2048,
}
PENDING = STATUS_BITS["MEMBER_PENDING"]
INVITATION_SENT = STATUS_BITS["MEMBER_INVITATION_SENT"]
CONNECTED = STATUS_BITS["MEMBER_CONNECTED"]
DISCONNECTED = STATUS_BITS["MEMBER_DISCONNECTED"]
DELETED = STATUS_BITS["MEMBER_DELETED"]
IMPORTED = STATUS_BITS["MEMBER_IMPORTED"]
WITHDRAWN = STATUS_BITS["MEMBER_INVITATION_WITHDRAWN"]
ERROR = STATUS_BITS["MEMBER_ERROR"]
DUPLICATE = STATUS_BITS["MEMBER_DUPLICATE"]

#: The campaign webhook events by their `runOn` number (AttachWebhook) and their names.
RUN_ON: dict[int, str] = {1: "MEMBER_CONNECTED", 2: "REPLY_DETECTED", 7: "INVITATION_WITHDRAWN"}


def parse_status(value: object) -> int | None:
    """A member's `Status` as bits: a number, a numeric string, or names joined by commas (None: absent
    or unreadable). Unknown names are ignored rather than refused: a new flag must not stop polling."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if not isinstance(value, str):
        return None
    text = value.strip()
    if not text:
        return None
    if text.isdigit():
        return int(text)
    bits = 0
    known = False
    for name in text.replace("|", ",").split(","):
        name = name.strip().upper()
        if name in STATUS_BITS:
            bits |= STATUS_BITS[name]
            known = True
    return bits if known else None


def status_names(bits: int) -> str:
    """`5` -> `"MEMBER_PENDING, MEMBER_CONNECTED"`, as GetContact shows the field."""
    names = [name for name, bit in STATUS_BITS.items() if bit and bits & bit]
    return ", ".join(names) or "MEMBER_NOT_SET"


class CampaignAPI:
    """One Salesflow v1 API for every sender of the provider; each call names its account."""

    def __init__(self, client: httpx.Client, *, clock: Callable[[], dt.datetime],
                 budget: RequestBudget | None = None) -> None:
        self.client = client
        self._clock = clock
        self._budget = budget
        self.requests = 0  # HTTP requests made, for reports

    def app_url(self, account: Account) -> str:
        """Where statistics live: the sender's app_base_url, Salesflow's app host, or the base URL."""
        given = account.settings.get("app_base_url")
        if given:
            return given.rstrip("/")
        base = self.client.base_url
        if base.host == PUBLIC_BASE_HOST:
            return APP_BASE_URL
        return str(base).rstrip("/")

    def call(self, account: Account, method: str, path: str, *, params: Mapping[str, Any] | None = None,
             json_body_: Any = None, scoped: bool = True, url: str | None = None,
             overrides: Mapping[int, tuple[ErrorKind, str]] | None = None) -> Any:
        """One request; the answer's JSON (None when empty). `path` is relative to the base URL (or
        `url` is absolute); `scoped` adds `accountId`. Errors raise `ProviderError` (see `error`)."""
        token = credential(account.credentials, "api_key", account.sender)
        query: dict[str, Any] = {"token": token}
        if scoped:
            query["accountId"] = account.account_id
        query.update({k: v for k, v in (params or {}).items() if v is not None})
        token_bucket = budget_key("salesflow-token", token)
        if self._budget is not None:
            self._budget.acquire(token_bucket, budget_key("salesflow-account", account.account_id))
        self.requests += 1
        kwargs: dict[str, Any] = {"params": query}
        if json_body_ is not None:
            kwargs["json"] = json_body_
        try:
            response = self.client.request(method, url or path, **kwargs)
        except httpx.HTTPError as exc:
            raise transport_error(exc, PROVIDER) from None
        body = json_body(response)
        status = response.status_code
        if status < 400 and isinstance(body, Mapping) and _body_status(body) >= 400:
            status = _body_status(body)  # an error told in the body of a 200
        if status >= 400:
            err = self.error(response, body, status, overrides or {})
            if err.kind is ErrorKind.RATE_LIMITED and err.retry_at is not None and self._budget is not None:
                self._budget.blocked(token_bucket, err.retry_at)
            raise err
        return body

    def error(self, response: httpx.Response, body: Any, status: int,
              overrides: Mapping[int, tuple[ErrorKind, str]]) -> ProviderError:
        """The answer's `{"Status", "Message"}` body kept whole (redacted) in the message."""
        shown = _shown_body(response, body)
        generic = error_from_response(_with_status(response, status), ErrorBody(None, shown, {}),
                                      self._clock().astimezone(UTC), labels={}, provider=PROVIDER)
        if status in overrides:
            kind, meaning = overrides[status]
            return ProviderError(kind, redact(f"{meaning} ({PROVIDER} answered {status}: {shown})"),
                                 retry_at=generic.retry_at, status=status, label=str(status))
        message = generic.message
        if status == 403:
            message = (f"token or account rejected ({PROVIDER} answered 403: {shown}); check the account API token "
                       "in the environment variable the sender names and the sender's account_id")
        return ProviderError(generic.kind, redact(message), retry_at=generic.retry_at, status=status,
                             label=str(status))


def _body_status(body: Mapping[str, Any]) -> int:
    value = body.get("Status")
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _shown_body(response: httpx.Response, body: Any) -> str:
    if isinstance(body, (Mapping, list)):
        text = json.dumps(body, ensure_ascii=False, separators=(",", ":"))
    else:
        text = response.text.strip() or f"(empty body; {response.request.method} {redact_url(response.request.url)})"
    return redact(text[:1000])


def _with_status(response: httpx.Response, status: int) -> httpx.Response:
    if response.status_code == status:
        return response
    return httpx.Response(status, headers=response.headers, request=response.request)
