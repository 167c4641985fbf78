"""The sandbox's simulated LinkedIn as data, and the SQLite file that lets processes share it.

`sandbox_world` decides what happens and `sandbox` maps API calls onto it; this module only holds
it: one record per (account, lead) the sandbox has seen, one per account, and one per performed
idempotency key. A record stores facts with their times, some of them in the future (a scheduled
acceptance or reply), so what LinkedIn looks like at a given moment is always computed from the
record and `now`; moving the clock never needs a write.

With a state file, every record is a row of `sandbox_rows` holding its JSON form and a `seq` taken
from one increasing counter. A process remembers the highest `seq` it has read; when SQLite's
`PRAGMA data_version` says another connection committed, it reads only the rows above it. Every
call runs inside `BEGIN IMMEDIATE`, so two processes never interleave a read-modify-write.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from runner.language.diagnostics import UserError
from runner.providers.base import ActionResult

UTC = dt.UTC

#: What a lead looks like on first sight, decided once per (account, lead).
PROFILES = ("fresh", "inaccessible", "connected", "pending", "messaged_first", "recent_conversation")

#: Row kinds in the state file.
LEAD, ACCOUNT, LEDGER = "lead", "account", "ledger"


def _iso(value: dt.datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _time(value: str | None) -> dt.datetime | None:
    return None if value is None else dt.datetime.fromisoformat(value)


_when = dt.datetime.fromisoformat  # a time that is always present


def _without_empty(body: dict[str, Any]) -> dict[str, Any]:
    # Most leads have no history, replies or faults: leaving those out keeps 100k-lead files small.
    return {name: value for name, value in body.items() if value is not None and value != [] and value != {}}


@dataclass(slots=True)
class Invite:
    number: int  # 0, 1, … per (account, lead); seeds the acceptance draw
    sent_at: dt.datetime
    with_note: bool
    invitation_id: str
    accept_at: dt.datetime | None  # scheduled acceptance, possibly in the future; None: never
    withdrawn_at: dt.datetime | None = None

    def accepted_by(self, now: dt.datetime) -> bool:
        return self.withdrawn_at is None and self.accept_at is not None and self.accept_at <= now

    def pending_at(self, now: dt.datetime) -> bool:
        return self.withdrawn_at is None and (self.accept_at is None or self.accept_at > now)


@dataclass(frozen=True, slots=True)
class Note:
    """A message in the thread; lead replies are stored ahead of time and show once `sent_at` passes."""

    message_id: str
    sent_at: dt.datetime
    from_lead: bool


@dataclass(slots=True)
class LeadState:
    key: str
    first_seen: dt.datetime
    profile: str  # one of PROFILES
    connected_at: dt.datetime | None = None  # a connection older than first sight
    thread_at: dt.datetime | None = None  # a thread opened by history or by our first message
    invites: list[Invite] = field(default_factory=list)
    messages: list[Note] = field(default_factory=list)
    replies: list[dt.datetime] = field(default_factory=list)  # scheduled lead replies, one per round
    faults: dict[str, int] = field(default_factory=dict)  # calls per method, numbering the fault draws

    def connected_since(self, now: dt.datetime) -> dt.datetime | None:
        if self.connected_at is not None and self.connected_at <= now:
            return self.connected_at
        for invite in self.invites:
            if invite.accepted_by(now):
                return invite.accept_at
        return None

    def pending_invite(self, now: dt.datetime) -> Invite | None:
        last = self.invites[-1] if self.invites else None
        return last if last is not None and last.pending_at(now) else None

    def thread_open(self, now: dt.datetime) -> bool:
        # An accepted invite with a note opens the thread at acceptance (seed 000).
        if self.thread_at is not None and self.thread_at <= now:
            return True
        return any(i.with_note and i.accepted_by(now) for i in self.invites)

    def visible_messages(self, now: dt.datetime) -> list[Note]:
        notes = [Note(f"{i.invitation_id}-note", i.sent_at, False)
                 for i in self.invites if i.with_note and i.accepted_by(now)]
        notes.extend(m for m in self.messages if m.sent_at <= now)
        return sorted(notes, key=lambda m: (m.sent_at, m.message_id))

    def to_json(self) -> dict[str, Any]:
        return _without_empty({
            "first_seen": _iso(self.first_seen), "profile": self.profile,
            "connected_at": _iso(self.connected_at), "thread_at": _iso(self.thread_at),
            "invites": [[i.number, _iso(i.sent_at), i.with_note, i.invitation_id, _iso(i.accept_at),
                         _iso(i.withdrawn_at)] for i in self.invites],
            "messages": [[m.message_id, _iso(m.sent_at), m.from_lead] for m in self.messages],
            "replies": [r.isoformat() for r in self.replies],
            "faults": self.faults,
        })

    @classmethod
    def from_json(cls, key: str, data: dict[str, Any]) -> LeadState:
        invites = [Invite(number, _when(sent_at), with_note, invitation_id, _time(accept_at), _time(withdrawn_at))
                   for number, sent_at, with_note, invitation_id, accept_at, withdrawn_at in data.get("invites", ())]
        messages = [Note(message_id, _when(sent_at), from_lead)
                    for message_id, sent_at, from_lead in data.get("messages", ())]
        return cls(key=key, first_seen=_when(data["first_seen"]), profile=data["profile"],
                   connected_at=_time(data.get("connected_at")), thread_at=_time(data.get("thread_at")),
                   invites=invites, messages=messages, replies=[_when(r) for r in data.get("replies", ())],
                   faults=dict(data.get("faults", {})))


@dataclass(slots=True)
class Outage:
    """A span in which the account's LinkedIn session does not work."""

    number: int
    start: dt.datetime
    end: dt.datetime | None  # None: until restore_auth
    reported: bool = False  # poll_events has handed out its auth_expired event

    def active_at(self, now: dt.datetime) -> bool:
        return self.start <= now and (self.end is None or self.end > now)


@dataclass(slots=True)
class AccountState:
    account_id: str
    outages: list[Outage] = field(default_factory=list)
    polls: int = 0  # numbers the fault draws of poll_events

    def outage_at(self, now: dt.datetime) -> Outage | None:
        last = self.outages[-1] if self.outages else None
        return last if last is not None and last.active_at(now) else None

    def to_json(self) -> dict[str, Any]:
        return {"outages": [[o.number, _iso(o.start), _iso(o.end), o.reported] for o in self.outages],
                "polls": self.polls}

    @classmethod
    def from_json(cls, account_id: str, data: dict[str, Any]) -> AccountState:
        outages = [Outage(number, _when(start), _time(end), reported)
                   for number, start, end, reported in data["outages"]]
        return cls(account_id, outages, data["polls"])


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    """An action performed under an idempotency key, and the result its first call returned."""

    action: str  # visit | connect | message | withdraw
    lead_key: str
    result: ActionResult

    def to_json(self) -> dict[str, Any]:
        r = self.result
        return _without_empty({"action": self.action, "lead": self.lead_key, "performed_at": _iso(r.performed_at),
                               "provider_id": r.provider_id, "conversation_id": r.conversation_id,
                               "invitation_id": r.invitation_id, "provider_ids": dict(r.provider_ids)})

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LedgerEntry:
        result = ActionResult(performed_at=_when(data["performed_at"]), provider_id=data.get("provider_id"),
                              conversation_id=data.get("conversation_id"), invitation_id=data.get("invitation_id"),
                              provider_ids=data.get("provider_ids", {}))
        return cls(data["action"], data["lead"], result)


Row = tuple[str, str, str, str]  # kind, account id, key, JSON body

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sandbox_meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS sandbox_rows (
    kind TEXT NOT NULL, account TEXT NOT NULL, key TEXT NOT NULL,
    seq INTEGER NOT NULL, body TEXT NOT NULL,
    PRIMARY KEY (kind, account, key)
);
CREATE INDEX IF NOT EXISTS sandbox_rows_seq ON sandbox_rows (seq);
"""


class StateFile:
    """The SQLite file behind a sandbox with `state_path`: begin, read what others wrote, write, commit."""

    def __init__(self, path: str) -> None:
        self.path = path
        directory = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(directory):
            raise UserError(f"sandbox state file {path}: directory {directory} does not exist "
                            "(sandbox.state_path in seqrun.yaml)")
        # Autocommit mode: transactions are opened explicitly with BEGIN IMMEDIATE.
        self._db = sqlite3.connect(path, timeout=30.0, isolation_level=None, check_same_thread=False)
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA busy_timeout=30000")
            foreign = [name for (name,) in self._db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
                       if not name.startswith("sandbox_")]
            if foreign:
                raise UserError(f"{path} is not a sandbox state file (it holds other tables: {', '.join(foreign[:3])}); "
                                "point sandbox.state_path at a file of its own")
            self._db.executescript(_SCHEMA)
        except sqlite3.DatabaseError as exc:
            self._db.close()
            raise UserError(f"sandbox state file {path} cannot be used: {exc}; delete it to start the simulated "
                            "LinkedIn afresh, or point sandbox.state_path elsewhere") from None
        except UserError:
            self._db.close()
            raise
        self._data_version: int | None = None
        self._seq = 0

    def claim_seed(self, seed: int) -> int:
        """The seed the file was created with (this one when the file is new)."""
        self._db.execute("INSERT OR IGNORE INTO sandbox_meta (name, value) VALUES ('seed', ?)", (str(seed),))
        (value,) = self._db.execute("SELECT value FROM sandbox_meta WHERE name = 'seed'").fetchone()
        return int(value)

    def begin(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def changed_rows(self) -> Iterator[Row]:
        """Rows other connections committed since this one last looked (all rows the first time)."""
        (version,) = self._db.execute("PRAGMA data_version").fetchone()
        if version == self._data_version:
            return
        self._data_version = version
        cursor = self._db.execute(
            "SELECT kind, account, key, body, seq FROM sandbox_rows WHERE seq > ? ORDER BY seq", (self._seq,))
        for kind, account, key, body, seq in cursor:
            self._seq = seq
            yield kind, account, key, body

    def write(self, rows: Iterable[Row]) -> None:
        # Inside BEGIN IMMEDIATE after changed_rows(), self._seq is the highest seq in the file.
        params = []
        for kind, account, key, body in rows:
            self._seq += 1
            params.append((kind, account, key, self._seq, body))
        self._db.executemany(
            "INSERT OR REPLACE INTO sandbox_rows (kind, account, key, seq, body) VALUES (?, ?, ?, ?, ?)", params)

    def commit(self) -> None:
        self._db.execute("COMMIT")

    def rollback(self) -> None:
        if self._db.in_transaction:
            self._db.execute("ROLLBACK")
        # What this process holds in memory may now be ahead of the file: read everything again.
        self._data_version = None
        self._seq = 0

    def close(self) -> None:
        self._db.close()


def dump(value: dict[str, Any]) -> str:
    return json.dumps(value, separators=(",", ":"))


def load(body: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(body)
    return loaded
