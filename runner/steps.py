"""What each kind of step does to one lead, and how the result is committed.

`advance(runtime, enrollment, now)` runs a lead's steps until it has to wait. Each step handler
(`HANDLERS`, keyed by step kind) returns one outcome — `Goto`, `Sleep`, `Finish`, `Fail`, `Pause` or
`PauseSender` — and `_commit` writes it in one transaction together with whatever the step recorded
(the outbox row, facts, usage). So every change to a lead is committed before the next external call.

Actions follow the outbox discipline: checks first (exits, sync-before-send, already connected,
window and limits), then the action is recorded `in_flight` and committed with its limit charge, then
the provider is called, then the result is committed. An action found in flight later (a crash, or a
timeout that may or may not have reached LinkedIn) is reconciled with `find_action` before anything
is retried: the idempotency key is `enrollment:step:entry:attempt`.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import functools
import hashlib
import logging
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Union

import peewee

from . import calendar as cal
from . import limits, templates
from .absorb import absorb
from .jinja import compile_condition
from .model import (
    ActionStep,
    BranchStep,
    Condition,
    EndStep,
    Sequence,
    Target,
    WaitForStep,
    WaitStep,
)
from .providers.base import (
    ActionResult,
    ErrorKind,
    LeadRef,
    ProviderError,
)
from .runtime import Runtime, SenderRuntime
from .store import Action, Enrollment, Lead, Sender, db
from .store.enrollment_writes import save_enrollment
from .store.leases import release_claims
from .store.rows import close_action_row, insert_transition, set_lead_json
from .store.sender_state import hold_action
from .urls import redact_secrets

log = logging.getLogger(__name__)
#: The pause reason of a sender whose provider refused its API key (a configuration error).
API_KEY_REJECTED = "API key rejected"

#: Facts that only the provider can tell; a branch that reads them refreshes them first.
RELATIONSHIP_FACTS = frozenset({"connected", "invite_pending", "accepted"})
CONVERSATION_FACTS = frozenset({"conversation_exists", "replied", "lead_messaged_first", "days_since_last_message"})


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


Outcome = Union[Goto, Sleep, Finish, Fail, Pause, PauseSender]


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


@dataclass
class Ctx:
    rt: Runtime
    enr: Enrollment
    lead: Lead
    seq: Sequence
    sender: SenderRuntime
    now: dt.datetime
    facts: dict[str, Any]
    pending: list[Callable[[], None]] = field(default_factory=list)
    txn: Any = None  # the lead's open transaction (see `advance`)
    db_state: str = "active"  # the enrollment's state as this run last read or wrote it
    dirty: bool = False  # a transition or an outbox key not yet written to the enrollment row
    #: the lead's inbox events were taken since this run's transaction (re)began; until it commits,
    #: no other writer can add any on SQLite (the transaction holds the write lock)
    events_taken: bool = False

    @contextlib.contextmanager
    def outside(self) -> Iterator[None]:
        """Around every external call (provider, notify URL): everything written so far is saved and
        committed first, and no database lock is held while the call is in flight. (Facts the
        steps merely observed since the last save may wait for the next one: losing them in a crash
        only means asking again.) A run asked to stop makes no new call: it stops here (`Stopping`)."""
        self.stop_if_asked()
        if self.take_events():
            raise Woken(f"enrollment {self.enr.id}: events arrived")
        if self.dirty:
            self.save()
        if self.txn is not None and not isinstance(self.txn, peewee._savepoint):
            self.txn.commit(begin=False)
            try:
                yield
            finally:
                db.begin("IMMEDIATE")
                self.events_taken = False
        else:  # inside a dry run's outer transaction: nothing is committed for real anyway
            if self.txn is not None:
                self.txn.commit()
            yield

    def stop_if_asked(self) -> None:
        """When the run was asked to stop: commit what is done and raise `Stopping`. Called where no
        external call is half-done: before an action is recorded and before every call. (Steps that
        touch only the store go on: a lead that can end or go to sleep without a call does.)"""
        if not self.rt.stop_requested():
            return
        if self.dirty:
            self.save()
        if self.txn is not None and not isinstance(self.txn, peewee._savepoint):
            self.txn.commit()  # and begin again: the unwinding `atomic` ends an empty transaction
        raise Stopping(f"enrollment {self.enr.id}: the run is stopping")

    def take_events(self) -> int:
        """The lead's pending inbox events, applied to its facts (runner.absorb); how many."""
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


    @functools.cached_property
    def zone(self):  # type: ignore[no-untyped-def]
        lead_tz = self.lead.timezone or (self.lead.fields or {}).get("timezone")
        return cal.resolve_zone(self.seq.calendar, lead_tz=lead_tz, sender_tz=self.sender.timezone)

    @functools.cached_property
    def blocked(self) -> bool:
        """For exits and conditions, looked up once per wake-up; `actions.perform` looks again, fresh,
        right before it records an action."""
        return is_blocked(self.lead)

    @property
    def ref(self) -> LeadRef:
        return LeadRef(key=self.lead.key, profile_url=self.lead.profile_url, provider_ids=dict(self.lead.provider_ids or {}),
                       fields={k: str(v) for k, v in (self.lead.fields or {}).items() if v is not None})


# --- the loop for one lead ------------------------------------------------------------------------

def advance(rt: Runtime, enr: Enrollment, now: dt.datetime) -> Advanced:
    result = Advanced()
    # The version the lead started on (runner.versions): an edited file never changes what it does.
    seq = rt.sequence_for(enr.sequence, enr.sequence_hash)
    sender = rt.senders.get(enr.sender_id) if enr.sender_id is not None else None
    problem = _cannot_run(rt, enr, seq, sender)
    if problem is not None or seq is None or sender is None:
        _commit_simple(enr, Pause(problem or "not runnable"), now)
        result.final = "paused"
        return result
    # One IMMEDIATE transaction per lead, committed around every external call (`Ctx.outside`) and
    # at the end: steps that touch only our store (tags, waits, branches on stored facts) are not
    # worth an fsync each, and losing them in a crash is harmless because nothing outside saw them.
    # IMMEDIATE: what the run reads (state, block list, usage) cannot change before it commits.
    try:
        with db.atomic("IMMEDIATE") as txn:
            ctx = Ctx(rt, enr, enr.lead, seq, sender, now, dict(enr.facts or {}), txn=txn)
            for _ in range(rt.max_transitions):
                outcome = _step_once(ctx)
                result.transitions += 1
                _commit(ctx, outcome)
                if not isinstance(outcome, Goto) or ctx.enr.state != "active":
                    if ctx.enr.state != "active":
                        result.final = ctx.enr.outcome or ctx.enr.state
                    break
            else:
                _commit(ctx, Sleep(now + dt.timedelta(minutes=1)))  # a guard; validate rejects cycles without waits
            ctx.take_events()  # what arrived during its last call is saved with it, never overwritten
            ctx.save()
    except Woken:
        release_claims([enr.id], rt.owner, now)  # due at once: its next run applies the events first
        log.info("lead %s: events arrived before its next call; it plans again", enr.lead.key)
    except Interrupted as exc:
        log.info("lead %s: stopped, %s (paused from elsewhere)", enr.lead.key, exc)
        result.final = "interrupted"
    except Stopping:
        log.info("lead %s: the run is stopping; the lead continues at step %s next time", enr.lead.key, enr.step_id)
        result.final = STOPPED
    return result


#: `Advanced.final` of a lead left alone because the run is stopping
STOPPED = "stopped"


def _cannot_run(rt: Runtime, enr: Enrollment, seq: Sequence | None, sender: SenderRuntime | None) -> str | None:
    if seq is None and enr.sequence in rt.sequences:
        return (f'the version of sequence "{enr.sequence}" this lead started on is not stored; move it with '
                f'`seqrun leads migrate --sequence {enr.sequence}`')
    if seq is None:
        return f'sequence "{enr.sequence}" is not loaded (renamed or removed?)'
    if sender is None:
        return "the lead's sender is not configured any more"
    if enr.step_id is not None and enr.step_id not in seq.index:
        return f'step "{enr.step_id}" no longer exists in sequence "{seq.name}" (edited since the lead started)'
    return None


def _step_once(ctx: Ctx) -> Outcome:
    if ctx.enr.step_id is None:
        return Goto(ctx.seq.steps[0].id)
    step = ctx.seq.step(ctx.enr.step_id)
    if not ctx.events_taken:
        ctx.take_events()  # events that arrived since the last commit: exits see them
    try:
        if ctx.facts.get("inflight") and isinstance(step, ActionStep):
            # Settle an action left in flight before anything else, exits included: a lead that
            # ends here must not leave a performed action unrecorded (or a charge unrefunded).
            from .actions import reconcile

            settled = reconcile(ctx, step)
            if settled is not None:
                return settled
        if step.kind != "end":
            ended = check_exits(ctx)
            if ended is not None:
                return ended
        return HANDLERS[step.kind](ctx, step)
    except ProviderError as err:
        return on_provider_error(ctx, step, err, None)
    except templates.TemplateRenderError as err:
        return Fail(f"template error: {err}")


def _commit(ctx: Ctx, outcome: Outcome) -> None:
    """Apply one transition: the step's queued writes now, the enrollment row at the next save
    (`Ctx.save`, at the next external call or when the lead's run ends; see `advance`)."""
    enr, now = ctx.enr, ctx.now
    for write in ctx.pending:
        write()
    ctx.pending.clear()
    if isinstance(outcome, Goto):
        if outcome.step_id is None:
            _finish(ctx, "done", "completed")
        else:
            enr.step_id = outcome.step_id
            enr.attempt = 0
            ctx.facts.pop("retries", None)
            ctx.facts.pop("retry_seconds", None)
            enr.step_entered_at = now
            insert_transition(enr.id, ctx.lead.id, ctx.seq.name, outcome.step_id, now)
            ctx.facts["entry"] = int(ctx.facts.get("entry", 0)) + 1
            if ctx.rt.observer is not None:
                ctx.rt.observer(ctx.seq.name, outcome.step_id)
    elif isinstance(outcome, Sleep):
        enr.due_at = outcome.until
        enr.lease_owner = None
    elif isinstance(outcome, Finish):
        _finish(ctx, "done", outcome.outcome)
    elif isinstance(outcome, Fail):
        enr.last_error = redact_secrets(outcome.reason)
        _finish(ctx, "failed", "failed")
    elif isinstance(outcome, Pause):
        _release_slot(ctx)
        enr.state, enr.paused_reason, enr.due_at, enr.lease_owner = "paused", outcome.reason, now, None
    elif isinstance(outcome, PauseSender):
        _release_slot(ctx)
        pause_sender(ctx.sender.id, outcome.reason, now, committing=enr.id)
        ctx.db_state = "paused"  # pause_sender paused this row too
        enr.state, enr.paused_reason, enr.due_at, enr.lease_owner = "paused", outcome.reason, now, None
    enr.facts = ctx.facts
    enr.updated_at = now
    ctx.dirty = True


def _commit_simple(enr: Enrollment, outcome: Pause, now: dt.datetime) -> None:
    was = enr.state
    enr.state, enr.paused_reason, enr.due_at, enr.updated_at = "paused", outcome.reason, now, now
    enr.lease_owner = None
    save_enrollment(enr, was)  # False: changed elsewhere meanwhile, and that change stands


def _finish(ctx: Ctx, state: str, outcome: str) -> None:
    _release_slot(ctx)
    ctx.enr.state, ctx.enr.outcome = state, outcome
    ctx.enr.finished_at, ctx.enr.due_at, ctx.enr.lease_owner = ctx.now, None, None


def _release_slot(ctx: Ctx) -> None:
    slot = ctx.facts.pop("slot", None)
    if slot:
        limits.release(ctx.seq.name, ctx.sender.id, slot["action"], slot["day"], slot.get("at"))


def pause_sender(sender_id: int, reason: str, now: dt.datetime, *, committing: int | None = None) -> None:
    """Pause a sender and every running enrollment it owns (AUTH_EXPIRED, or `seqrun pause --sender`).

    `committing` is the enrollment whose step is being committed: its own slot is handled there.
    """
    with db.atomic():
        Sender.update(status="paused", paused_reason=reason).where(Sender.id == sender_id).execute()
        running = Enrollment.select(Enrollment.id).where(Enrollment.sender == sender_id, Enrollment.state == "active",
                                                          Enrollment.id != (committing or 0))
        release_slots([e for (e,) in running.tuples()])
        Enrollment.update(state="paused", paused_reason=reason, updated_at=now).where(
            Enrollment.sender == sender_id, Enrollment.state == "active").execute()


def release_slots(enrollment_ids: list[int]) -> None:
    """Leads being paused give back the pacing slots they sleep for, and plan again when resumed.

    A kept slot would come due while the lead is paused, and every lead whose slot passed during the
    pause would act at the moment of the resume, all at once.
    """
    for start in range(0, len(enrollment_ids), 500):
        chunk = enrollment_ids[start:start + 500]
        rows = db.execute_sql(
            f"SELECT id, sequence, sender_id, facts FROM enrollment WHERE id IN ({', '.join('?' * len(chunk))}) "
            "AND facts LIKE '%\"slot\"%'", chunk).fetchall()
        for enrollment_id, sequence, sender_id, raw in rows:
            facts = Enrollment.facts.python_value(raw)
            slot = facts.pop("slot", None)
            if slot and sender_id is not None:
                limits.release(sequence, sender_id, slot["action"], slot["day"], slot.get("at"))
                db.execute_sql("UPDATE enrollment SET facts = ? WHERE id = ?",
                               (Enrollment.facts.db_value(facts), enrollment_id))


# --- facts, exits, conditions -----------------------------------------------------------------------

def _iso(t: dt.datetime) -> str:
    return t.astimezone(dt.timezone.utc).isoformat()


def _parse(s: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(s) if s else None


def is_blocked(lead: Lead) -> bool:
    return db.execute_sql("SELECT 1 FROM block WHERE key = ? LIMIT 1", (lead.key,)).fetchone() is not None


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


def _condition_context(ctx: Ctx) -> dict[str, Any]:
    fields = dict(ctx.lead.fields or {})
    lead = {name: fields.get(name) for name in ctx.seq.field_names if name != "linkedin_profile_url"}
    lead["linkedin_profile_url"] = ctx.lead.profile_url
    return {**fact_values(ctx), "lead": lead, "sender": _sender_view(ctx.sender), "sequence": {"name": ctx.seq.name}}


def _sender_view(sender: SenderRuntime) -> dict[str, str]:
    return {"name": sender.name, "full_name": sender.full_name or sender.name}


@functools.lru_cache(maxsize=4096)
def _compiled(source: str) -> Callable[..., Any]:
    return compile_condition(source)


def evaluate(ctx: Ctx, condition: Condition) -> bool:
    try:
        return bool(_compiled(condition.source)(**_condition_context(ctx)))
    except Exception as exc:  # noqa: BLE001 - a condition that fails for this lead's data
        raise templates.TemplateRenderError(ctx.seq.path, condition.pos.line, f"condition {condition.source!r}: {exc}") from None


def check_exits(ctx: Ctx) -> Outcome | None:
    """Global exits, checked at every wake-up and before every action. Blocked leads always stop."""
    if ctx.blocked:
        return Finish("blocked")
    for ex in ctx.seq.exits:
        if ex.name == "replied" and ctx.facts.get("replied"):
            return Finish(ex.outcome)
        if ex.when is not None and evaluate(ctx, ex.when):
            return Finish(ex.outcome)
    return None


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
        f.setdefault("accepted_at", _iso(rel.connected_at or ctx.now))
    _learn_ids(ctx, rel.provider_ids)


def refresh_conversation(ctx: Ctx) -> None:
    """Sync-before-send: what the thread says now. A lead message after the start means replied."""
    with ctx.outside():
        conv = ctx.sender.provider.conversation(ctx.sender.account, ctx.ref)
    f = ctx.facts
    f["conversation_exists"] = conv.exists
    if conv.conversation_id:
        f["conversation_id"] = conv.conversation_id
    if conv.last_message is not None:
        f["last_message_at"] = _iso(conv.last_message.sent_at)
    started = ctx.enr.created_at
    from_lead = [m for m in conv.messages if m.from_lead]
    if any(m.sent_at >= started for m in from_lead):
        f["replied"] = True
        f.setdefault("replied_at", _iso(max(m.sent_at for m in from_lead)))
    if any(m.sent_at < started for m in from_lead) and not f.get("messages_sent"):
        f["lead_messaged_first"] = True


def _learn_ids(ctx: Ctx, ids: Any) -> None:
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


def _unit(*parts: object) -> float:
    return int.from_bytes(hashlib.sha256(":".join(map(str, parts)).encode()).digest()[:8], "big") / 2**64


def backoff(rt: Runtime, attempt: int, *, key: str) -> dt.timedelta:
    """Exponential backoff with jitter: base * 2^(attempt-1), capped, times a factor in [0.5, 1.5)."""
    raw = min(rt.backoff_base * (2 ** max(0, attempt - 1)), rt.backoff_cap)
    return raw * (0.5 + _unit(key, attempt))


# --- step handlers --------------------------------------------------------------------------------

def run_wait(ctx: Ctx, step: WaitStep) -> Outcome:
    start = ctx.enr.step_entered_at or ctx.now
    until = cal.add_duration(ctx.seq.calendar, ctx.zone, start, step.duration)
    return follow(ctx, step.id, step.then) if ctx.now >= until else Sleep(until)


def _event_happened(ctx: Ctx, event: str) -> bool:
    f = ctx.facts
    if event == "accepted":
        return bool(f.get("accepted") or f.get("connected"))
    return bool(f.get("replied"))


def run_wait_for(ctx: Ctx, step: WaitForStep) -> Outcome:
    if _event_happened(ctx, step.event):
        return follow(ctx, step.id, step.then)
    start = ctx.enr.step_entered_at or ctx.now
    deadline = cal.add_duration(ctx.seq.calendar, ctx.zone, start, step.timeout)
    if ctx.now < deadline:
        return Sleep(deadline)
    # Last look before giving up: an event may have been missed (webhooks get lost, polls lag).
    if step.event == "accepted":
        refresh_relationship(ctx)
    else:
        refresh_conversation(ctx)
    if _event_happened(ctx, step.event):
        return follow(ctx, step.id, step.then)
    return follow(ctx, step.id, step.on_timeout)


def run_branch(ctx: Ctx, step: BranchStep) -> Outcome:
    names = _branch_names(step)
    if names & RELATIONSHIP_FACTS:
        refresh_relationship(ctx)
    if names & CONVERSATION_FACTS:
        refresh_conversation(ctx)
    for case in step.cases:
        if evaluate(ctx, case.when):
            return follow(ctx, step.id, case.target)
    if step.default is None:
        return Goto(ctx.seq.next_step_id(step.id))
    return follow(ctx, step.id, step.default)


@functools.lru_cache(maxsize=1024)
def _branch_names(step: BranchStep) -> frozenset[str]:
    from .jinja import expression_names

    names: set[str] = set()
    for case in step.cases:
        names |= expression_names(case.when.source)
    return frozenset(names)


def run_end(ctx: Ctx, step: EndStep) -> Outcome:
    return Finish(step.outcome)


def run_action(ctx: Ctx, step: ActionStep) -> Outcome:
    from .actions import perform

    return perform(ctx, step)


HANDLERS: dict[str, Callable[[Ctx, Any], Outcome]] = {
    "action": run_action,
    "wait": run_wait,
    "wait_for": run_wait_for,
    "branch": run_branch,
    "end": run_end,
}


# --- errors ---------------------------------------------------------------------------------------

def first_connect_step(seq: Sequence) -> str | None:
    return next((s.id for s in seq.steps if isinstance(s, ActionStep) and s.action == "connect"), None)


def on_provider_error(ctx: Ctx, step: Any, err: ProviderError, act: Action | None) -> Outcome:
    """The engine's fixed reaction to each error kind (seed 001's table)."""
    kind = err.kind
    f = ctx.facts
    if act is not None and kind is not ErrorKind.TRANSIENT:
        status = "skipped" if kind in (ErrorKind.ALREADY_CONNECTED, ErrorKind.INVITATION_PENDING) else "failed"
        close_action(ctx, act, status, error=err)
    if kind in (ErrorKind.LIMIT_REACHED, ErrorKind.NOT_READY):  # the sender's action waits, nothing failed
        _retry_under_new_key(ctx, act)
        until = err.retry_at or cal.next_open(ctx.seq.calendar, ctx.zone, ctx.now + dt.timedelta(hours=12))
        until = max(until, ctx.now + ctx.rt.backoff_base)  # a retry_at already past is no reason to spin
        if isinstance(step, ActionStep):
            name = "inmail" if step.action == "message" and step.inmail else step.action
            ctx.rt.provider_holds[(ctx.sender.id, name)] = until
            hold_action(ctx.sender.id, name, until, kind.name)  # for every runner, and the next run
        return Sleep(until)
    if kind is ErrorKind.ALREADY_CONNECTED:
        f["connected"] = f["accepted"] = True
        f["invite_pending"] = False
        return follow(ctx, step.id, getattr(step, "then", None))
    if kind is ErrorKind.INVITATION_PENDING:
        f["invite_pending"] = True
        return follow(ctx, step.id, getattr(step, "then", None))
    if kind is ErrorKind.NOT_CONNECTED:
        f["connected"] = False
        if f.get("invite_pending"):
            # Going back to connect would skip the pending invite and come straight back here, again
            # and again without a wait, calling the provider every time.
            return Fail(f"NOT_CONNECTED: {err.message} (the invitation is still pending: wait for it with "
                        "`wait_for: accepted` before messaging)")
        target = first_connect_step(ctx.seq)
        if target is None:
            return Fail(f"NOT_CONNECTED: {err.message} (the sequence has no connect step to go back to)")
        return Goto(target)
    if kind is ErrorKind.NOT_FOUND and getattr(step, "action", None) == "withdraw":
        f["invite_pending"] = False
        return follow(ctx, step.id, step.then)
    if kind is ErrorKind.AUTH_EXPIRED:
        _retry_under_new_key(ctx, act)
        return PauseSender("auth expired")
    if kind is ErrorKind.API_KEY_REJECTED:  # configuration, not the LinkedIn session: fix the key, then resume
        _retry_under_new_key(ctx, act)
        return PauseSender(API_KEY_REJECTED)
    if kind in (ErrorKind.RATE_LIMITED, ErrorKind.TRANSIENT):
        # `retries` counts this step's failures (the backoff's exponent) and `retry_seconds` the
        # backoff spent on them: the budget is time spent waiting to retry, so a lead that also
        # waits for its paced slot or the window (days, maybe) is not failed by a single error.
        # `attempt` only makes the next idempotency key unique (other reactions raise it too).
        retries = int(f.get("retries", 0)) + 1
        f["retries"] = retries
        spent = dt.timedelta(seconds=float(f.get("retry_seconds", 0)))
        ctx.enr.attempt += 1
        until = ctx.now + backoff(ctx.rt, retries, key=f"{ctx.enr.id}:{step.id}")
        if err.retry_at is not None:
            until = max(until, err.retry_at)
        if spent + (until - ctx.now) > ctx.rt.retry_budget:
            gave_up = (f"gave up after {retries} {'attempt' if retries == 1 else 'attempts'} and {_hours(spent)} "
                       f"of backoff; the retry budget is {_hours(ctx.rt.retry_budget)}")
            if act is not None and kind is ErrorKind.TRANSIENT:
                from .actions import settle_unknown

                return settle_unknown(ctx, step, act, err, gave_up)
            return Fail(f"{kind.value}: {err.message} ({gave_up})")
        f["retry_seconds"] = (spent + (until - ctx.now)).total_seconds()
        return Sleep(until)
    return Fail(f"{kind.value}: {err.message}")


def _hours(span: dt.timedelta) -> str:
    minutes = span.total_seconds() / 60
    return f"{round(minutes)} min" if minutes < 60 else f"{round(minutes / 60, 1):g} h"


def _retry_under_new_key(ctx: Ctx, act: Action | None) -> None:
    """The refused action's outbox row is closed, and its key is taken: the retry of the same step
    needs an idempotency key of its own (the key ends with the attempt)."""
    if act is not None:
        ctx.enr.attempt += 1


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
