"""Moving running leads to the current version of their sequence (`seqrun leads migrate`).

A lead runs the version it started on (`runner.versions`) until it is moved. A move needs to know
where each lead goes: a step whose id names the same step in both versions maps to itself; every
other step a lead stands on needs an explicit `OLD=NEW`. A move is refused (nothing changes) when
it would make a lead repeat an action its ledger already has: the step a performed action was in
(mapped, or the same step, or the step that does the same wherever an edit moved it) is reachable
from where the lead would go, or for invites and messages, any reachable invite, or any reachable
message with the template already sent. Leads with an
action in flight are refused too: `seqrun run` settles it first. Everything happens in one
IMMEDIATE transaction; a dry run plans the same and writes nothing.
"""
from __future__ import annotations

import datetime as dt
from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from runner.engine.steps import release_slots
from runner.language.diagnostics import Diagnostic, UserError, error
from runner.language.model import ActionStep, BranchStep, EndStep, Sequence, Target, WaitForStep
from runner.language.schemacheck import plural
from runner.store.transactions import writing
from runner.store.versions import RunningLead, move_enrollment, performed_actions, running_leads_not_on
from runner.versions import describe, does_the_same, is_positional, load_version, remember, same_step, shown


@dataclass(frozen=True)
class Move:
    lead: RunningLead
    step_id: str | None  # where the lead goes in the current version


@dataclass
class MigrationPlan:
    sequence: str
    moves: list[Move] = field(default_factory=list)

    def routes(self) -> list[tuple[str, str, int]]:
        """(from step, to step, leads), most leads first."""
        counts = Counter((m.lead.step_id or "-", m.step_id or "-") for m in self.moves)
        return [(a, b, n) for (a, b), n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]


def migrate_leads(seq: Sequence, maps: Mapping[str, str], now: dt.datetime, *, dry_run: bool = False) -> MigrationPlan:
    """Move the running leads of `seq` that are on earlier versions to `seq` (the current file).

    Raises UserError with a diagnostic per problem, and changes nothing, when any lead cannot move.
    """
    with writing(immediate=True) as txn:
        plan = plan_migration(seq, maps)
        if dry_run or not plan.moves:
            txn.rollback()
            return plan
        remember(seq, now)
        # A pacing slot was reserved for the step the lead is leaving: give it back, plan again there.
        release_slots([m.lead.enrollment_id for m in plan.moves])
        for m in plan.moves:
            if not _apply(seq, m, now):
                raise UserError(f"lead {m.lead.enrollment_id} changed while it was being moved; nothing was moved "
                                "(is another seqrun working on the database?)")
    return plan


def _apply(seq: Sequence, m: Move, now: dt.datetime) -> bool:
    facts: dict[str, Any] = {k: v for k, v in m.lead.facts.items() if k not in ("slot", "retries")}
    new_step = m.step_id != m.lead.step_id
    if new_step:
        facts["entry"] = int(facts.get("entry", 0)) + 1  # a fresh idempotency key for the new step
    return move_enrollment(m.lead.enrollment_id, expected_version=m.lead.version, version_hash=seq.source_hash,
                           step_id=m.step_id, new_step=new_step, facts=facts, now=now)


# --- planning -------------------------------------------------------------------------------------

def plan_migration(seq: Sequence, maps: Mapping[str, str]) -> MigrationPlan:
    leads = running_leads_not_on(seq.name, seq.source_hash)
    if not leads:
        return MigrationPlan(seq.name)  # nothing to move: a map, if any, has nothing to say
    olds = {v: load_version(v) for v in {lead.version for lead in leads}}
    file = shown(seq.path)
    diags = _check_maps(seq, file, maps, olds)
    if diags:
        raise UserError("nothing was moved", diags)
    ledger = performed_actions([lead.enrollment_id for lead in leads])
    plan = MigrationPlan(seq.name)
    unmapped: Counter[tuple[str, str | None]] = Counter()
    in_flight: Counter[str] = Counter()
    repeats: Counter[tuple[str, str, str, str]] = Counter()
    for lead in leads:
        old = olds[lead.version]
        mapping = _Mapping(seq, old, maps)
        if lead.facts.get("inflight") or any(status == "in_flight" for *_, status in ledger[lead.enrollment_id]):
            in_flight[lead.step_id or "-"] += 1
            continue
        if lead.step_id is None:
            plan.moves.append(Move(lead, None))
            continue
        target = mapping.get(lead.step_id)
        if target is None:
            unmapped[(lead.step_id, describe(old.step(lead.step_id)) if old and lead.step_id in old.index else None)] += 1
            continue
        repeat = _first_repeat(seq, mapping, target, ledger[lead.enrollment_id])
        if repeat is not None:
            repeats[(target, lead.step_id, *repeat)] += 1
            continue
        plan.moves.append(Move(lead, target))
    diags = _unmapped(seq, file, unmapped) + _in_flight(seq, file, in_flight) + _repeats(seq, file, repeats)
    if diags:
        raise UserError(f"nothing was moved; {plural(len(leads), 'lead')} of sequence {seq.name} stay on their "
                        "version", diags)
    return plan


class _Mapping:
    """Where a step of an earlier version goes in the current one: `--map` first, else the step with
    the same id when it is the same step (without the earlier version's text, when it is not
    stored: an id the author wrote, never a positional one)."""

    def __init__(self, seq: Sequence, old: Sequence | None, maps: Mapping[str, str]) -> None:
        self.seq, self.old, self.maps = seq, old, maps

    def get(self, step_id: str) -> str | None:
        if step_id in self.maps:
            return self.maps[step_id]
        if self.old is not None:
            return step_id if same_step(self.old, self.seq, step_id) else None
        return step_id if step_id in self.seq.index and not is_positional(step_id) else None


def _first_repeat(seq: Sequence, mapping: _Mapping, target: str,
                  ledger: list[tuple[str, str, str | None, str]]) -> tuple[str, str] | None:
    """The first action of the lead's ledger that it would meet again from `target`: (what, where)."""
    reach = reachable(seq, target)
    for step_id, recorded, template, _ in ledger:
        if recorded == "tag":
            continue  # tagging twice changes nothing
        what = f"{recorded} {template}" if template else recorded
        action = "message" if recorded == "inmail" else recorded  # the ledger names an InMail apart
        same = mapping.get(step_id)
        if same in reach and isinstance(candidate := seq.step(same), ActionStep) and candidate.action == action:
            return what, same
        if action not in ("connect", "message"):  # those are matched more widely below
            for sid in _counterparts(seq, mapping.old, step_id, action):
                if sid in reach:
                    return what, sid
        for sid in (s.id for s in seq.steps if s.id in reach):
            step = seq.step(sid)
            if not isinstance(step, ActionStep) or step.action != action or action not in ("connect", "message"):
                continue
            if action == "connect" or template in _templates_of(step):
                return what, sid
    return None


def _counterparts(seq: Sequence, old: Sequence | None, step_id: str, action: str) -> list[str]:
    """The steps of `seq` that may be the step of `old` where a lead performed `action`, whatever
    their ids now (a positional id moves with an insert; the map says nothing of steps no lead
    stands on). Steps that do the same are matched in order, the k-th with the k-th; when their
    number changed, or the lead's ledger does not fit `old` (it was moved before, or `old` is not
    stored), every step of `seq` with the same action may be it."""
    same_kind = [s.id for s in seq.steps if isinstance(s, ActionStep) and s.action == action]
    if old is None or step_id not in old.index:
        return same_kind
    done = old.step(step_id)
    if not isinstance(done, ActionStep) or done.action != action:
        return same_kind
    before = [s.id for s in old.steps if does_the_same(s, done)]
    now = [s.id for s in seq.steps if does_the_same(s, done)]
    if len(before) != len(now):
        return now
    return [now[before.index(step_id)]]


def _templates_of(step: ActionStep) -> set[str]:
    refs = list(step.template.all()) if step.template else []
    for variant in step.variants:
        refs += variant.template.all()
    return {r.name for r in refs}


def reachable(seq: Sequence, start: str) -> set[str]:
    """Every step a lead at `start` may still enter, `start` included."""
    seen: set[str] = set()
    todo = [start]
    while todo:
        sid = todo.pop()
        if sid in seen or sid not in seq.index:
            continue
        seen.add(sid)
        todo += [t for t in _successors(seq, sid) if t is not None]
    return seen


def _successors(seq: Sequence, sid: str) -> list[str | None]:
    step = seq.step(sid)
    if isinstance(step, EndStep):
        return []

    def go(target: Target | None) -> str | None:
        if target is None:
            return seq.next_step_id(sid)
        return target.goto  # None for an end

    if isinstance(step, BranchStep):
        return [go(c.target) for c in step.cases] + [go(step.default)]
    out = [go(step.then)]
    if isinstance(step, WaitForStep):
        out.append(go(step.on_timeout))
    return out


# --- messages -------------------------------------------------------------------------------------

def _check_maps(seq: Sequence, file: str, maps: Mapping[str, str],
                olds: Mapping[str, Sequence | None]) -> list[Diagnostic]:
    at = (file, seq.pos.line, seq.pos.column)
    known = set().union(*(o.index for o in olds.values() if o is not None)) if olds else set()
    diags = []
    for old_id, new_id in maps.items():
        if new_id not in seq.index:
            diags.append(error(*at, f'--map {old_id}={new_id}: this file has no step "{new_id}"'))
        if old_id not in known and all(o is not None for o in olds.values()):
            diags.append(error(*at, f'--map {old_id}={new_id}: no earlier version of sequence {seq.name} that '
                                    f'leads run has a step "{old_id}"'))
    return diags


def _at_step(seq: Sequence, file: str, step_id: str) -> tuple[str, int, int, str]:
    """Where a message about `step_id` points: the step in this file, else the sequence's name."""
    if step_id in seq.index:
        pos = seq.step(step_id).pos
        return file, pos.line, pos.column, f"steps[id={step_id}]: "
    return file, seq.pos.line, seq.pos.column, ""


def _unmapped(seq: Sequence, file: str, groups: Counter[tuple[str, str | None]]) -> list[Diagnostic]:
    diags = []
    for (step_id, was), count in sorted(groups.items()):
        at_file, line, column, prefix = _at_step(seq, file, step_id)
        stand = f"{plural(count, 'lead')} {'stands' if count == 1 else 'stand'} at"
        theirs = f"{was} in their version" if was is not None else "a step of their version"
        if step_id in seq.index:
            problem = f"{stand} {step_id}, which is {theirs} and {describe(seq.step(step_id))} here"
        else:
            problem = f"{stand} step {step_id} ({theirs}), which this file does not have"
        diags.append(error(at_file, line, column, f"{prefix}{problem}: say where they go with --map {step_id}=STEP",
                           step_id if prefix else None))
    return diags


def _in_flight(seq: Sequence, file: str, groups: Counter[str]) -> list[Diagnostic]:
    return [error(file, seq.pos.line, seq.pos.column,
                  f"{plural(count, 'lead')} at step {step_id} {'has' if count == 1 else 'have'} an action in flight: "
                  f"run `seqrun run --once` to settle it, then move {'it' if count == 1 else 'them'}")
            for step_id, count in sorted(groups.items())]


def _repeats(seq: Sequence, file: str, groups: Counter[tuple[str, str, str, str]]) -> list[Diagnostic]:
    diags = []
    by_target: dict[str, list[str]] = defaultdict(list)
    for (target, origin, what, where), count in sorted(groups.items()):
        at = "" if where == target else f" at step {where}"
        by_target[target].append(f"{plural(count, 'lead')} from {origin} would repeat {what}{at}, which "
                                  f"{'it' if count == 1 else 'they'} already had")
    for target, parts in by_target.items():
        at_file, line, column, prefix = _at_step(seq, file, target)
        diags.append(error(at_file, line, column, f"{prefix}moving leads here is refused: {'; '.join(parts)}", target))
    return diags
