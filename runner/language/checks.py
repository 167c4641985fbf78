"""Semantic checks over a loaded sequence: what the schema cannot see.

Flow: duplicate step ids; `goto` / `on_timeout` / branch targets that name no step; loops with no
`wait` or `wait_for` in them (a lead would spin through them without end); steps nothing reaches
(warnings, with a specific word for steps stranded after an `end`).

Fitness: actions the sequence's `provider` cannot perform; limits above LinkedIn's documented daily
ceilings or at zero (warnings); `wait_for: replied` that the `replied` exit always pre-empts;
`withdraw` reachable with no `connect` before it.

Conditions: names that are neither facts nor `lead` / `sender` / `sequence`, and lead fields the
sequence does not declare.

Template files themselves are checked by `runner.language.templatelint`. Every function here takes the
model and returns diagnostics; none raises for a user mistake.
"""
from __future__ import annotations

import difflib
import functools
from collections import deque
from collections.abc import Iterator

import jinja2

from runner.language.diagnostics import Diagnostic, error, warning
from runner.language.jinja import attribute_uses, environment, expression_names
from runner.language.model import (
    CEILINGS,
    CONTEXT_NAMES,
    FACTS,
    ActionStep,
    BranchStep,
    Condition,
    EndStep,
    Sequence,
    Step,
    Target,
    WaitForStep,
    WaitStep,
)
from runner.language.templatelint import SENDER_FIELDS, SEQUENCE_FIELDS
from runner.providers import CAPABILITIES, why_not

_CAPABILITY_WORDS = {
    "visit": "visit profiles",
    "connect": "send connection invites",
    "message": "send messages",
    "inmail": "send InMail",
    "withdraw": "withdraw invites",
}


def check_sequence(seq: Sequence) -> list[Diagnostic]:
    """Every semantic check for one sequence, unsorted."""
    graph = _Graph(seq)
    unknown = list(_unknown_targets(seq, graph))
    # With a target that names no step the flow is not what the author meant: warnings about
    # reachability would only echo that error.
    flow_warnings = [] if unknown else [*_unreachable_steps(seq, graph), *_withdraw_without_connect(seq, graph)]
    return [
        *_duplicate_ids(seq),
        *unknown,
        *_spinning_loops(seq, graph),
        *flow_warnings,
        *_provider_cannot(seq),
        *_limit_warnings(seq),
        *_replied_wait_preempted(seq),
        *_condition_names(seq),
    ]


def check_project(seqs: list[Sequence]) -> list[Diagnostic]:
    """Checks across the sequences loaded together: names are unique in a project."""
    first: dict[str, Sequence] = {}
    diags: list[Diagnostic] = []
    for seq in seqs:
        if seq.name in first:
            diags.append(error(seq.pos.file, seq.pos.line, seq.pos.column,
                               f'name: sequence name "{seq.name}" is also used by {first[seq.name].path}'))
        else:
            first[seq.name] = seq
    return diags


# --- the step graph -------------------------------------------------------------------------------


class _Graph:
    """Steps as nodes (indices), with an edge for every way control can move on."""

    def __init__(self, seq: Sequence) -> None:
        self.steps = seq.steps
        self.index: dict[str, int] = {}
        for i, step in enumerate(seq.steps):
            self.index.setdefault(step.id, i)
        self.edges: list[list[tuple[int, Target | None]]] = [self._edges(i) for i in range(len(seq.steps))]

    def _edges(self, i: int) -> list[tuple[int, Target | None]]:
        """(successor, the target that leads there, or None for falling through)."""
        following = i + 1 if i + 1 < len(self.steps) else None
        out: list[tuple[int, Target | None]] = []
        for _, target in targets(self.steps[i], with_fallthrough=True):
            if target is None:
                if following is not None:
                    out.append((following, None))
            elif target.goto is not None and target.goto in self.index:
                out.append((self.index[target.goto], target))
        return out

    def successors(self, i: int) -> list[int]:
        return [j for j, _ in self.edges[i]]

    def reachable(self, start: int = 0, *, stop_at: frozenset[int] | set[int] = frozenset()) -> set[int]:
        """Steps reachable from `start`, not going on from the steps in `stop_at`."""
        if not self.steps:
            return set()
        seen, queue = {start}, deque([start])
        while queue:
            i = queue.popleft()
            if i in stop_at:
                continue
            for j in self.successors(i):
                if j not in seen:
                    seen.add(j)
                    queue.append(j)
        return seen


def targets(step: Step, *, with_fallthrough: bool = False) -> Iterator[tuple[str, Target | None]]:
    """(path below the step, target) for every way the step goes on; None means "the next step".

    Only with `with_fallthrough` are the implicit next-step moves included (as None targets).
    """
    if isinstance(step, EndStep):
        return
    if isinstance(step, BranchStep):
        case_items, default_item = _branch_items(step)
        for j, case in zip(case_items, step.cases, strict=True):
            yield f"branch[{j}].{'goto' if case.target.goto else 'end'}", case.target
        if step.default is not None or with_fallthrough:
            yield f"branch[{default_item}].default", step.default
        return
    if isinstance(step, WaitForStep) and (step.on_timeout is not None or with_fallthrough):
        yield "on_timeout", step.on_timeout
    if step.then is not None or with_fallthrough:
        yield ("goto" if step.then is None or step.then.goto else "end"), step.then


def _branch_items(step: BranchStep) -> tuple[list[int], int]:
    """The list index in the YAML of each case and of the default.

    The model keeps cases and default apart; a default written before some cases (an error the
    loader reports) shifts the indices of those cases by one.
    """
    if step.default_pos is None:
        return list(range(len(step.cases))), len(step.cases)
    default_at = (step.default_pos.line, step.default_pos.column)
    before = [(c.when.pos.line, c.when.pos.column) < default_at for c in step.cases]
    return [j if b else j + 1 for j, b in enumerate(before)], sum(before)


def _label(step: Step, below: str = "") -> str:
    return f"steps[id={step.id}]" + (f".{below}" if below else "")


def _did_you_mean(name: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(name, choices, n=1)
    return f'; did you mean "{close[0]}"?' if close else ""


# --- flow -----------------------------------------------------------------------------------------


def _duplicate_ids(seq: Sequence) -> Iterator[Diagnostic]:
    first: dict[str, Step] = {}
    for step in seq.steps:
        if step.id not in first:
            first[step.id] = step
            continue
        message = f'duplicate step id "{step.id}" (first used on line {first[step.id].pos.line})'
        if seq.steps.index(first[step.id]) == 0 and step.id == "start":
            message += '; a first step without an id is called "start"'
        yield error(step.pos.file, step.pos.line, step.pos.column, f"{_label(step)}: {message}", step.id)


def _unknown_targets(seq: Sequence, graph: _Graph) -> Iterator[Diagnostic]:
    explicit = [s.id for s in seq.steps if "+" not in s.id]
    for step in seq.steps:
        for below, target in targets(step):
            if target is None or target.goto is None or target.goto in graph.index or target.goto == "next":
                continue  # "next" outside a branch default is reported by the loader
            pos = target.pos or step.pos
            yield error(pos.file, pos.line, pos.column,
                        f'{_label(step, below)}: unknown step "{target.goto}"{_did_you_mean(target.goto, explicit)}',
                        step.id)


def _waits(step: Step) -> bool:
    return isinstance(step, (WaitStep, WaitForStep))


def _spinning_loops(seq: Sequence, graph: _Graph) -> Iterator[Diagnostic]:
    """Loops with no wait in them: a lead would run through them again and again at once."""
    instant = {i for i, step in enumerate(seq.steps) if not _waits(step)}
    reach = {i: _reach_within(graph, i, instant) for i in instant}
    reported: set[frozenset[int]] = set()
    for u in sorted(instant, reverse=True):  # the last step of a loop is the one that closes it
        for v, target in graph.edges[u]:
            if target is None or v > u or v not in instant or u not in reach[v]:
                continue
            loop = frozenset(i for i in reach[v] if v in reach[i] or i == v)
            if loop in reported:
                continue
            reported.add(loop)
            yield _loop_error(seq, graph, u, v, target, instant)


def _reach_within(graph: _Graph, start: int, allowed: set[int]) -> set[int]:
    """Steps reachable from `start` in one or more moves through `allowed` steps only."""
    seen: set[int] = set()
    queue = deque(j for j in graph.successors(start) if j in allowed)
    while queue:
        i = queue.popleft()
        if i in seen:
            continue
        seen.add(i)
        queue.extend(j for j in graph.successors(i) if j in allowed and j not in seen)
    return seen


def _loop_error(seq: Sequence, graph: _Graph, u: int, v: int, target: Target, allowed: set[int]) -> Diagnostic:
    step = seq.steps[u]
    below = next(b for b, t in targets(step) if t is target)
    path = " -> ".join(seq.steps[i].id for i in _shortest_path(graph, v, u, allowed))
    pos = target.pos or step.pos
    return error(pos.file, pos.line, pos.column,
                 f'{_label(step, below)}: jumps back to "{seq.steps[v].id}" with no wait or wait_for on the way, '
                 f"so a lead would loop forever ({path} -> {seq.steps[v].id}); add a wait to the loop", step.id)


def _shortest_path(graph: _Graph, start: int, goal: int, allowed: set[int]) -> list[int]:
    came_from: dict[int, int | None] = {start: None}
    queue = deque([start])
    while queue:
        i = queue.popleft()
        if i == goal:
            break
        for j in graph.successors(i):
            if j in allowed and j not in came_from:
                came_from[j] = i
                queue.append(j)
    path: list[int] = []
    node: int | None = goal
    while node is not None:
        path.append(node)
        node = came_from.get(node)
    return path[::-1]


def _unreachable_steps(seq: Sequence, graph: _Graph) -> Iterator[Diagnostic]:
    """One warning per run of unreachable steps: the rest of the run is unreachable because of it."""
    reached = graph.reachable()
    for i, step in enumerate(seq.steps):
        if i in reached:
            continue
        before = seq.steps[i - 1]
        if i - 1 not in reached and i in graph.successors(i - 1):
            continue
        message = "step is never reached"
        if _ends(before):
            if "+" in step.id:
                message += (": the step before it ends the sequence, and this step has no id "
                            "for a goto, on_timeout or branch to point at")
            else:
                message += ": the step before it ends the sequence, and no goto, on_timeout or branch points here"
        yield warning(step.pos.file, step.pos.line, step.pos.column, f"{_label(step)}: {message}", step.id)


def _ends(step: Step) -> bool:
    if isinstance(step, EndStep):
        return True
    then = getattr(step, "then", None)
    return isinstance(then, Target) and then.end is not None


def _withdraw_without_connect(seq: Sequence, graph: _Graph) -> Iterator[Diagnostic]:
    connects = {i for i, s in enumerate(seq.steps) if isinstance(s, ActionStep) and s.action == "connect"}
    before_any_connect = graph.reachable(stop_at=connects)
    for i in sorted(before_any_connect - connects):
        step = seq.steps[i]
        if isinstance(step, ActionStep) and step.action == "withdraw" and step.invite == "ours":
            yield warning(step.pos.file, step.pos.line, step.pos.column,
                          f"{_label(step)}: withdraw can be reached without a connect step before it, "
                          "so there may be no invite of this sequence to withdraw", step.id)


# --- fitness --------------------------------------------------------------------------------------


def _provider_cannot(seq: Sequence) -> Iterator[Diagnostic]:
    if seq.provider is None:
        return
    can = CAPABILITIES[seq.provider]
    for step in seq.steps:
        if isinstance(step, ActionStep) and step.limit_key is not None and step.limit_key not in can:
            reason = why_not(seq.provider, step.limit_key)
            yield error(step.pos.file, step.pos.line, step.pos.column,
                        f"{_label(step)}: the {seq.provider} provider cannot {_CAPABILITY_WORDS[step.limit_key]}"
                        + (f": {reason}" if reason else ""), step.id)
        elif isinstance(step, ActionStep) and step.action == "connect" and step.note is not None \
                and (reason := why_not(seq.provider, "note")):
            yield error(step.pos.file, step.pos.line, step.pos.column,
                        f"{_label(step)}.note: the {seq.provider} provider cannot send a note with the invitation: "
                        f"{reason}", step.id)


def _limit_warnings(seq: Sequence) -> Iterator[Diagnostic]:
    used = {s.limit_key for s in seq.steps if isinstance(s, ActionStep)}
    for action, limit in seq.limits.per_action.items():
        if limit.pos is None:
            continue
        where = (limit.pos.file, limit.pos.line, limit.pos.column)
        # A sequence does not know which accounts run it: compare with the lower, classic ceiling.
        classic = CEILINGS["classic"].get(action)
        navigator = CEILINGS["sales_navigator"].get(action)
        if classic is not None and limit.daily > classic:
            message = (f"limits.{action}: {limit.daily} per day is above LinkedIn's documented classic-account "
                       f"ceiling of {classic} per day")
            if navigator is not None and limit.daily > navigator:
                message += f" (and above the Sales Navigator ceiling of {navigator})"
            yield warning(*where, message)
        if limit.daily == 0 and action in used:
            yield warning(*where, f"limits.{action}: a daily limit of 0 means no {action} step ever runs; "
                                  "leads would wait there forever")


def _replied_wait_preempted(seq: Sequence) -> Iterator[Diagnostic]:
    if not any(e.name == "replied" for e in seq.exits):
        return
    for step in seq.steps:
        if isinstance(step, WaitForStep) and step.event == "replied":
            yield warning(step.pos.file, step.pos.line, step.pos.column,
                          f'{_label(step)}: this wait for "replied" never goes on when the lead replies: the '
                          '"replied" exit in exit_when ends the sequence first; only the timeout path is taken',
                          step.id)


# --- conditions -----------------------------------------------------------------------------------


def _conditions(seq: Sequence) -> Iterator[tuple[str, Condition, str | None]]:
    for i, exit_ in enumerate(seq.exits):
        if exit_.when is not None:
            yield f"exit_when[{i}].when", exit_.when, None
    for step in seq.steps:
        if isinstance(step, BranchStep):
            for j, case in zip(_branch_items(step)[0], step.cases, strict=True):
                yield _label(step, f"branch[{j}].when"), case.when, step.id


def _condition_names(seq: Sequence) -> Iterator[Diagnostic]:
    known = set(FACTS) | set(CONTEXT_NAMES) | set(environment().globals)
    declared = {"lead": seq.field_names, "sender": SENDER_FIELDS, "sequence": SEQUENCE_FIELDS}
    for label, cond, step_id in _conditions(seq):
        parsed = _parse_condition(cond.source)
        if parsed is None:
            continue  # the loader reported the syntax error
        names, attributes = parsed
        where = (cond.pos.file, cond.pos.line, cond.pos.column)
        for name in sorted(names - known):
            close = difflib.get_close_matches(name, sorted(known), n=1)
            hint = f' (did you mean "{close[0]}"?)' if close else ""
            yield error(*where, f'{label}: unknown name "{name}"{hint}; conditions can use lead, sender, sequence '
                                f"and the facts {', '.join(FACTS)}", step_id)
        for owner, attr in attributes:
            fields = declared[owner]
            if attr in fields:
                continue
            if owner == "lead":
                message = (f"lead.{attr} is not a declared field; declared fields: {', '.join(fields)} "
                           "(add it under `fields:`)")
            else:
                message = f"{owner}.{attr} does not exist; {owner} has: {', '.join(fields)}"
            yield error(*where, f"{label}: {message}", step_id)


@functools.lru_cache(maxsize=1024)
def _parse_condition(source: str) -> tuple[frozenset[str], tuple[tuple[str, str], ...]] | None:
    """(top-level names, (owner, attribute) reads of lead/sender/sequence), or None if it does not parse."""
    wrapped = "{{ (" + source + ") }}"
    try:
        ast = environment().parse(wrapped)
    except jinja2.TemplateSyntaxError:
        return None
    attributes = tuple(dict.fromkeys((owner, attr) for owner in ("lead", "sender", "sequence")
                                     for attr, _ in attribute_uses(ast, owner)))
    return frozenset(expression_names(wrapped)), attributes
