"""The Edges API on the wire: live runs, pages through `X-Pagination-Next`, errors into our vocabulary.

`EdgesAPI` is what the driver talks through: `live` runs one action and returns its output, `pages`
walks a list action page by page, `send` makes one request with the account's `X-API-Key` inside
the request budget and turns an error answer into a `ProviderError` through `LABELS`.
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

#: Edges' error labels (seed 001 and the error reference) -> our vocabulary.
LABELS: dict[str, ErrorKind] = {
    "LIMIT_REACHED": ErrorKind.LIMIT_REACHED,
    "NOT_CONNECTED": ErrorKind.NOT_CONNECTED,
    "ALREADY_CONNECTED": ErrorKind.ALREADY_CONNECTED,
    "INVITATION_PENDING": ErrorKind.INVITATION_PENDING,
    "PROFILE_NOT_ACCESSIBLE": ErrorKind.PROFILE_NOT_ACCESSIBLE,
    "AUTH_EXPIRED": ErrorKind.AUTH_EXPIRED,
    "INTEGRATION_ERROR": ErrorKind.AUTH_EXPIRED,  # the identity's LinkedIn integration is not usable
    "INVALID_INPUT": ErrorKind.INVALID_INPUT,
    "BAD_INPUT": ErrorKind.INVALID_INPUT,
    "BAD_PARAMETERS": ErrorKind.INVALID_INPUT,
    "SN_ACCOUNT_UPGRADE": ErrorKind.INVALID_INPUT,
    "STATUS_429": ErrorKind.RATE_LIMITED,
    "LK_ERROR": ErrorKind.TRANSIENT,
    "LK_524": ErrorKind.TRANSIENT,
    "GENERIC_ERROR": ErrorKind.TRANSIENT,
    "NO_DATA_LOADED": ErrorKind.TRANSIENT,
    "STATUS_404": ErrorKind.NOT_FOUND,
    "NO_RESULT": ErrorKind.NOT_FOUND,
    "NO_ACCESS": ErrorKind.API_KEY_REJECTED,  # 402: the workspace's plan or credits do not cover the action
}

SLUGS = {
    "me": "linkedin-me",
    "visit": "linkedin-visit-profile",
    "connect": "linkedin-connect-profile",
    "connect_sn": "salesnavigator-connect-profile",
    "message": "linkedin-message-profile",
    "inmail": "linkedin-inmail-profile",
    "withdraw": "linkedin-withdraw-invitation",
    "invitations": "linkedin-extract-sent-invitations",
    "connections": "linkedin-extract-connections",
    "conversations": "linkedin-extract-conversations",
    "messages": "linkedin-extract-messages",
    "thread": "linkedin-get-thread-url",
}
PAGE_DELAY = 2.0  # seconds between pages (Edges' pagination guide)
MAX_PAGES = 1000  # a list longer than this is a provider bug, not a reason to loop forever


class EdgesAPI:
    def __init__(self, client: httpx.Client, *, clock: Callable[[], dt.datetime],
                 budget: RequestBudget | None = None, sleep: Callable[[float], None] = time.sleep,
                 page_delay: float = PAGE_DELAY) -> None:
        self.client = client
        self._clock = clock
        self._budget = budget
        self._sleep = sleep
        self.page_delay = page_delay
        self.requests = 0  # HTTP requests made, for reports

    def live(self, account: Account, slug: str, data: Mapping[str, Any] | None,
             parameters: Mapping[str, Any]) -> Any:
        response = self.send(account, "POST", f"actions/{slug}/run/live", json=self._body(account, data, parameters))
        return json_body(response)

    def _body(self, account: Account, data: Mapping[str, Any] | None, parameters: Mapping[str, Any]) -> dict[str, Any]:
        body: dict[str, Any] = {"identity_ids": [account.account_id], "parameters": dict(parameters)}
        if data is not None:
            body["input"] = dict(data)
        return body

    def pages(self, account: Account, slug: str, data: Mapping[str, Any] | None, parameters: Mapping[str, Any], *,
              stop: Callable[[Mapping[str, Any]], bool] | None = None) -> Iterator[Mapping[str, Any]]:
        """Every item of a list action, page by page through `X-Pagination-Next`, newest first;
        the walk ends after the page holding the first item `stop` says is old enough."""
        body = self._body(account, data, parameters)
        url: str = f"actions/{slug}/run/live"
        for page in range(MAX_PAGES):
            if page:
                self._sleep(self.page_delay)
            response = self.send(account, "POST", url, json=body)
            items = json_body(response)
            if not isinstance(items, list):
                raise ProviderError(ErrorKind.TRANSIENT, f"{slug} returned no list", label="NO_DATA_LOADED")
            done = False
            for item in items:
                if isinstance(item, Mapping):
                    if stop is not None and stop(item):
                        done = True
                    yield item
            following = response.headers.get("X-Pagination-Next")
            if done or not following:
                return
            url = self._same_origin(following)
        raise ProviderError(ErrorKind.TRANSIENT, f"{slug}: more than {MAX_PAGES} pages", label="PAGINATION")

    def _same_origin(self, url: str) -> str:
        """A next-page URL may only point at the API we talk to: it will carry our API key."""
        target, base = httpx.URL(url), self.client.base_url
        if (target.scheme, target.host, target.port) != (base.scheme, base.host, base.port):
            raise ProviderError(ErrorKind.TRANSIENT, f"refusing a next-page URL on another host ({target.host})",
                                label="PAGINATION")
        return str(target)

    def send(self, account: Account, method: str, url: str, **kwargs: Any) -> httpx.Response:
        api_key = credential(account.credentials, "api_key", account.sender)
        key_bucket = budget_key("edges-key", api_key)
        if self._budget is not None:
            self._budget.acquire(key_bucket, budget_key("edges-account", account.account_id))
        self.requests += 1
        try:
            response = self.client.request(method, url, headers={"X-API-Key": api_key}, **kwargs)
        except httpx.HTTPError as exc:
            raise transport_error(exc, "Edges") from None
        if response.status_code < 400:
            return response
        raw = json_body(response)
        raw = raw if isinstance(raw, Mapping) else {}
        params = dict(raw["params"]) if isinstance(raw.get("params"), Mapping) else {}
        for name in ("retry_after", "postponed_until"):  # documented without saying where: params or root
            if name not in params and raw.get(name) is not None:
                params[name] = raw[name]
        body = ErrorBody(text(raw.get("error_label")), redact(str(raw.get("message") or "")), params)
        err = error_from_response(response, body, self._clock().astimezone(UTC), labels=LABELS, provider="Edges")
        if err.kind is ErrorKind.RATE_LIMITED and err.retry_at is not None and self._budget is not None:
            self._budget.blocked(key_bucket, err.retry_at)
        if err.kind is ErrorKind.AUTH_EXPIRED:
            err = ProviderError(err.kind, f"{err.message} (identity {account.account_id}: reconnect LinkedIn in Edges)",
                                retry_at=err.retry_at, status=err.status, label=err.label)
        raise err


def text(value: object) -> str | None:
    return None if value is None or value == "" else str(value)
