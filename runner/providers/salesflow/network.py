"""What the driver knows of each account's network: connections, pending invitations, acceptances.

Read from `GET api/v1/connections?sortType=2` (newest first, walked down to what is already known)
and `GET api/v1/invitations/sent` (every page), at most once per `fresh_for` per account unless a
caller forces it; updated at once by the driver's own invitations and withdrawals and by
`NEW_CONNECTION` webhooks (on receiver threads, hence the lock). `NEW_CONNECTION` names no account,
so it is matched to the accounts whose invitation went to that profile.
"""
from __future__ import annotations

import collections
import datetime as dt
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from runner.providers.base import Account, ProviderEvent
from runner.providers.http import parse_time
from runner.providers.salesflow import webhook
from runner.providers.salesflow.api import SalesflowAPI

UTC = dt.UTC


@dataclass
class Known:
    """Connections and pending invitations of one account, as of `at` (the driver's clock)."""

    at: dt.datetime | None = None
    connections: dict[str, tuple[dt.datetime, str | None]] = field(default_factory=dict)  # key -> (at, profile)
    newest: dt.datetime | None = None
    invitations: dict[str, dict[str, Any]] = field(default_factory=dict)  # key -> sent-invitation item


class Network:
    def __init__(self, api: SalesflowAPI, clock: Callable[[], dt.datetime], fresh_for: dt.timedelta) -> None:
        self.api, self._clock, self.fresh_for = api, clock, fresh_for
        self._lock = threading.RLock()
        self._known: dict[str, Known] = {}
        self._invited: dict[str, set[str]] = collections.defaultdict(set)  # profile id or key -> accounts

    def lookup(self, account: Account, key: str, *, force: bool = False
               ) -> tuple[tuple[dt.datetime, str | None] | None, dict[str, Any] | None]:
        """(connection, pending invitation) of the lead, from lists at most `fresh_for` old."""
        known = self.refresh(account, force=force)
        with self._lock:
            return known.connections.get(key), known.invitations.get(key)

    def invited(self, account: Account, key: str, profile: str, invitation_id: str | None) -> None:
        """Our own invitation, known before the lists show it."""
        with self._lock:
            self._of(account.account_id).invitations[key] = {"invitationId": invitation_id, "profileId": profile,
                                                             "publicIdentifier": key}
            self._invited[profile].add(account.account_id)
            self._invited[key].add(account.account_id)

    def withdrawn(self, account: Account, key: str) -> None:
        with self._lock:
            self._of(account.account_id).invitations.pop(key, None)

    def refresh(self, account: Account, *, force: bool = False) -> Known:
        """Connections (incrementally) and pending invitations (all), at most once per `fresh_for`."""
        known = self._of(account.account_id)
        now = self._clock().astimezone(UTC)
        if known.at is not None and known.at <= now < known.at + self.fresh_for and not force:
            return known
        newest = known.newest
        for item in self.api.pages(account, "api/v1/connections", "connections", {"sortType": 2},
                                   stop=lambda it: newest is not None and _time(it.get("connectedAt"), now) < newest):
            key = webhook.Person(None, _text(item.get("publicIdentifier"))).key
            if key is not None:
                at = _time(item.get("connectedAt"), now)
                with self._lock:
                    known.connections[key] = (at, _text(item.get("profileId")))
                    known.newest = at if known.newest is None else max(known.newest, at)
        invitations: dict[str, dict[str, Any]] = {}
        for item in self.api.pages(account, "api/v1/invitations/sent", "profiles", {}):
            key = webhook.Person(None, _text(item.get("publicIdentifier"))).key
            if key is not None:
                invitations[key] = dict(item)
                if item.get("profileId"):
                    with self._lock:
                        self._invited[str(item["profileId"])].add(account.account_id)
        with self._lock:
            known.invitations = {k: v for k, v in invitations.items() if k not in known.connections}
            known.at = now
        return known

    def acceptances(self, account: Account, since: dt.datetime | None, now: dt.datetime) -> list[ProviderEvent]:
        """The safety net for NEW_CONNECTION: connections newest first, down to `since` (None: a
        baseline that reports none: connections made before seqrun looked are not acceptances)."""
        out = []
        known = self._of(account.account_id)
        for item in self.api.pages(account, "api/v1/connections", "connections", {"sortType": 2},
                                   stop=lambda it: since is not None and _time(it.get("connectedAt"), now) <= since):
            at = _time(item.get("connectedAt"), now)
            person = webhook.Person(_text(item.get("profileId")), _text(item.get("publicIdentifier")))
            key = person.key
            if key is None:
                continue
            with self._lock:
                known.connections[key] = (at, person.profile_id)
                known.invitations.pop(key, None)
            if since is not None and at > since:
                out.append(accepted(account.account_id, person, key, at))
        return out

    def new_connections(self, content: webhook.NewConnections,
                        key_of: Callable[[str | None], str | None]) -> list[ProviderEvent]:
        """NEW_CONNECTION (on a receiver thread), matched to the accounts that invited each profile;
        an unmatched one names no account (the engine applies it to the lead's enrollment)."""
        out = []
        for connection in content.connections:
            person = connection.person
            key = person.key or key_of(person.profile_id)
            if key is None:
                continue
            with self._lock:
                accounts = sorted(self._invited.get(person.profile_id or "", set()) | self._invited.get(key, set()))
                for account_id in accounts:
                    known = self._of(account_id)
                    known.connections[key] = (connection.connected_at, person.profile_id)
                    known.invitations.pop(key, None)
            named: list[str | None] = [*accounts] or [None]  # unmatched: no account
            for invited_by in named:
                out.append(accepted(invited_by, person, key, connection.connected_at))
        return out

    def _of(self, account_id: str) -> Known:
        with self._lock:
            return self._known.setdefault(account_id, Known())


def accepted(account_id: str | None, person: webhook.Person, key: str, at: dt.datetime) -> ProviderEvent:
    """One id for the webhook and the poll of the same acceptance, so the engine keeps one."""
    who = person.profile_id or key
    return ProviderEvent(f"salesflow:{account_id or '-'}:accepted:{who}:{_iso(at)}", "accepted", at, account_id,
                         key, data={"profile_id": person.profile_id})


def _iso(value: dt.datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _time(value: object, default: dt.datetime) -> dt.datetime:
    return parse_time(value) or default


def _text(value: object) -> str | None:
    return None if value is None or value == "" else str(value)
