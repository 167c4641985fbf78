"""Salesflow's new API on the wire: headers, paths, pages, and error answers in our vocabulary.

Every call carries `Authorization: Bearer <api key>`; calls that act for a LinkedIn account also
carry `X-AccountId`. Paths are `api/v1/…` below the base URL (default
`https://api.salesflow.io/public`; the docs' samples disagree, so it is the sender's `base_url`).

Error bodies are not documented. The driver reads RFC 7807 problem details, which ASP.NET services
answer by default (`{"title", "status", "detail"}`), plus a `code` when there is one; the code (or
else the title) is the label looked up in `LABELS`, and the status decides otherwise
(`runner.providers.http.status_kind`).

`connect_request` is the one place that knows how an invitation is sent: the page documenting it
is not public (see docs/providers/salesflow.md, "Assumptions").
"""
from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Iterator, Mapping
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
    transport_error,
)

UTC = dt.UTC

#: Error codes (or titles) -> our vocabulary. Salesflow publishes none; these are the fake's and
#: the plain-English titles an ASP.NET service would use for the same situations.
LABELS: dict[str, ErrorKind] = {
    "DAILY_LIMIT_REACHED": ErrorKind.LIMIT_REACHED,
    "LIMIT_REACHED": ErrorKind.LIMIT_REACHED,
    "NOT_CONNECTED": ErrorKind.NOT_CONNECTED,
    "ALREADY_CONNECTED": ErrorKind.ALREADY_CONNECTED,
    "INVITATION_PENDING": ErrorKind.INVITATION_PENDING,
    "PROFILE_NOT_FOUND": ErrorKind.PROFILE_NOT_ACCESSIBLE,
    "PROFILE_NOT_ACCESSIBLE": ErrorKind.PROFILE_NOT_ACCESSIBLE,
    "ACCOUNT_DISCONNECTED": ErrorKind.AUTH_EXPIRED,
    "ACCOUNT_PAUSED": ErrorKind.AUTH_EXPIRED,
    "ACCOUNT_BLOCKED": ErrorKind.AUTH_EXPIRED,
    "INVITATION_NOT_FOUND": ErrorKind.NOT_FOUND,
    "CONVERSATION_NOT_FOUND": ErrorKind.NOT_FOUND,
    "CONVERSATION_EXISTS": ErrorKind.TRANSIENT,  # the driver syncs further back to find it, then retries
    "VALIDATION_ERROR": ErrorKind.INVALID_INPUT,
    "One or more validation errors occurred.": ErrorKind.INVALID_INPUT,  # ASP.NET's title for a 400
    "TOO_MANY_REQUESTS": ErrorKind.RATE_LIMITED,
}

PAGE = 100  # connections and sent invitations per page (`count` ≤ 100)
MAX_PAGES = 1000


def connect_request(profile_id: str, note: str | None) -> tuple[str, str, dict[str, Any]]:
    """How an invitation is sent: (method, path, JSON body). Not documented publicly; this follows
    the API's own conventions (a resource collection `invitations` beside `invitations/sent` and
    `DELETE invitations/{id}`, a `profileId` and a `message` like `POST conversations`)."""
    body: dict[str, Any] = {"profileId": profile_id}
    if note:
        body["message"] = note
    return "POST", "api/v1/invitations", body


class SalesflowAPI:
    def __init__(self, client: httpx.Client, *, clock: Callable[[], dt.datetime],
                 budget: RequestBudget | None = None, sleep: Callable[[float], None] = time.sleep,
                 page_delay: float = 0.0) -> None:
        self.client = client
        self._clock = clock
        self._budget = budget
        self._sleep = sleep
        self.page_delay = page_delay
        self.requests = 0  # HTTP requests made, for reports

    def call(self, account: Account | None, method: str, path: str, *, api_key_of: Account | None = None,
             key: str | None = None, **kwargs: Any) -> Any:
        """One request; the JSON answer (None when there is no body)."""
        return json_body(self.send(account, method, path, api_key_of=api_key_of, key=key, **kwargs))

    def pages(self, account: Account, path: str, field: str, params: Mapping[str, Any], *,
              stop: Callable[[Mapping[str, Any]], bool] | None = None) -> Iterator[Mapping[str, Any]]:
        """Every item of a `start`/`count` list, page by page; ends after the page holding the first
        item `stop` says is old enough, or after a short page."""
        start = 0
        for page in range(MAX_PAGES):
            if page and self.page_delay:
                self._sleep(self.page_delay)
            body = self.call(account, "GET", path, params={**params, "start": start, "count": PAGE})
            items = body.get(field) if isinstance(body, Mapping) else None
            if not isinstance(items, list):
                raise ProviderError(ErrorKind.TRANSIENT, f"{path} returned no {field} list", label="NO_DATA")
            done = False
            for item in items:
                if isinstance(item, Mapping):
                    if stop is not None and stop(item):
                        done = True
                    yield item
            if done or len(items) < PAGE:
                return
            start += len(items)
        raise ProviderError(ErrorKind.TRANSIENT, f"{path}: more than {MAX_PAGES} pages", label="PAGINATION")

    def send(self, account: Account | None, method: str, path: str, *, api_key_of: Account | None = None,
             key: str | None = None, **kwargs: Any) -> httpx.Response:
        """`account` sets X-AccountId (None: a call about the API key itself, `api_key_of`'s); `key`,
        seqrun's idempotency key of an action, rides in `Idempotency-Key` (Salesflow ignores it; it
        names the action in its logs and in the fake's ledger)."""
        owner = account or api_key_of
        if owner is None:
            raise ValueError("a Salesflow call needs the account whose API key it uses")
        api_key = credential(owner.credentials, "api_key", owner.sender)
        key_bucket = budget_key("salesflow-key", api_key)
        headers = {"Authorization": f"Bearer {api_key}"}
        if account is not None:
            headers["X-AccountId"] = account.account_id
        if key:
            headers["Idempotency-Key"] = key
        if self._budget is not None:
            self._budget.acquire(key_bucket, budget_key("salesflow-account", owner.account_id))
        self.requests += 1
        try:
            response = self.client.request(method, path, headers=headers, **kwargs)
        except httpx.HTTPError as exc:
            raise transport_error(exc, "Salesflow") from None
        if response.status_code < 400:
            return response
        err = self.error(response)
        if err.kind is ErrorKind.RATE_LIMITED and err.retry_at is not None and self._budget is not None:
            self._budget.blocked(key_bucket, err.retry_at)
        if err.kind is ErrorKind.AUTH_EXPIRED:
            err = ProviderError(err.kind, f"{err.message} (account {owner.account_id}: reconnect its LinkedIn "
                                          "session in Salesflow)", retry_at=err.retry_at, status=err.status,
                                label=err.label)
        raise err

    def error(self, response: httpx.Response) -> ProviderError:
        raw = json_body(response)
        raw = raw if isinstance(raw, Mapping) else {}
        label = _text(raw.get("code")) or _text(raw.get("title"))
        detail = _text(raw.get("detail")) or (_text(raw.get("title")) if label != _text(raw.get("title")) else None)
        params = {k: raw[k] for k in ("retryAfter", "retry_after") if k in raw}
        if "retryAfter" in params:
            params["retry_after"] = params.pop("retryAfter")
        body = ErrorBody(label, redact(detail or ""), params)
        return error_from_response(response, body, self._clock().astimezone(UTC), labels=LABELS, provider="Salesflow")


def _text(value: object) -> str | None:
    return None if value is None or value == "" else str(value)
