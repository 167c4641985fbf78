"""Shapes the fake Salesflow API shares between its modules: its error, ids and times, page sizes."""
from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Mapping
from typing import Any

UTC = dt.UTC

CONVERSATIONS_PAGE = 20  # conversations per CONVERSATIONS webhook (not documented)
MESSAGES_PAGE = 25  # messages per MESSAGES webhook (not documented)


class SalesflowError(Exception):
    """An answer as RFC 7807 problem details with a `code`: status, code, detail, headers."""

    def __init__(self, status: int, code: str, detail: str, *, headers: Mapping[str, str] | None = None,
                 extra: Mapping[str, Any] | None = None) -> None:
        super().__init__(detail)
        self.status, self.code, self.detail = status, code, detail
        self.headers, self.extra = dict(headers or {}), dict(extra or {})

    def body(self) -> dict[str, Any]:
        return {"type": f"https://httpstatuses.io/{self.status}", "title": self.code.replace("_", " ").capitalize(),
                "status": self.status, "detail": self.detail, "code": self.code, **self.extra}


def iso(value: dt.datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def profile_id(key: str) -> str:
    """The lead's Salesflow profileId (like the sandbox's, a property of the person)."""
    return "ACoAA" + hashlib.blake2b(key.encode(), digest_size=9).hexdigest()


def own_profile_id(account_id: str) -> str:
    return "ACoAA" + hashlib.blake2b(f"account:{account_id}".encode(), digest_size=9).hexdigest()


def member_id(key: str) -> int:
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=4).digest(), "big")


def invitation_id(sandbox_id: str) -> str:
    return "inv-" + hashlib.blake2b(sandbox_id.encode(), digest_size=6).hexdigest()


def unit(*parts: object) -> float:
    """A stable draw in [0, 1) from its parts (the fake's delays never depend on call order)."""
    digest = hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0 ** 64


def names(key: str) -> tuple[str, str]:
    parts = [p for p in key.split("-") if p and not p.isdigit()] or [key]
    return parts[0].title(), (parts[-1].title() if len(parts) > 1 else "Lead")
