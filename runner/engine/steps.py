"""What each kind of step does to one lead, and how the result is committed.

`advance(runtime, enrollment, now)` runs a lead's steps until it has to wait. Each step handler
(`HANDLERS`, keyed by step kind) returns one outcome (`runner.engine.flow`) — `Goto`, `Sleep`, `Finish`,
`Fail`, `Pause` or `PauseSender` — and `_commit` writes it in one transaction together with whatever the step recorded
(the outbox row, facts, usage). So every change to a lead is committed before the next external call.

Actions follow the outbox discipline: checks first (exits, sync-before-send, already connected,
window and limits), then the action is recorded `in_flight` and committed with its limit charge, then
the provider is called, then the result is committed. An action found in flight later (a crash, or a
timeout that may or may not have reached LinkedIn) is reconciled with `find_action` before anything
is retried: the idempotency key is `enrollment:step:entry:attempt`.
"""
from __future__ import annotations

import datetime as dt
import functools
import logging
import re
from collections.abc import Callable
from typing import Any

from runner import logfields
from runner.engine import limits
from runner.engine.actions import on_provider_error, perform, reconcile
from runner.engine.flow import (
    Advanced,
    Ctx,
    Fail,
    Finish,
    Goto,
    Interrupted,
    Outcome,
    Pause,
    PauseSender,
    Sleep,
    Stopping,
    Woken,
    fact_values,
    follow,
    refresh_conversation,
    refresh_relationship,
    release_slot,
)
from runner.engine.runtime import Runtime, SenderRuntime
from runner.language import calendar as cal
from runner.language import templates
from runner.language.jinja import compile_condition, environment, expression_names
from runner.language.model import ActionStep, BranchStep, Condition, EndStep, Sequence, WaitForStep, WaitStep
from runner.language.urls import redact_secrets
from runner.providers.base import ProviderError
from runner.store import Enrollment, enrollments, senders
from runner.store.enrollment_writes import save_enrollment
from runner.store.leases import release_claims
from runner.store.rows import insert_transition
from runner.store.sender_calls import end_calls_of_enrollment
from runner.store.transactions import writing

log = logging.getLogger(__name__)

#: Facts that only the provider can tell; a branch that reads them refreshes them first.
RELATIONSHIP_FACTS = frozenset({"connected", "invite_pending", "accepted"})
CONVERSATION_FACTS = frozenset({"conversation_exists", "replied", "lead_messaged_first", "days_since_last_message"})


# --- the loop for one lead ------------------------------------------------------------------------

def _log_ids(enr: Enrollment, sender: Any) -> dict[str, Any]:
    return logfields.ids(lead=enr.lead.key, enrollment=enr.id, sender=sender.name, step=enr.step_id)


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
        with writing(immediate=True) as txn:
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
        _end_calls(rt, enr)
        release_claims([enr.id], rt.owner, now)  # due at once: its next run applies the events first
        log.info("lead %s: events arrived before its next call; it plans again", enr.lead.key,
                 extra=_log_ids(enr, sender))
    except Interrupted as exc:
        _end_calls(rt, enr)  # the rollback took the end of its call with it; the action is reconciled on resume
        log.info("lead %s: stopped, %s (paused from elsewhere)", enr.lead.key, exc, extra=_log_ids(enr, sender))
        result.final = "interrupted"
    except Stopping:
        _end_calls(rt, enr)  # no call was made: it stopped right before
        log.info("lead %s: the run is stopping; the lead continues at step %s next time", enr.lead.key, enr.step_id,
                 extra=_log_ids(enr, sender))
        result.final = STOPPED
    return result


#: `Advanced.final` of a lead left alone because the run is stopping
STOPPED = "stopped"


def _end_calls(rt: Runtime, enr: Enrollment) -> None:
    """A lead's run ended early (rolled back to its last commit): no call of its sender is in flight
    for it any more, whatever the rollback kept."""
    if not rt.calls_in_process:
        with writing():
            end_calls_of_enrollment(enr.id, rt.owner)


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
    ctx.write_pending()
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
        release_slot(ctx)
        enr.state, enr.paused_reason, enr.due_at, enr.lease_owner = "paused", outcome.reason, now, None
    elif isinstance(outcome, PauseSender):
        release_slot(ctx)
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
    release_slot(ctx)
    ctx.enr.state, ctx.enr.outcome = state, outcome
    ctx.enr.finished_at, ctx.enr.due_at, ctx.enr.lease_owner = ctx.now, None, None


def pause_sender(sender_id: int, reason: str, now: dt.datetime, *, committing: int | None = None) -> None:
    """Pause a sender and every running enrollment it owns (AUTH_EXPIRED, or `seqrun pause --sender`).

    `committing` is the enrollment whose step is being committed: its own slot is handled there.
    """
    with writing():
        senders.pause_sender(sender_id, reason)
        release_slots(enrollments.active_ids_of("sender", sender_id, but=committing))
        enrollments.pause_active_of_sender(sender_id, reason, now)


def release_slots(enrollment_ids: list[int]) -> None:
    """Leads being paused give back the pacing slots they sleep for, and plan again when resumed.

    A kept slot would come due while the lead is paused, and every lead whose slot passed during the
    pause would act at the moment of the resume, all at once.
    """
    for enrollment_id, sequence, sender_id, facts in enrollments.slot_holders(enrollment_ids):
        slot = facts.pop("slot", None)
        if slot and sender_id is not None:
            limits.release(sequence, sender_id, slot["action"], slot["day"], slot.get("at"))
            enrollments.set_facts(enrollment_id, facts)


# --- exits and conditions -------------------------------------------------------------------------

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


def evaluate(ctx: Ctx, condition: Condition, values: dict[str, Any] | None = None) -> bool:
    """Whether `condition` holds for the lead; `values` is its `_condition_context` when already built."""
    values = _condition_context(ctx) if values is None else values
    key = _memo_key(condition.source, values)
    if key is not None and (known := _RESULTS.get(key)) is not None:
        return known
    try:
        result = bool(_compiled(condition.source)(**values))
    except Exception as exc:  # noqa: BLE001 - a condition that fails for this lead's data
        raise templates.TemplateRenderError(ctx.seq.path, condition.pos.line, f"condition {condition.source!r}: {exc}") from None
    if key is not None:
        if len(_RESULTS) >= _RESULTS_MAX:
            _RESULTS.clear()
        _RESULTS[key] = result
    return result


#: Results of conditions by the values they read: most leads of a campaign read the same few facts
#: (a fresh lead: not connected, no conversation), and building Jinja's context per call costs more
#: than everything else a branch does. Only for conditions that read nothing but plain values.
_RESULTS: dict[tuple[Any, ...], bool] = {}
_RESULTS_MAX = 65536
_PLAIN = (bool, int, float, str, type(None))


def _memo_key(source: str, values: dict[str, Any]) -> tuple[Any, ...] | None:
    """(source, then type and value of every name it reads), or None when a name it reads is not a
    plain value of `values` (a mapping, a list, a global such as `lipsum`): evaluated every time."""
    names = _names_of(source)
    if names is None:
        return None
    key: list[Any] = [source]
    for name in names:
        if name not in values:
            return None
        value = values[name]
        if not isinstance(value, _PLAIN):
            return None
        key += (name, type(value), value)
    return tuple(key)


@functools.lru_cache(maxsize=4096)
def _names_of(source: str) -> tuple[str, ...] | None:
    """The names a condition reads from its context; None when it may call one of Jinja's globals
    (`lipsum` draws at random, and `expression_names` does not list globals)."""
    words = set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", source))
    if words & set(environment().globals):
        return None
    return tuple(sorted(expression_names(source)))


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
    values = _condition_context(ctx)  # the facts cannot change between the cases: built once
    for case in step.cases:
        if evaluate(ctx, case.when, values):
            return follow(ctx, step.id, case.target)
    if step.default is None:
        return Goto(ctx.seq.next_step_id(step.id))
    return follow(ctx, step.id, step.default)


#: id(step) -> (the step, the names its conditions read). Kept by identity, holding the step (its id
#: cannot be reused meanwhile): hashing a whole branch step for every lead cost more than the lookup.
_BRANCH_NAMES: dict[int, tuple[BranchStep, frozenset[str]]] = {}


def _branch_names(step: BranchStep) -> frozenset[str]:
    kept = _BRANCH_NAMES.get(id(step))
    if kept is not None and kept[0] is step:
        return kept[1]
    names: set[str] = set()
    for case in step.cases:
        names |= expression_names(case.when.source)
    if len(_BRANCH_NAMES) >= 1024:
        _BRANCH_NAMES.clear()
    _BRANCH_NAMES[id(step)] = (step, frozenset(names))
    return _BRANCH_NAMES[id(step)][1]


def run_end(ctx: Ctx, step: EndStep) -> Outcome:
    return Finish(step.outcome)


HANDLERS: dict[str, Callable[[Ctx, Any], Outcome]] = {
    "action": perform,
    "wait": run_wait,
    "wait_for": run_wait_for,
    "branch": run_branch,
    "end": run_end,
}


