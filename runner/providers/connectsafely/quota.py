"""What the driver knows of each account's ConnectSafely quotas, so that it never asks past one.

ConnectSafely counts invitations per LinkedIn account per week (90, from Monday 00:00 UTC) and new
conversations per day (150); going over the invitation quota can put the account on a 24-hour
hold. Every answer carries `X-RateLimit-Action|Limit|Used|Remaining|Reset`; `GET
/account/{accountId}/quota` tells all of them at once. `QuotaBook` keeps the latest of these per
account and action, and `check` refuses an action whose quota is used up with LIMIT_REACHED and the
reset as `retry_at`, before any request goes out. The engine then holds that action for the sender
until then (`Runtime.provider_holds`).
"""
from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from runner.providers.base import ErrorKind, ProviderError
from runner.providers.connectsafely.shapes import parse_moment
from runner.providers.http import reset_header

#: seqrun's words for ConnectSafely's quota actions, for messages
WHAT = {"CONNECT": "invitations", "NEW_CONVERSATION": "new conversations", "MESSAGE": "messages"}


@dataclass(frozen=True, slots=True)
class QuotaState:
    limit: int | None
    used: int | None
    remaining: int
    reset: dt.datetime | None
    window: str | None = None  # "week", "day", when the answer says

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"limit": self.limit, "used": self.used, "remaining": self.remaining}
        if self.window:
            out["window"] = self.window
        out["reset_at"] = self.reset.isoformat() if self.reset else None
        return out


class QuotaBook:
    def __init__(self) -> None:
        self._states: dict[tuple[str, str], QuotaState] = {}
        self._loaded: set[str] = set()  # accounts whose quotas were read (or cannot be) in this process
        self._lock = threading.Lock()

    def loaded(self, account_id: str) -> bool:
        with self._lock:
            return account_id in self._loaded

    def mark_loaded(self, account_id: str) -> None:
        with self._lock:
            self._loaded.add(account_id)

    def state(self, account_id: str, action: str) -> QuotaState | None:
        with self._lock:
            return self._states.get((account_id, action))

    def check(self, account_id: str, action: str, now: dt.datetime) -> None:
        """LIMIT_REACHED (retry at the reset) when the account's `action` quota is used up now."""
        state = self.state(account_id, action)
        if state is None or state.remaining > 0 or (state.reset is not None and state.reset <= now):
            return
        until = state.reset or dt.datetime.combine(now.date() + dt.timedelta(days=1), dt.time(), dt.UTC)
        used = f"{state.used}/{state.limit} used; " if state.used is not None and state.limit is not None else ""
        raise ProviderError(ErrorKind.LIMIT_REACHED,
                            f"ConnectSafely quota of {WHAT.get(action, action.lower())} for account {account_id} "
                            f"is used up ({used}resets at {until.isoformat()}); nothing was sent",
                            retry_at=until, label=f"QUOTA_{action}")

    def exhausted(self, account_id: str, action: str, until: dt.datetime) -> None:
        """A 429 said so: nothing of `action` until `until`."""
        old = self.state(account_id, action)
        with self._lock:
            self._states[(account_id, action)] = QuotaState(old.limit if old else None, old.used if old else None,
                                                            0, until)

    def observe(self, account_id: str, headers: Mapping[str, str], now: dt.datetime) -> str | None:
        """Take `X-RateLimit-*` from an answer; returns the action they were about."""
        action = (headers.get("X-RateLimit-Action") or "").strip().upper()
        remaining = _int(headers.get("X-RateLimit-Remaining"))
        if not action or remaining is None:
            return action or None
        self._set(account_id, action, QuotaState(_int(headers.get("X-RateLimit-Limit")),
                                                 _int(headers.get("X-RateLimit-Used")), remaining,
                                                 reset_header(headers.get("X-RateLimit-Reset"), now)))
        return action

    def load(self, account_id: str, body: object, now: dt.datetime) -> dict[str, QuotaState]:
        """`GET /account/{id}/quota`: `{"quotas": [{"action", "limit", "used", "remaining", "window", "reset"}]}`
        (or the same keyed by action); returns what it learnt."""
        quotas = body.get("quotas") if isinstance(body, Mapping) else None
        items: list[tuple[str, Any]] = []
        if isinstance(quotas, Mapping):
            items = [(str(k), v) for k, v in quotas.items()]
        elif isinstance(quotas, list):
            items = [(str(q.get("action", "")), q) for q in quotas if isinstance(q, Mapping)]
        found = {}
        for action, item in items:
            if not isinstance(item, Mapping) or not action:
                continue
            limit, used = _int(item.get("limit")), _int(item.get("used"))
            remaining = _int(item.get("remaining"))
            if remaining is None and limit is not None and used is not None:
                remaining = max(0, limit - used)
            if remaining is None:
                continue
            reset = parse_moment(item.get("reset") or item.get("resetsAt") or item.get("resetAt"))
            window = str(item["window"]) if item.get("window") else None
            found[action.upper()] = state = QuotaState(limit, used, remaining, reset, window)
            self._set(account_id, action.upper(), state)
        self.mark_loaded(account_id)
        return found

    def _set(self, account_id: str, action: str, state: QuotaState) -> None:
        with self._lock:
            self._states[(account_id, action)] = state


def _int(value: object) -> int | None:
    try:
        return int(str(value).strip()) if value is not None and str(value).strip() != "" else None
    except ValueError:
        return None
