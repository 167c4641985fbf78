"""Performing one action step for one lead, with the outbox discipline.

Order of business for a LinkedIn action (visit, connect, message, withdraw):
1. reconcile an action of this step left in flight (crash or uncertain timeout) with `find_action`;
2. free pre-checks that cost no limit: already connected / invite pending (connect), no pending
   invite (withdraw), sync-before-send (message: a reply seen means the lead exits as replied, and
   nothing is sent);
3. the calendar window in the lead's zone and the sender's daily limits and pacing (`limits.plan`):
   outside them the lead sleeps until its slot;
4. render the text (failures end the lead with the template's file and line);
5. record the action `in_flight`, charge the limit and take the sender's one call
   (`store.sender_calls`) in one transaction, and commit; a sender with a call in flight in any
   runner makes the lead wait `SENDER_BUSY_WAIT` (not an attempt);
6. call the provider; commit the result (done, or the error's reaction, `on_provider_error`) with
   the end of the sender's call.

`tag` touches only our store; `notify` POSTs to the user's URL through the runtime's notifier, with
the same record-before-perform discipline so that a crash does not post twice without a trace.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from typing import Any

from runner import logfields
from runner.engine import limits, presence
from runner.engine.flow import (
    API_KEY_REJECTED,
    Ctx,
    Fail,
    Finish,
    Goto,
    Outcome,
    Pause,
    PauseSender,
    Sleep,
    Stopping,
    Woken,
    backoff,
    close_action,
    fact_values,
    follow,
    iso,
    learn_ids,
    refresh_conversation,
    refresh_relationship,
    release_slot,
)
from runner.language import calendar as cal
from runner.language import templates
from runner.language.model import ActionStep, Sequence
from runner.providers.base import ActionResult, ErrorKind, ProviderError
from runner.store import Action
from runner.store.ledger import action_by_key
from runner.store.rows import insert_action, set_lead_json
from runner.store.sender_calls import caller_of, end_call, start_call
from runner.store.sender_state import hold_action
from runner.store.senders import start_warmup
from runner.store.transactions import writing

log = logging.getLogger(__name__)

#: How long a lead waits when its sender has a call in flight (in this runner or another): at most
#: one action per LinkedIn account at any moment, whatever the number of runners.
SENDER_BUSY_WAIT = dt.timedelta(seconds=5)


class _Busy:
    """`_record`'s answer when the sender has a call in flight elsewhere."""


BUSY = _Busy()


def action_name(step: ActionStep) -> str:
    return "inmail" if step.action == "message" and step.inmail else step.action


def idempotency_key(ctx: Ctx, step: ActionStep) -> str:
    return f"{ctx.enr.id}:{step.id}:{int(ctx.facts.get('entry', 0))}:{ctx.enr.attempt}"


def perform(ctx: Ctx, step: ActionStep) -> Outcome:
    """Run an action step (an action left in flight was reconciled first, in `steps._step_once`)."""
    if step.action in ("tag", "notify"):
        if ctx.blocked_now():  # read fresh, as before every action: a block may have come in since
            return Finish("blocked")
        if step.in_window and not cal.is_open(ctx.seq.calendar, ctx.zone, ctx.now):
            return Sleep(cal.next_open(ctx.seq.calendar, ctx.zone, ctx.now))
        return _tag(ctx, step) if step.action == "tag" else _notify(ctx, step)
    skipped = _precheck(ctx, step)
    if skipped is not None:
        return skipped
    name = action_name(step)
    hold = ctx.rt.provider_holds.get((ctx.sender.id, name))
    if hold is not None and ctx.now < hold:  # the provider said no for this sender until then
        return Sleep(hold + dt.timedelta(seconds=60 * limits.unit(ctx.lead.key, name, hold)))
    if _sender_busy(ctx):  # before planning: a booking kept is not planned again
        return Sleep(ctx.now + SENDER_BUSY_WAIT)
    held = ctx.facts.pop("slot", None)
    if _first_after_acceptance(ctx, step):
        if held:
            limits.release(ctx.seq.name, ctx.sender.id, held["action"], held["day"], held.get("at"))
        slot = limits.plan_first(ctx.seq, ctx.sender.caps, name, calendar=ctx.seq.calendar, zone=ctx.zone,
                                 lead_key=ctx.lead.key, now=ctx.now, enrollment_id=ctx.enr.id)
    else:
        slot = limits.plan(ctx.seq, ctx.sender.caps, name, calendar=ctx.seq.calendar, zone=ctx.zone,
                           lead_key=ctx.lead.key, held=held, now=ctx.now, enrollment_id=ctx.enr.id)
    if slot.at is not None:
        if slot.hold is not None:
            ctx.facts["slot"] = slot.hold
        return Sleep(slot.at)
    text, subject, template, variant = _render(ctx, step)
    if ctx.blocked_now():  # read fresh: a block may have come in since the lead woke up
        return Finish("blocked")
    act = _record(ctx, step, name, content=text, subject=subject, template=template, variant=variant)
    if act is BUSY:
        # Another runner took the sender's call since the check above (its booking was used by
        # `plan`: the lead plans again when it wakes). Not an attempt: nothing was tried.
        return Sleep(ctx.now + SENDER_BUSY_WAIT)
    if act is None:  # the cap filled up between plan and charge (another runner): plan again
        return perform(ctx, step)
    assert isinstance(act, Action)
    try:
        with ctx.outside():  # the outbox row, the charge and the sender's call are committed before the call
            result = _call(ctx, step, text=text, subject=subject)
    except ProviderError as err:
        _call_ended(ctx, act)
        return on_provider_error(ctx, step, err, act)
    _call_ended(ctx, act)
    return _succeeded(ctx, step, act, result)


def _sender_busy(ctx: Ctx) -> bool:
    """Whether a call of the lead's sender is in flight (the simulator runs one call at a time in one
    process, and keeps no call rows). A call whose runner is gone is not: that runner's leads and
    calls are taken back here and now, not at the next pass (and its lead, due at once, asks the
    provider whether the action happened before anything is retried)."""
    if ctx.rt.calls_in_process:
        return False
    caller = caller_of(ctx.sender.id)
    if caller is None:
        return False
    if caller != ctx.rt.owner and presence.gone_now(caller, ctx.now, me=ctx.rt.owner):
        presence.take_back(ctx.now, me=ctx.rt.owner)
        return caller_of(ctx.sender.id) is not None
    return True


def _call_ended(ctx: Ctx, act: Action) -> None:
    """The sender's call is over: its row goes in the commit that records the result."""
    if not ctx.rt.calls_in_process:
        sender_id, key = ctx.sender.id, act.key
        ctx.pending.append(lambda: end_call(sender_id, key))


# --- reconciliation -------------------------------------------------------------------------------

def _first_after_acceptance(ctx: Ctx, step: ActionStep) -> bool:
    """The thank-you right after a lead accepted: worth sending while the acceptance is fresh, so it
    goes ahead of follow-ups and cold messages waiting in the sender's queue."""
    return step.action == "message" and bool(ctx.facts.get("accepted_at")) and not ctx.facts.get("messages_sent")


def reconcile(ctx: Ctx, step: ActionStep) -> Outcome | None:
    """Settle an action of this step left in flight (a crash, or a timeout that may or may not have
    reached LinkedIn): done if the provider says it happened, else failed and refunded. Returns the
    step's outcome when it had happened, None when the step still has to run."""
    key = ctx.facts.get("inflight")
    if not key:
        return None
    act = action_by_key(key)
    if act is None or act.status != "in_flight":
        ctx.facts.pop("inflight", None)
        return None
    if act.action in ("tag",):
        return _succeeded(ctx, step, act, ActionResult(performed_at=ctx.now))
    if act.action == "notify":
        # A POST cannot be asked about. It goes again under the same Idempotency-Key, so the
        # receiver can drop it if the first one arrived.
        log.info("lead %s step %s: notify %s was interrupted; posting it again with the same key",
                 ctx.lead.key, step.id, key, extra=logfields.of_ctx(ctx, step.id))
        return _notify(ctx, step, act)
    # Whoever made the call is gone or gave up on it: the sender's call row (if any is left) ends
    # with the reconciliation's result.
    _call_ended(ctx, act)
    with ctx.outside():
        result = ctx.sender.provider.find_action(ctx.sender.account, ctx.ref, action=act.action, key=key,
                                                 since=act.started_at - dt.timedelta(minutes=1))
    if result is not None:
        log.info("lead %s step %s: action %s had happened (reconciled)", ctx.lead.key, step.id, key,
                 extra=logfields.of_ctx(ctx, step.id))
        return _succeeded(ctx, step, act, result)
    log.info("lead %s step %s: action %s had not happened (reconciled); trying again", ctx.lead.key, step.id, key,
             extra=logfields.of_ctx(ctx, step.id))
    close_action(ctx, act, "failed", error=ProviderError(ErrorKind.TRANSIENT, "not performed (reconciled after an interruption)"))
    if act.attempt == ctx.enr.attempt:
        # A crash: nothing counted this attempt yet. After a TRANSIENT error the error's reaction
        # already did, and counting it twice would halve the attempts `max_attempts` allows.
        ctx.enr.attempt += 1
    _flush(ctx)
    return None


def _flush(ctx: Ctx) -> None:
    """Write queued writes now (the step goes on; the next external call commits them)."""
    ctx.write_pending()
    ctx.save()


def settle_unknown(ctx: Ctx, step: ActionStep, act: Action, err: ProviderError, gave_up: str) -> Outcome:
    """Giving up after transient errors on an action that may have reached LinkedIn: ask once
    whether it happened; refund the charge only when the provider says it did not. (A charge kept
    marks the action's outcome as unknown: `seqrun leads retry` asks the provider again first.)"""
    try:
        with ctx.outside():
            result = ctx.sender.provider.find_action(ctx.sender.account, ctx.ref, action=act.action, key=act.key,
                                                     since=act.started_at - dt.timedelta(minutes=1))
    except ProviderError as again:
        close_action(ctx, act, "failed", error=err, keep_charge=True,
                     note=f"outcome unknown: the provider could not say whether it happened ({again.message})")
        return Fail(f"{err.kind.value}: {err.message} ({gave_up}; whether the last attempt reached LinkedIn is unknown)")
    if result is not None:
        return _succeeded(ctx, step, act, result)
    close_action(ctx, act, "failed", error=err, note=gave_up)
    return Fail(f"{err.kind.value}: {err.message} ({gave_up})")


# --- the audit trail of an action -----------------------------------------------------------------

def audit_fields(ctx: Ctx, step: ActionStep) -> dict[str, Any]:
    """What the audit log keeps with an action, as known when it is recorded: the zones it was judged
    in (so that exports never depend on the sequence files), the lead's relationship (NULL when this
    step did not check it) and, for messages, whether the message starts a conversation."""
    f = ctx.facts
    relationship = None
    if step.action in ("visit", "connect", "message", "withdraw") and "connected" in f:
        relationship = "connected" if f["connected"] else "invite_pending" if f.get("invite_pending") else "not_connected"
    conversation = None
    if step.action == "message":
        conversation = "existing" if f.get("conversation_id") or f.get("conversation_exists") else "started"
    return {"lead_timezone": ctx.zone.key, "sender_timezone": ctx.sender.caps.zone.key,
            "relationship": relationship, "conversation": conversation}


# --- checks ---------------------------------------------------------------------------------------

def _skip(ctx: Ctx, step: ActionStep, reason: str) -> Outcome:
    """Record a skipped action (visible in the audit log, never charged) and move on."""
    release_slot(ctx)
    key = idempotency_key(ctx, step)
    ctx.pending.append(lambda: insert_action(
        key=key, enrollment=ctx.enr.id, lead=ctx.lead.id, sender=ctx.sender.id, sequence=ctx.seq.name,
        step_id=step.id, action=action_name(step), attempt=ctx.enr.attempt, status="skipped",
        planned_at=ctx.now, started_at=ctx.now, error_message=reason, **audit_fields(ctx, step)))
    return follow(ctx, step.id, step.then)


def _precheck(ctx: Ctx, step: ActionStep) -> Outcome | None:
    f = ctx.facts
    if step.action == "connect":
        refresh_relationship(ctx)
        if f.get("connected"):
            f["accepted"] = True
            return _skip(ctx, step, "already connected")
        if f.get("invite_pending"):
            return _skip(ctx, step, "invitation already pending")
    elif step.action == "withdraw":
        refresh_relationship(ctx)
        if not f.get("invite_pending"):
            return _skip(ctx, step, "no pending invitation to withdraw")
        if step.invite == "ours" and not f.get("invited"):
            # `invited` is set only when this sequence's connect step sent the invite: one sent by
            # hand or by another tool is the user's, and withdrawing it is their explicit choice.
            return _skip(ctx, step, "the pending invitation was not sent by this sequence "
                                    "(`invite: any` withdraws it anyway)")
    elif step.action == "message":
        refresh_conversation(ctx)
        if f.get("replied"):
            return Finish("replied")  # never message someone who has just replied
        if not step.inmail and not f.get("connected"):
            refresh_relationship(ctx)
    return None


# --- rendering and the call -----------------------------------------------------------------------

def _context(ctx: Ctx) -> dict[str, Any]:
    sender = {"name": ctx.sender.name, "full_name": ctx.sender.full_name or ctx.sender.name}
    return templates.build_context(ctx.seq, dict(ctx.lead.fields or {}) | {"linkedin_profile_url": ctx.lead.profile_url},
                                   fact_values(ctx), sender)


def _render(ctx: Ctx, step: ActionStep) -> tuple[str | None, str | None, str | None, str | None]:
    if step.action == "connect":
        note = templates.render_note(ctx.seq, step, _context(ctx))
        if note is None:  # an invite without a note
            return None, None, None, None
        return note.text, None, note.template, None
    if step.action == "message":
        rendered = templates.render_message(ctx.seq, step, _context(ctx),
                                            invited_with_note=bool(ctx.facts.get("invited_with_note")),
                                            lead_key=ctx.lead.key)
        if rendered.variant:
            ctx.facts.setdefault("variants", {})[step.id] = rendered.variant
        return rendered.text, rendered.subject, rendered.template, rendered.variant
    return None, None, None, None


def _record(ctx: Ctx, step: ActionStep, name: str, **content: Any) -> Action | _Busy | None:
    """Write the outbox row, the limit charge and the sender's call, and commit, before the provider
    is called. `BUSY` (nothing written but the step's queued writes) when the sender has a call in
    flight; None when a cap or the spacing leaves no room."""
    ctx.stop_if_asked()  # a run that is stopping records no new action
    key = idempotency_key(ctx, step)
    with writing():
        ctx.write_pending()
        calling = not ctx.rt.calls_in_process
        if calling and not start_call(ctx.sender.id, ctx.enr.id, key, ctx.rt.owner, ctx.now):
            return BUSY
        if not limits.try_charge(ctx.seq, ctx.sender.caps, name, ctx.now):
            if calling:
                end_call(ctx.sender.id, key)
            return None
        act = insert_action(
            key=key, enrollment=ctx.enr.id, lead=ctx.lead.id, sender=ctx.sender.id, sequence=ctx.seq.name,
            step_id=step.id, action=name, attempt=ctx.enr.attempt, status="in_flight", charged=True,
            planned_at=ctx.now, started_at=ctx.now, **content, **audit_fields(ctx, step))
        ctx.facts["inflight"] = key  # saved and committed with the row by the `outside()` around the call
        ctx.dirty = True
    return act


def _call(ctx: Ctx, step: ActionStep, *, text: str | None, subject: str | None) -> ActionResult:
    provider, account, ref = ctx.sender.provider, ctx.sender.account, ctx.ref
    key = idempotency_key(ctx, step)
    if step.action == "visit":
        return provider.visit(account, ref, key=key)
    if step.action == "connect":
        return provider.connect(account, ref, note=text, key=key)
    if step.action == "message":
        return provider.send_message(account, ref, text=text or "", conversation_id=ctx.facts.get("conversation_id"),
                                     subject=subject, inmail=step.inmail, key=key)
    if step.action == "withdraw":
        return provider.withdraw(account, ref, invitation_id=ctx.facts.get("invitation_id"), key=key)
    raise AssertionError(f"not a provider action: {step.action}")


def _succeeded(ctx: Ctx, step: ActionStep, act: Action, result: ActionResult) -> Outcome:
    close_action(ctx, act, "done", result=result)
    f = ctx.facts
    at = iso(result.performed_at)
    if step.action == "connect":
        f.update(invited=True, invited_with_note=step.note is not None, invited_at=at, invite_pending=True)
        if result.invitation_id:
            f["invitation_id"] = result.invitation_id
    elif step.action == "message":
        f["messages_sent"] = int(f.get("messages_sent", 0)) + 1
        f["last_message_at"] = at
        f.setdefault("first_message_at", at)
        if result.conversation_id:
            f["conversation_id"] = result.conversation_id
    elif step.action == "withdraw":
        f.update(invite_pending=False, withdrawn=True)
    elif step.action == "visit":
        f["visited"] = True
    learn_ids(ctx, result.provider_ids)
    if ctx.sender.caps.first_action_at is None and step.action != "tag":
        _start_warmup(ctx, result.performed_at)
    return follow(ctx, step.id, step.then)


def _start_warmup(ctx: Ctx, at: dt.datetime) -> None:
    ctx.sender.caps = dataclasses.replace(ctx.sender.caps, first_action_at=at)
    sender_id = ctx.sender.id
    ctx.pending.append(lambda: start_warmup(sender_id, at))


# --- the reaction to a provider's error -----------------------------------------------------------

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


# --- local actions --------------------------------------------------------------------------------

def _tag(ctx: Ctx, step: ActionStep) -> Outcome:
    tags = list(ctx.lead.tags or [])
    tags += [t for t in step.tags if t not in tags]
    ctx.lead.tags = tags
    key = idempotency_key(ctx, step)
    lead_id = ctx.lead.id
    audit = audit_fields(ctx, step)

    def write() -> None:
        set_lead_json(lead_id, "tags", tags)
        insert_action(key=key, enrollment=ctx.enr.id, lead=lead_id, sender=ctx.sender.id, sequence=ctx.seq.name,
                      step_id=step.id, action="tag", attempt=ctx.enr.attempt, status="done", planned_at=ctx.now,
                      started_at=ctx.now, performed_at=ctx.now, content=",".join(step.tags), **audit)

    ctx.pending.append(write)
    return follow(ctx, step.id, step.then)


def _notify(ctx: Ctx, step: ActionStep, act: Action | None = None) -> Outcome:
    """POST the lead to the step's URL: recorded first (`act`, whose key is the Idempotency-Key),
    then posted; `act` is given when a POST interrupted by a crash goes again under its key."""
    headers = {}
    for header, env in step.headers_from_env.items():
        value = ctx.rt.getenv(env)
        if value is None:
            # `seqrun run` refuses to start without them; this is a lead that reached the step in a
            # sequence that had no leads then. Paused, not failed: set the variable and resume it.
            return Pause(f"notify: environment variable {env} (for header {header}) is not set; "
                         "set it, restart seqrun run and resume the lead")
        headers[header] = value
    at = act.started_at if act is not None and act.started_at else ctx.now
    payload = {
        "sequence": ctx.seq.name, "step": step.id, "lead": {**(ctx.lead.fields or {}), "linkedin_profile_url": ctx.lead.profile_url},
        "tags": list(ctx.lead.tags or []), "sender": ctx.sender.name,
        "facts": {k: v for k, v in fact_values(ctx).items() if k != "tags"}, "at": iso(at),
    }
    if act is None:
        act = _record_local(ctx, step)
    headers["Idempotency-Key"] = act.key  # so that a CRM can drop a repeated POST
    try:
        with ctx.outside():  # recorded and committed before the POST
            ctx.rt.notifier(step.url or "", headers, payload)
    except (Stopping, Woken):  # not the CRM's failure: the lead stops short of the POST
        raise
    except Exception as exc:  # noqa: BLE001 - a CRM outage must not lose the lead
        ctx.enr.attempt += 1
        if ctx.enr.attempt > ctx.rt.max_attempts:
            close_action(ctx, act, "failed", error=ProviderError(ErrorKind.TRANSIENT, f"notify failed: {exc}"))
            return follow(ctx, step.id, step.then)
        close_action(ctx, act, "failed", error=ProviderError(ErrorKind.TRANSIENT, f"notify failed: {exc}"))
        return Sleep(ctx.now + backoff(ctx.rt, ctx.enr.attempt, key=f"{ctx.enr.id}:{step.id}"))
    close_action(ctx, act, "done", result=ActionResult(performed_at=ctx.now))
    return follow(ctx, step.id, step.then)


def _record_local(ctx: Ctx, step: ActionStep) -> Action:
    ctx.stop_if_asked()  # a run that is stopping records no new action
    key = idempotency_key(ctx, step)
    with writing():
        ctx.write_pending()
        act = insert_action(key=key, enrollment=ctx.enr.id, lead=ctx.lead.id, sender=ctx.sender.id,
                            sequence=ctx.seq.name, step_id=step.id, action=step.action, attempt=ctx.enr.attempt,
                            status="in_flight", planned_at=ctx.now, started_at=ctx.now, content=step.url,
                            **audit_fields(ctx, step))
        ctx.facts["inflight"] = key  # saved and committed with the row by the `outside()` around the call
        ctx.dirty = True
    return act


__all__ = ["SENDER_BUSY_WAIT", "perform", "action_name", "idempotency_key", "on_provider_error", "reconcile", "settle_unknown"]
