"""The sandbox's simulated network: who each lead is, when it accepts and replies, and the event log.

`World` holds every record (`sandbox_state`) and decides outcomes; `SandboxProvider` turns API calls
into changes of it. Every random outcome is a draw from a stable hash of (seed, account, lead key,
purpose), never from call order, so a lead behaves the same whatever happens to the others.

Acceptances, replies and auth changes are pushed, per account, on a heap of future events when they
are scheduled. `realise_due(now)` pops the ones whose time has come into a list ordered by time, and
`window(since, until)` slices that list with `bisect`: a poll costs what it returns, never a scan
of all leads. Cancelled events (a withdrawn invite, an outage ended early) are dropped when popped.
"""
from __future__ import annotations

import bisect
import datetime as dt
import hashlib
import heapq
import math
from collections.abc import Callable
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

from runner.providers.base import ProviderEvent
from runner.providers.sandbox_state import (
    ACCOUNT,
    LEAD,
    LEDGER,
    AccountState,
    Invite,
    LeadState,
    LedgerEntry,
    Note,
    Outage,
    Row,
    dump,
    load,
)

_NORMAL = NormalDist()
_Z99 = _NORMAL.inv_cdf(0.99)

#: (time, event id, kind, lead key or "", number of the invite / reply round / outage)
_Future = tuple[dt.datetime, str, str, str, int]


@dataclass(frozen=True, slots=True)
class Delay:
    """A log-normal delay with the given median whose 99th percentile is `max_hours`, clipped to it."""

    median_hours: float
    max_hours: float

    def sample(self, u: float) -> dt.timedelta:
        sigma = math.log(self.max_hours / self.median_hours) / _Z99
        z = _NORMAL.inv_cdf(min(max(u, 1e-9), 1 - 1e-9))
        hours = min(self.median_hours * math.exp(sigma * z), self.max_hours)
        return dt.timedelta(hours=max(hours, 1 / 60))  # never less than a minute


@dataclass(frozen=True, slots=True)
class Behaviour:
    """How leads behave: the sandbox options that shape outcomes."""

    seed: int
    accept_rate: float
    accept_delay: Delay
    reply_rate: float  # the chance that the first message received gets a reply
    reply_decay: float  # each later message: this times the previous one's chance
    reply_delay: Delay
    #: first-sight profiles, each with the upper end of its slice of [0, 1); the rest is "fresh"
    profiles: tuple[tuple[str, float], ...]


class World:
    def __init__(self, behaviour: Behaviour, *, track_changes: bool) -> None:
        self.behaviour = behaviour
        self.track_changes = track_changes  # remember changed records for the state file
        self.leads: dict[tuple[str, str], LeadState] = {}
        self.accounts: dict[str, AccountState] = {}
        self.ledger: dict[tuple[str, str], LedgerEntry] = {}
        self._threads: dict[str, tuple[str, str]] = {}  # conversation id -> (account, lead)
        self._future: dict[str, list[_Future]] = {}
        self._happened: dict[str, list[ProviderEvent]] = {}
        self._seen: dict[str, set[str]] = {}
        self._changed: set[tuple[str, str, str]] = set()

    # --- records ---------------------------------------------------------------------------------

    def account(self, account_id: str) -> AccountState:
        acc = self.accounts.get(account_id)
        if acc is None:
            acc = self.accounts[account_id] = AccountState(account_id)
            self.touch(ACCOUNT, account_id)
        return acc

    def lead(self, account_id: str, key: str, now: dt.datetime) -> LeadState:
        state = self.leads.get((account_id, key))
        if state is None:
            state = self.leads[(account_id, key)] = self._first_sight(account_id, key, now)
            self._threads[self.thread_id(account_id, key)] = (account_id, key)
            self.touch(LEAD, account_id, key)
        return state

    def record(self, account_id: str, key: str, entry: LedgerEntry) -> None:
        self.ledger[(account_id, key)] = entry
        self.touch(LEDGER, account_id, key)

    def touch(self, kind: str, account_id: str, key: str = "") -> None:
        if self.track_changes:
            self._changed.add((kind, account_id, key))

    # --- what happens ------------------------------------------------------------------------------

    def _first_sight(self, account_id: str, key: str, now: dt.datetime) -> LeadState:
        """Who the lead already is to this account: decided once, from the lead's own draws."""
        draw = self.drawer(account_id, key)
        u = draw("profile")
        profile = next((name for name, upper in self.behaviour.profiles if u < upper), "fresh")
        state = LeadState(key=key, first_seen=now, profile=profile)
        if profile in ("connected", "messaged_first", "recent_conversation"):
            state.connected_at = now - dt.timedelta(days=30 + 700 * draw("connected-ago"))
        if profile == "pending":
            sent_at = now - dt.timedelta(days=1 + 19 * draw("pending-ago"))
            # Still pending now by definition, so its acceptance (if any) is drawn from now on.
            self._add_invite(account_id, state, sent_at, with_note=False, accept_from=now)
        elif profile == "messaged_first":  # the lead wrote a few days ago
            at = now - dt.timedelta(days=1 + 5 * draw("history-ago"))
            state.messages.append(Note(self.ident("msg", account_id, key, "history"), at, True))
            state.thread_at = at
        elif profile == "recent_conversation":  # the sender wrote in the last 3 days
            at = now - dt.timedelta(hours=1 + 70 * draw("history-ago"))
            state.messages.append(Note(self.ident("msg", account_id, key, "history"), at, False))
            state.thread_at = at
        return state

    def invite(self, account_id: str, state: LeadState, now: dt.datetime, *, with_note: bool) -> Invite:
        invite = self._add_invite(account_id, state, now, with_note=with_note, accept_from=now)
        self.touch(LEAD, account_id, state.key)
        return invite

    def _add_invite(self, account_id: str, state: LeadState, sent_at: dt.datetime, *, with_note: bool,
                    accept_from: dt.datetime) -> Invite:
        number = len(state.invites)
        draw = self.drawer(account_id, state.key)
        accept_at = None
        if draw(f"accept:{number}") < self.behaviour.accept_rate:
            accept_at = accept_from + self.behaviour.accept_delay.sample(draw(f"accept-delay:{number}"))
        invite = Invite(number, sent_at, with_note, self.ident("inv", account_id, state.key, f"invite:{number}"),
                        accept_at)
        state.invites.append(invite)
        if accept_at is not None:
            self._push_accept(account_id, state.key, invite)
        return invite

    def withdraw(self, account_id: str, state: LeadState, invite: Invite, now: dt.datetime) -> None:
        invite.withdrawn_at = now  # cancels the scheduled acceptance, if any
        self.touch(LEAD, account_id, state.key)

    def send(self, account_id: str, state: LeadState, now: dt.datetime) -> Note:
        """Our message: opens the thread if there is none, and may start the lead's next reply."""
        if not state.thread_open(now):
            state.thread_at = now
        ours = sum(1 for m in state.messages if not m.from_lead)
        sent = Note(self.ident("msg", account_id, state.key, f"message:{ours}"), now, False)
        state.messages.append(sent)
        self._schedule_reply(account_id, state, now)
        self.touch(LEAD, account_id, state.key)
        return sent

    def _schedule_reply(self, account_id: str, state: LeadState, now: dt.datetime) -> None:
        """Each message received may bring a reply (unless one is already on its way), one draw per
        message: `reply_rate` for the first, `reply_decay` times less likely for each later one, so
        that follow-ups have a yield of their own."""
        if any(at > now for at in state.replies):
            return
        number = sum(1 for m in state.messages if not m.from_lead) - 1  # this message, counted from 0
        draw = self.drawer(account_id, state.key)
        if draw(f"reply:message:{number}") >= self.behaviour.reply_rate * self.behaviour.reply_decay ** number:
            return
        round_ = len(state.replies)
        at = now + self.behaviour.reply_delay.sample(draw(f"reply-delay:message:{number}"))
        state.replies.append(at)
        state.messages.append(Note(self.reply_id(account_id, state.key, round_), at, True))
        self._push_reply(account_id, state.key, round_, at)

    def start_outage(self, acc: AccountState, now: dt.datetime, end: dt.datetime | None) -> Outage:
        outage = Outage(len(acc.outages), now, end)
        acc.outages.append(outage)
        self.touch(ACCOUNT, acc.account_id)
        self._push_outage(acc.account_id, outage)
        return outage

    def end_outage(self, acc: AccountState, outage: Outage, now: dt.datetime) -> None:
        outage.end = now
        self.touch(ACCOUNT, acc.account_id)
        self._push_outage(acc.account_id, outage)  # the expiry is already known; dropped as seen

    # --- events ----------------------------------------------------------------------------------

    def realise_due(self, account_id: str, now: dt.datetime) -> None:
        """Move events whose time has come from the heap to the happened list."""
        heap = self._future.get(account_id, [])
        seen = self._seen.setdefault(account_id, set())
        happened = self._happened.setdefault(account_id, [])
        while heap and heap[0][0] <= now:
            at, event_id, kind, lead_key, number = heapq.heappop(heap)
            if event_id in seen:
                continue  # pushed again after a reload
            event = self._realise(account_id, at, event_id, kind, lead_key, number)
            if event is not None:
                seen.add(event_id)
                bisect.insort(happened, event, key=event_order)

    def window(self, account_id: str, since: dt.datetime | None, until: dt.datetime) -> list[ProviderEvent]:
        """Realised events with `since < occurred_at <= until`, in time order."""
        happened = self._happened.get(account_id, [])
        low = 0 if since is None else bisect.bisect_right(happened, since, key=_occurred_at)
        return happened[low:bisect.bisect_right(happened, until, key=_occurred_at)]

    def _realise(self, account_id: str, at: dt.datetime, event_id: str, kind: str, lead_key: str,
                 number: int) -> ProviderEvent | None:
        """The event, or None when what scheduled it no longer holds."""
        if kind in ("auth_expired", "auth_restored"):
            outage = self.accounts[account_id].outages[number]
            if at != (outage.start if kind == "auth_expired" else outage.end):
                return None  # restored earlier than first planned
            return ProviderEvent(event_id, kind, at, account_id)
        state = self.leads[(account_id, lead_key)]
        thread_id = self.thread_id(account_id, lead_key)
        if kind == "accepted":
            invite = state.invites[number]
            if invite.withdrawn_at is not None or invite.accept_at != at:
                return None
            return ProviderEvent(event_id, kind, at, account_id, lead_key,
                                 thread_id if state.thread_open(at) else None,
                                 {"invitation_id": invite.invitation_id})
        if state.replies[number] != at:
            return None
        return ProviderEvent(event_id, kind, at, account_id, lead_key, thread_id,
                             {"message_id": self.reply_id(account_id, lead_key, number)})

    def _push(self, account_id: str, at: dt.datetime, event_id: str, kind: str, lead_key: str, number: int) -> None:
        heapq.heappush(self._future.setdefault(account_id, []), (at, event_id, kind, lead_key, number))

    def _push_accept(self, account_id: str, key: str, invite: Invite) -> None:
        if invite.accept_at is not None:
            self._push(account_id, invite.accept_at, f"{account_id}:{key}:accepted:{invite.number}", "accepted",
                       key, invite.number)

    def _push_reply(self, account_id: str, key: str, round_: int, at: dt.datetime) -> None:
        self._push(account_id, at, f"{account_id}:{key}:replied:{round_}", "replied", key, round_)

    def _push_outage(self, account_id: str, outage: Outage) -> None:
        self._push(account_id, outage.start, auth_event_id(account_id, "auth_expired", outage), "auth_expired", "",
                   outage.number)
        if outage.end is not None:
            self._push(account_id, outage.end, auth_event_id(account_id, "auth_restored", outage), "auth_restored",
                       "", outage.number)

    # --- draws and ids ---------------------------------------------------------------------------

    def drawer(self, account_id: str, lead_key: str) -> Callable[[str], float]:
        """Uniform draws in [0, 1) for one (account, lead), one per purpose."""
        prefix = f"{self.behaviour.seed}\x1f{account_id}\x1f{lead_key}\x1f"

        def draw(purpose: str) -> float:
            digest = hashlib.blake2b((prefix + purpose).encode(), digest_size=8).digest()
            return int.from_bytes(digest, "big") / 2.0 ** 64

        return draw

    def ident(self, prefix: str, account_id: str, lead_key: str, purpose: str) -> str:
        text = f"{self.behaviour.seed}\x1f{account_id}\x1f{lead_key}\x1f{purpose}"
        return f"{prefix}-{hashlib.blake2b(text.encode(), digest_size=8).hexdigest()}"

    def thread_id(self, account_id: str, lead_key: str) -> str:
        return self.ident("2", account_id, lead_key, "thread")  # LinkedIn thread ids look like "2-…"

    def thread_owner(self, conversation_id: str) -> tuple[str, str] | None:
        return self._threads.get(conversation_id)

    def reply_id(self, account_id: str, lead_key: str, round_: int) -> str:
        return self.ident("msg", account_id, lead_key, f"reply:{round_}")

    # --- persistence -------------------------------------------------------------------------------

    def changed_rows(self) -> list[Row]:
        """The records changed since the last call, as state-file rows."""
        rows = [(kind, account_id, key, dump(self._body(kind, account_id, key)))
                for kind, account_id, key in sorted(self._changed)]
        self._changed.clear()
        return rows

    def _body(self, kind: str, account_id: str, key: str) -> dict[str, Any]:
        if kind == LEDGER:
            return self.ledger[(account_id, key)].to_json()
        if kind == ACCOUNT:
            return self.accounts[account_id].to_json()
        return self.leads[(account_id, key)].to_json()

    def load_row(self, kind: str, account_id: str, key: str, body: str) -> None:
        """Take a record another process wrote, and schedule what it schedules."""
        data = load(body)
        if kind == LEDGER:
            self.ledger[(account_id, key)] = LedgerEntry.from_json(data)
        elif kind == ACCOUNT:
            acc = self.accounts[account_id] = AccountState.from_json(account_id, data)
            for outage in acc.outages:
                self._push_outage(account_id, outage)
        else:
            state = self.leads[(account_id, key)] = LeadState.from_json(key, data)
            self._threads[self.thread_id(account_id, key)] = (account_id, key)
            for invite in state.invites:
                self._push_accept(account_id, key, invite)
            for round_, at in enumerate(state.replies):
                self._push_reply(account_id, key, round_, at)

    def forget(self) -> None:
        """Drop everything held in memory (the state file is read again on the next call)."""
        for table in (self.leads, self.accounts, self.ledger, self._threads, self._future, self._happened,
                      self._seen, self._changed):
            table.clear()


def auth_event_id(account_id: str, kind: str, outage: Outage) -> str:
    return f"{account_id}:{kind}:{outage.number}"


def event_order(event: ProviderEvent) -> tuple[dt.datetime, str]:
    return event.occurred_at, event.event_id


def _occurred_at(event: ProviderEvent) -> dt.datetime:
    return event.occurred_at
