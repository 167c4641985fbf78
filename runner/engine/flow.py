"""The core of a lead's run that the step handlers (`runner.engine.steps`) and the action code
(`runner.engine.actions`) share: the lead context (`Ctx`), the outcomes a step returns, and the helpers
both use (following a target, backoff, facts, refreshing what the provider knows, closing an
outbox row). It imports neither of them.
"""
from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from runner.engine import limits
from runner.engine.absorb import absorb
from runner.engine.pacing_grid import unit as _unit
from runner.engine.runtime import Runtime, SenderRuntime
from runner.language import calendar as cal
from runner.language.model import Sequence, Target
from runner.providers.base import ActionResult, LeadRef, ProviderError
from runner.store import Action, Enrollment, Lead, blocks
from runner.store.enrollment_writes import save_enrollment
from runner.store.rows import close_action_row, set_lead_json
from runner.store.transactions import Transaction

#: The pause reason of a sender whose provider refused its API key (a configuration error).
API_KEY_REJECTED = "API key rejected"


# --- outcomes -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Goto:
    step_id: str | None  # None: the end of the list, outcome "completed"


@dataclass(frozen=True)
class Sleep:
    until: dt.datetime


@dataclass(frozen=True)
class Finish:
    outcome: str


@dataclass(frozen=True)
class Fail:
    reason: str


@dataclass(frozen=True)
class Pause:
    reason: str


@dataclass(frozen=True)
class PauseSender:
    reason: str


Outcome = Goto | Sleep | Finish | Fail | Pause | PauseSender


@dataclass
class Advanced:
    transitions: int = 0
    final: str | None = None  # the outcome or state the lead ended in during this call


class Interrupted(Exception):
    """The lead was paused (or otherwise changed) by another process while this run worked on it.

    Everything since the last commit is rolled back; the lead continues where it was when resumed
    (an action already performed is reconciled then, through its outbox row).
    """


class Woken(Exception):
    """Events for the lead arrived (the inbox) while it was about to make an external call.

    Everything since the last commit is rolled back (the call is not made; an action recorded for
    it is not) and the lead is due at once: its next run applies the events first and checks its
    exits, so a reply stops it before any further action.
    """


class Stopping(Exception):
    """The process was asked to stop (SIGINT/SIGTERM) before this lead's next external call.

    Raised by `Ctx.stop_if_asked` after it committed what the lead has done so far (the same commit
    that precedes every external call), so what remains is exactly the state a crash right before
    the call would leave; the engine hands the lead back, due at once, for the next run.
    """


#: the context of an external call that needs no commit around it (see `Ctx.outside`)
_NOTHING = contextlib.nullcontext()


@dataclass
class Ctx:
    """One lead's run: what it runs against, its enrollment and lead rows, the facts as they stand,
    the writes its current step queued, and the transaction they go into."""

    rt: Runtime
    enr: Enrollment
    lead: Lead
    seq: Sequence
    sender: SenderRuntime
    now: dt.datetime
    facts: dict[str, Any]
    pending: list[Callable[[], object]] = field(default_factory=list)
    txn: Transaction | None = None  # the lead's open transaction (see `advance`)
    db_state: str = "active"  # the enrollment's state as this run last read or wrote it
    dirty: bool = False  # a transition or an outbox key not yet written to the enrollment row
    #: the lead's inbox events were taken since this run's transaction (re)began; until it commits,
    #: no other writer can add any on SQLite (the transaction holds the write lock)
    events_taken: bool = False
    #: the block list's answer for the lead, read fresh in this run's transaction (see `blocked_now`)
    block_read: bool | None = None
    # what the context works out once (not arguments: `dataclasses.replace` starts them afresh)
    _ref: tuple[Lead, Any, Any, LeadRef] | None = field(default=None, init=False, repr=False, compare=False)
    _zone: ZoneInfo | None = field(default=None, init=False, repr=False, compare=False)  # see `zone`
    _blocked: bool | None = field(default=None, init=False, repr=False, compare=False)  # see `blocked`

    def outside(self) -> contextlib.AbstractContextManager[None]:
        """Around every external call (provider, notify URL): everything written so far is saved and
        committed first, and no database lock is held while the call is in flight. (Facts the
        steps merely observed since the last save may wait for the next one: losing them in a crash
        only means asking again.) A run asked to stop makes no new call: it stops here (`Stopping`)."""
        self.stop_if_asked()
        if self.rt.calls_in_process:
            # The simulator's sandbox: nothing outside the process sees the store, and no event can
            # arrive for the lead before its run ends (they come in at the tick's sync only). (One
            # shared empty context: a generator's context manager, made for every call of every
            # lead, cost more than the call to the sandbox.)
            return _NOTHING
        return self._released()

    @contextlib.contextmanager
    def _released(self) -> Iterator[None]:
        if self.take_events():
            raise Woken(f"enrollment {self.enr.id}: events arrived")
        if self.dirty:
            self.save()
        if self.txn is None:
            yield
            return
        try:
            with self.txn.released():  # inside a dry run's outer transaction nothing is committed for real anyway
                yield
        finally:
            if not self.txn.nested:  # a new transaction: events (and blocks) may have arrived meanwhile
                self.events_taken = False
                self.block_read = None

    def stop_if_asked(self) -> None:
        """When the run was asked to stop: commit what is done and raise `Stopping`. Called where no
        external call is half-done: before an action is recorded and before every call. (Steps that
        touch only the store go on: a lead that can end or go to sleep without a call does.)"""
        if not self.rt.stop_requested():
            return
        if self.dirty:
            self.save()
        if self.txn is not None and not self.txn.nested:
            self.txn.commit()  # and begin again: the unwinding transaction ends an empty one
        raise Stopping(f"enrollment {self.enr.id}: the run is stopping")

    def take_events(self) -> int:
        """The lead's pending inbox events, applied to its facts (runner.engine.absorb); how many."""
        if self.events_taken and (self.rt.calls_in_process or (self.txn is not None and self.txn.excludes_writers)):
            # None can have arrived since: the simulator (see `Runtime.calls_in_process`), or a
            # transaction that has held the database's write lock since they were taken.
            return 0
        applied = absorb(self.rt, self.enr, self.facts, self.now)
        self.events_taken = True
        if applied:
            self.dirty = True
        return applied

    def save(self) -> None:
        """Write the enrollment row (its cursor and facts) once for all the transitions since the last
        save, guarded by its version. Raises Interrupted when another process changed it meanwhile
        (paused it, or took it over after this run's lease ran out)."""
        self.enr.facts = self.facts
        if not save_enrollment(self.enr, self.db_state):
            raise Interrupted(f"enrollment {self.enr.id} is no longer {self.db_state} at version {self.enr.version}")
        self.db_state = self.enr.state
        self.dirty = False

    # (`zone` and `blocked` are worked out once per wake-up and kept on the context, by hand:
    # Python 3.11's `functools.cached_property` takes a lock at every first read, for every lead.)

    @property
    def zone(self) -> ZoneInfo:
        """The zone the lead's calendar is read in."""
        zone = self._zone
        if zone is None:
            lead_tz = self.lead.timezone or (self.lead.fields or {}).get("timezone")
            zone = self._zone = cal.resolve_zone(self.seq.calendar, lead_tz=lead_tz, sender_tz=self.sender.timezone)
        return zone

    @property
    def blocked(self) -> bool:
        """For exits and conditions, looked up once per wake-up; `actions.perform` looks again, fresh,
        right before it records an action."""
        blocked = self._blocked
        if blocked is None:
            blocked = self._blocked = blocks.is_blocked(self.lead.key)
        return blocked

    def write_pending(self) -> None:
        """Run the writes the current step queued (inside the caller's transaction), once."""
        for write in self.pending:
            write()
        self.pending.clear()

    def blocked_now(self) -> bool:
        """Whether the lead is on the block list, read fresh right before an action: a block may
        have come in since the lead woke up. Read once per transaction while it holds SQLite's write
        lock (no other writer can add a block before it commits); on every call otherwise."""
        if self.block_read is not None and self.txn is not None and self.txn.excludes_writers:
            return self.block_read
        self.block_read = blocks.is_blocked(self.lead.key)
        return self.block_read

    @property
    def ref(self) -> LeadRef:
        """The lead as providers take it: built again only when the lead's ids or fields were
        replaced since (`learn_ids` replaces the ids; nothing changes either in place)."""
        lead = self.lead
        ids, fields = lead.provider_ids, lead.fields
        kept = self._ref
        if kept is not None and kept[0] is lead and kept[1] is ids and kept[2] is fields:
            return kept[3]
        ref = LeadRef(key=lead.key, profile_url=lead.profile_url, provider_ids=dict(ids or {}),
                      fields={k: str(v) for k, v in (fields or {}).items() if v is not None})
        self._ref = (lead, ids, fields, ref)
        return ref


# --- facts ----------------------------------------------------------------------------------------

def iso(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).isoformat()


def _parse(s: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(s) if s else None

def fact_values(ctx: Ctx) -> dict[str, Any]:
    f = ctx.facts
    last = _parse(f.get("last_message_at"))
    return {
        "connected": bool(f.get("connected")),
        "invite_pending": bool(f.get("invite_pending")),
        "invited": bool(f.get("invited")),
        "invited_with_note": bool(f.get("invited_with_note")),
        "accepted": bool(f.get("accepted")),
        "conversation_exists": bool(f.get("conversation_id") or f.get("conversation_exists")),
        "replied": bool(f.get("replied")),
        "lead_messaged_first": bool(f.get("lead_messaged_first")),
        "days_since_last_message": (ctx.now - last).total_seconds() / 86400 if last else None,
        "messages_sent": int(f.get("messages_sent", 0)),
        "blocked": ctx.blocked,
        "tags": list(ctx.lead.tags or []),
    }


def refresh_relationship(ctx: Ctx) -> None:
    with ctx.outside():
        rel = ctx.sender.provider.relationship(ctx.sender.account, ctx.ref)
    f = ctx.facts
    was_pending = bool(f.get("invite_pending"))
    f["connected"], f["invite_pending"] = rel.connected, rel.invite_pending
    if rel.invitation_id:
        f["invitation_id"] = rel.invitation_id
    # An invite seen pending (ours, or one sent elsewhere) that is now a connection was accepted:
    # `wait_for: accepted` counts both; `invited` tells whether this sequence sent it.
    if rel.connected and (f.get("invited") or was_pending):
        f["accepted"] = True
        f.setdefault("accepted_at", iso(rel.connected_at or ctx.now))
    learn_ids(ctx, rel.provider_ids)


def refresh_conversation(ctx: Ctx) -> None:
    """Sync-before-send: what the thread says now. A lead message after the start means replied."""
    with ctx.outside():
        conv = ctx.sender.provider.conversation(ctx.sender.account, ctx.ref)
    f = ctx.facts
    f["conversation_exists"] = conv.exists
    if conv.conversation_id:
        f["conversation_id"] = conv.conversation_id
    if conv.last_message is not None:
        f["last_message_at"] = iso(conv.last_message.sent_at)
    started = ctx.enr.created_at
    from_lead = [m for m in conv.messages if m.from_lead]
    if any(m.sent_at >= started for m in from_lead):
        f["replied"] = True
        f.setdefault("replied_at", iso(max(m.sent_at for m in from_lead)))
    if any(m.sent_at < started for m in from_lead) and not f.get("messages_sent"):
        f["lead_messaged_first"] = True


def learn_ids(ctx: Ctx, ids: Any) -> None:
    if ids:
        merged = {**(ctx.lead.provider_ids or {}), **dict(ids)}
        if merged != ctx.lead.provider_ids:
            ctx.lead.provider_ids = merged
            ctx.pending.append(lambda: set_lead_json(ctx.lead.id, "provider_ids", merged))

# --- flow helpers ---------------------------------------------------------------------------------

def follow(ctx: Ctx, step_id: str, target: Target | None) -> Outcome:
    if target is None:
        return Goto(ctx.seq.next_step_id(step_id))
    if target.end is not None:
        return Finish(target.end)
    return Goto(target.goto)


def backoff(rt: Runtime, attempt: int, *, key: str) -> dt.timedelta:
    """Exponential backoff with jitter: base * 2^(attempt-1), capped, times a factor in [0.5, 1.5)."""
    growth: int = 2 ** max(0, attempt - 1)
    raw = min(rt.backoff_base * growth, rt.backoff_cap)
    return raw * (0.5 + _unit(key, attempt))

def release_slot(ctx: Ctx) -> None:
    slot = ctx.facts.pop("slot", None)
    if slot:
        limits.release(ctx.seq.name, ctx.sender.id, slot["action"], slot["day"], slot.get("at"))


def close_action(ctx: Ctx, act: Action, status: str, *, error: ProviderError | None = None,
                 result: ActionResult | None = None, note: str | None = None, keep_charge: bool = False) -> None:
    """Queue the final write of an outbox row (inside the step's commit); refund a charge not used
    (unless `keep_charge`: the action may have happened, and a limit is a promise)."""
    act.status = status
    if error is not None:
        act.error_kind = error.label or error.kind.value
        act.error_message = error.message + (f" ({note})" if note else "")
    if result is not None:
        act.performed_at = result.performed_at
        act.provider_id = result.provider_id or act.provider_id
        act.conversation_id = result.conversation_id or act.conversation_id
    refund = act.charged and status != "done" and not keep_charge
    if refund:
        act.charged = False
    ctx.facts.pop("inflight", None)
    sender_zone = ctx.sender.caps.zone
    limit_key = "inmail" if act.action == "inmail" else act.action

    def write() -> None:
        close_action_row(act)
        if refund:
            limits.refund(act.sequence, ctx.sender.id, limit_key, cal.local_date(act.started_at, sender_zone).isoformat())

    ctx.pending.append(write)
