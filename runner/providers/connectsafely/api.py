"""The ConnectSafely API on the wire: requests, request budgets, quotas, pages and errors.

`ConnectSafelyAPI.call` makes one request for an account: `Authorization: Bearer <key>`, the
account's `accountId` in the JSON body (POST) or the query (GET), inside the request budgets, and
returns the JSON answer or raises a `ProviderError` (`errors.to_error`). Every answer's
`X-RateLimit-*` headers go to the `QuotaBook`; a per-minute budget the answer says is used up
holds that budget until its reset.

Budgets (ConnectSafely's rate-limit page): 60 requests a minute per API key (the sender's
`requests_per_minute`), and per LinkedIn account 30 reads, 15 writes and 10 `/account/*` calls a
minute; inbox reads (`/conversations…`) count only against the key.
"""
from __future__ import annotations

import datetime as dt
import functools
import logging
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import httpx

from runner.providers.base import Account, ErrorKind, ProviderError
from runner.providers.connectsafely.errors import QUOTA_ACTIONS, to_error
from runner.providers.connectsafely.quota import QuotaBook
from runner.providers.http import RequestBudget, budget_key, credential, json_body, reset_header, transport_error

log = logging.getLogger(__name__)
UTC = dt.UTC

#: requests a minute per LinkedIn account, by kind of call (`inbox` counts against the key only)
ACCOUNT_RATES = {"read": 30, "write": 15, "account": 10}
#: `X-RateLimit-Action` of the per-minute budgets -> our kind of call
BUDGET_ACTIONS = {"READ": "read", "WRITE": "write", "ACCOUNT": "account"}
MAX_PAGES = 1000  # a list longer than this is a provider bug, not a reason to loop forever
RETRY_502 = 3  # tries of a page that answers 502 CONNECTIONS_UNAVAILABLE
RETRY_502_DELAY = 2.0  # seconds between them


class ConnectSafelyAPI:
    def __init__(self, client: httpx.Client, *, clock: Callable[[], dt.datetime], quotas: QuotaBook,
                 budget: RequestBudget | None = None, sleep: Callable[[float], None] = time.sleep) -> None:
        self.client = client
        self._clock = clock
        self.quotas = quotas
        self._budget = budget
        self._sleep = sleep
        self.requests = 0  # HTTP requests made, for reports

    def now(self) -> dt.datetime:
        return self._clock().astimezone(UTC)

    def call(self, account: Account, method: str, path: str, *, kind: str, body: Mapping[str, Any] | None = None,
             params: Mapping[str, Any] | None = None, not_found: ErrorKind = ErrorKind.NOT_FOUND) -> Any:
        """One request for `account`; the JSON answer (a failed one raises)."""
        api_key = credential(account.credentials, "api_key", account.sender)
        buckets = self._buckets(api_key, account, kind)
        if self._budget is not None:
            self._budget.acquire(*buckets)
        self.requests += 1
        query = {"accountId": account.account_id, **dict(params or {})} if method == "GET" else dict(params or {})
        payload = {"accountId": account.account_id, **dict(body or {})} if method != "GET" else None
        try:
            response = self.client.request(method, path.lstrip("/"), params=query or None, json=payload,
                                           headers={"Authorization": f"Bearer {api_key}"})
        except httpx.HTTPError as exc:
            raise transport_error(exc, "ConnectSafely") from None
        now = self.now()
        action = self.quotas.observe(account.account_id, response.headers, now)
        if response.status_code < 400:
            self._hold_used_up_budget(response, action, account, api_key)
            answer = json_body(response)
            if isinstance(answer, Mapping) and answer.get("success") is False:
                raise to_error(_as_failure(response), now, not_found=not_found)
            return answer
        err = to_error(response, now, not_found=not_found)
        raise self._explained(err, response, account, api_key, action)

    def _buckets(self, api_key: str, account: Account, kind: str) -> list[str]:
        buckets = [budget_key("connectsafely-key", api_key)]
        if kind in ACCOUNT_RATES:
            bucket = budget_key("connectsafely-account", kind, account.account_id)
            if self._budget is not None and not self._budget.has_rate(bucket):
                self._budget.set_rate(bucket, ACCOUNT_RATES[kind])
            buckets.append(bucket)
        return buckets

    def _hold_used_up_budget(self, response: httpx.Response, action: str | None, account: Account,
                             api_key: str) -> None:
        """An answer that says a per-minute budget is used up: no request of that kind before its reset."""
        if self._budget is None or action is None or response.headers.get("X-RateLimit-Remaining") != "0":
            return
        reset = reset_header(response.headers.get("X-RateLimit-Reset"), self.now())
        kind = BUDGET_ACTIONS.get(action)
        if reset is not None and kind is not None:
            self._budget.blocked(budget_key("connectsafely-account", kind, account.account_id), reset)

    def _explained(self, err: ProviderError, response: httpx.Response, account: Account, api_key: str,
                   action: str | None) -> ProviderError:
        """What to do about it, in the message; quotas and 429s are remembered so that nothing more goes out."""
        message = err.message
        if err.kind is ErrorKind.LIMIT_REACHED and err.retry_at is not None:
            quota = action if action in QUOTA_ACTIONS else _quota_of(message)
            if quota is not None:
                self.quotas.exhausted(account.account_id, quota, err.retry_at)
        elif err.kind is ErrorKind.RATE_LIMITED and err.retry_at is not None and self._budget is not None:
            kind = BUDGET_ACTIONS.get(action or "")
            bucket = (budget_key("connectsafely-account", kind, account.account_id) if kind
                      else budget_key("connectsafely-key", api_key))
            self._budget.blocked(bucket, err.retry_at)
        if err.label == "AUTH_EXPIRED":
            message = (f"{message} (account {account.account_id}: reconnect the LinkedIn account in ConnectSafely's "
                       f"dashboard, then `seqrun senders resume {account.sender}`)")
        elif err.label == "ACCOUNT_NOT_FOUND":
            message = (f"ConnectSafely answered {err.status}: account {account.account_id} not found for this API key; "
                       "check the sender's account_id in seqrun.yaml and the key in its environment variable")
        if message == err.message:
            return err
        return ProviderError(err.kind, message, retry_at=err.retry_at, status=err.status, label=err.label)

    # --- pages ----------------------------------------------------------------------------------------

    def connections(self, account: Account, *, page_size: int = 12) -> Iterator[Mapping[str, Any]]:
        """`GET /connections?sortBy=recentlyAdded`, newest first, page after page until `endOfList`
        (a short page is not the end: ConnectSafely drops hidden profiles from a page)."""
        start = 0
        for _ in range(MAX_PAGES):
            page = self._retrying_502(functools.partial(
                self.call, account, "GET", "connections", kind="read",
                params={"startIndex": start, "limit": page_size, "sortBy": "recentlyAdded"}))
            items = page.get("connections") if isinstance(page, Mapping) else None
            if not isinstance(items, list):
                raise ProviderError(ErrorKind.TRANSIENT, "connections returned no list", label="NO_LIST")
            yield from (item for item in items if isinstance(item, Mapping))
            if page.get("endOfList") is True:
                return
            start += page_size
        raise ProviderError(ErrorKind.TRANSIENT, f"connections: more than {MAX_PAGES} pages", label="PAGINATION")

    def _retrying_502(self, call: Callable[[], Any]) -> Any:
        for attempt in range(RETRY_502):
            try:
                return call()
            except ProviderError as err:
                if err.label != "CONNECTIONS_UNAVAILABLE" or attempt == RETRY_502 - 1:
                    raise
                log.info("ConnectSafely: connections unavailable (502), trying again in %s s", RETRY_502_DELAY)
                self._sleep(RETRY_502_DELAY)
        raise AssertionError("unreachable")

    def invitations(self, account: Account) -> Iterator[Mapping[str, Any]]:
        """`GET /invitations/sent?startIndex=`, page after page until an empty page."""
        start = 0
        for _ in range(MAX_PAGES):
            page = self.call(account, "GET", "invitations/sent", kind="read", params={"startIndex": start})
            items = page.get("invitations") if isinstance(page, Mapping) else None
            if not isinstance(items, list) or not items:
                return
            yield from (item for item in items if isinstance(item, Mapping))
            start += len(items)
        raise ProviderError(ErrorKind.TRANSIENT, f"invitations: more than {MAX_PAGES} pages", label="PAGINATION")

    def conversations(self, account: Account, *, count: int = 20) -> Iterator[Mapping[str, Any]]:
        """`GET /conversations?count=&nextCursor=`, most recent activity first."""
        cursor: str | None = None
        for _ in range(MAX_PAGES):
            params: dict[str, Any] = {"count": count}
            if cursor:
                params["nextCursor"] = cursor
            page = self.call(account, "GET", "conversations", kind="inbox", params=params)
            items = page.get("conversations") if isinstance(page, Mapping) else None
            if not isinstance(items, list):
                raise ProviderError(ErrorKind.TRANSIENT, "conversations returned no list", label="NO_LIST")
            yield from (item for item in items if isinstance(item, Mapping))
            cursor = page.get("nextCursor") if page.get("hasMore") else None
            if not cursor:
                return
        raise ProviderError(ErrorKind.TRANSIENT, f"conversations: more than {MAX_PAGES} pages", label="PAGINATION")

    def messages(self, account: Account, conversation_urn: str, *, since: dt.datetime | None = None,
                 count: int = 50) -> list[Mapping[str, Any]]:
        """`GET /conversations/{urn}/messages?since=`: every message of the thread (newer than `since`)."""
        path = f"conversations/{quote(conversation_urn)}/messages"
        found: list[Mapping[str, Any]] = []
        cursor: str | None = None
        for _ in range(MAX_PAGES):
            params: dict[str, Any] = {"count": count}
            if since is not None:
                params["since"] = int(since.timestamp() * 1000)
            if cursor:
                params["cursor"] = cursor
            page = self.call(account, "GET", path, kind="inbox", params=params,
                             not_found=ErrorKind.NOT_FOUND)
            items = page.get("messages") if isinstance(page, Mapping) else None
            if not isinstance(items, list):
                raise ProviderError(ErrorKind.TRANSIENT, "messages returned no list", label="NO_LIST")
            found += [m for m in items if isinstance(m, Mapping)]
            cursor = page.get("cursor") if page.get("hasMore") else None
            if not cursor:
                return found
        raise ProviderError(ErrorKind.TRANSIENT, f"messages: more than {MAX_PAGES} pages", label="PAGINATION")


def quote(value: str) -> str:
    """A path segment: URNs hold ':' and ',' and must be encoded whole."""
    from urllib.parse import quote as _quote

    return _quote(value, safe="")


def _quota_of(message: str) -> str | None:
    for action in QUOTA_ACTIONS:
        if f"for {action}" in message.upper():
            return action
    return None


def _as_failure(response: httpx.Response) -> httpx.Response:
    """A 200 whose body says `success: false` (a send that failed): answered as the 400 it is."""
    return httpx.Response(400, headers=response.headers, content=response.content, request=response.request)
