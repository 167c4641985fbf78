"""A picture of a sequence's control flow, as Mermaid (`flowchart TD`) or Graphviz DOT text.

`build_graph` turns the model into nodes and labelled edges once; `to_mermaid` and `to_dot` only
write them out, each with its own quoting. Every step is a node labelled with its id and a short
description ("connect (note: x.j2)", "wait 3 days", "wait for accepted ≤ 14 days"). Edges: fall
through to the next step, `goto`, branch cases (labelled with the condition), the branch default
("default"), what happens after a `wait_for` event (labelled with the event) and its timeout
("timeout 14 days"). Ends are terminal nodes named by their outcome: `end` steps, `end:` on steps
and branch cases, and falling off the last step ("completed"). Global exits are listed in a
separate group, since they apply before every step.

Node ids are generated (`s3`, `o1`, `x0`): step ids may contain `+` and `-`, and Mermaid reserves
words such as `end`.
"""
from __future__ import annotations

import urllib.parse
from dataclasses import dataclass, field
from typing import Literal

from runner.language.model import (
    ActionStep,
    BranchStep,
    EndStep,
    MessageTemplate,
    Sequence,
    Step,
    Target,
    WaitForStep,
    WaitStep,
)

Shape = Literal["action", "wait", "wait_for", "branch", "end", "exit"]


@dataclass(frozen=True, slots=True)
class Node:
    id: str
    label: str
    shape: Shape


@dataclass(frozen=True, slots=True)
class Edge:
    source: str
    target: str
    label: str = ""


@dataclass
class Graph:
    name: str
    nodes: list[Node] = field(default_factory=list)
    edges: list[Edge] = field(default_factory=list)
    exits: list[Node] = field(default_factory=list)


# --- the model as nodes and edges ----------------------------------------------------------------------


def build_graph(seq: Sequence) -> Graph:
    graph = Graph(seq.name)
    index = seq.index
    outcomes: dict[str, str] = {}  # outcome -> node id, for ends that are not `end` steps

    def outcome_node(outcome: str) -> str:
        if outcome not in outcomes:
            outcomes[outcome] = f"o{len(outcomes)}"
        return outcomes[outcome]

    def follow(i: int, target: Target | None) -> str:
        """Where control goes from step i: the target, or the next step (or `completed`)."""
        if target is None:
            return f"s{i + 1}" if i + 1 < len(seq.steps) else outcome_node("completed")
        if target.end is not None:
            return outcome_node(target.end)
        assert target.goto is not None  # the loader only builds targets that name a step
        return f"s{index[target.goto]}"

    for i, step in enumerate(seq.steps):
        node = f"s{i}"
        graph.nodes.append(Node(node, describe(step), _shape(step)))
        if isinstance(step, BranchStep):
            for case in step.cases:
                graph.edges.append(Edge(node, follow(i, case.target), case.when.source))
            graph.edges.append(Edge(node, follow(i, step.default), "default"))
        elif isinstance(step, WaitForStep):
            graph.edges.append(Edge(node, follow(i, step.then), step.event))
            graph.edges.append(Edge(node, follow(i, step.on_timeout), f"timeout {step.timeout.text}"))
        elif isinstance(step, (ActionStep, WaitStep)):
            graph.edges.append(Edge(node, follow(i, step.then)))
    graph.nodes.extend(Node(node_id, outcome, "end") for outcome, node_id in outcomes.items())
    for n, exit_ in enumerate(seq.exits):
        label = exit_.outcome if exit_.when is None else f"when {exit_.when.source} → {exit_.outcome}"
        if exit_.when is None and exit_.name != exit_.outcome:
            label = f"{exit_.name} → {exit_.outcome}"
        graph.exits.append(Node(f"x{n}", label, "exit"))
    return graph


def _shape(step: Step) -> Shape:
    if isinstance(step, ActionStep):
        return "action"
    if isinstance(step, WaitStep):
        return "wait"
    if isinstance(step, WaitForStep):
        return "wait_for"
    if isinstance(step, BranchStep):
        return "branch"
    return "end"


def describe(step: Step) -> str:
    """`connect: connect (note: x.j2)`, `start+1: wait 3 days`, `accepted: wait for accepted ≤ 14 days`."""
    if isinstance(step, EndStep):
        return step.outcome
    if isinstance(step, ActionStep):
        what = _describe_action(step)
    elif isinstance(step, WaitStep):
        what = f"wait {step.duration.text}"
    elif isinstance(step, WaitForStep):
        what = f"wait for {step.event} ≤ {step.timeout.text}"
    else:
        what = "branch"
    return f"{step.id}: {what}"


def _describe_action(step: ActionStep) -> str:
    if step.action == "visit":
        return "visit profile"
    if step.action == "connect":
        return f"connect (note: {step.note.name})" if step.note else "connect (no note)"
    if step.action == "message":
        kind = "InMail" if step.inmail else "message"
        if step.variants:
            arms = ", ".join(f"{v.name} {v.weight}" for v in step.variants)
            return f"{kind} (A/B: {arms})"
        return f"{kind} ({_describe_templates(step.template)})"
    if step.action == "withdraw":
        return "withdraw invite"
    if step.action == "tag":
        return f"tag {', '.join(step.tags)}"
    if step.action == "notify":
        host = urllib.parse.urlsplit(step.url or "").hostname
        return f"notify {host}" if host else "notify"
    return step.action


def _describe_templates(mt: MessageTemplate | None) -> str:
    if mt is None:
        return "no template"
    if mt.default is not None:
        return mt.default.name
    with_note = mt.with_note.name if mt.with_note else "-"
    without_note = mt.without_note.name if mt.without_note else "-"
    return f"with note: {with_note}, without: {without_note}"


# --- Mermaid -------------------------------------------------------------------------------------------

_MERMAID_SHAPES: dict[Shape, tuple[str, str]] = {
    "action": ("[", "]"),
    "wait": ("(", ")"),
    "wait_for": ("{{", "}}"),
    "branch": ("{", "}"),
    "end": ("([", "])"),
    "exit": ("([", "])"),
}
# Inside a quoted Mermaid label these would end the string, start an entity or be read as HTML.
_MERMAID_ESCAPES = {"#": "#35;", '"': "#quot;", "<": "#lt;", ">": "#gt;", "|": "#124;", "\n": " ", "\r": " "}


def mermaid_text(text: str) -> str:
    """A quoted Mermaid string: `#quot;` entities for quotes, no raw `#`, `<`, `>` or `|`."""
    return '"' + "".join(_MERMAID_ESCAPES.get(c, c) for c in text) + '"'


def to_mermaid(seq: Sequence) -> str:
    graph = build_graph(seq)
    lines = ["flowchart TD"]
    for node in graph.nodes:
        lines.append(f"    {_mermaid_node(node)}")
    for edge in graph.edges:
        arrow = f"-->|{mermaid_text(edge.label)}|" if edge.label else "-->"
        lines.append(f"    {edge.source} {arrow} {edge.target}")
    if graph.exits:
        lines.append(f"    subgraph exits [{mermaid_text('exit_when: checked before every step')}]")
        lines.extend(f"        {_mermaid_node(node)}" for node in graph.exits)
        lines.append("    end")
    lines.append("    classDef outcome stroke-width:3px")
    ends = [n.id for n in graph.nodes + graph.exits if n.shape in ("end", "exit")]
    if ends:
        lines.append(f"    class {','.join(ends)} outcome")
    return "\n".join(lines) + "\n"


def _mermaid_node(node: Node) -> str:
    left, right = _MERMAID_SHAPES[node.shape]
    return f"{node.id}{left}{mermaid_text(node.label)}{right}"


# --- Graphviz DOT --------------------------------------------------------------------------------------

_DOT_SHAPES: dict[Shape, str] = {
    "action": 'shape=box',
    "wait": 'shape=box, style="rounded,dashed"',
    "wait_for": 'shape=hexagon',
    "branch": 'shape=diamond',
    "end": 'shape=box, style="rounded,bold"',
    "exit": 'shape=box, style="rounded,bold"',
}


def dot_text(text: str) -> str:
    """A DOT double-quoted string (backslashes and quotes escaped, newlines as spaces)."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\r", " ").replace("\n", " ")
    return f'"{escaped}"'


def to_dot(seq: Sequence) -> str:
    graph = build_graph(seq)
    lines = [f"digraph {dot_text(graph.name)} {{", "    rankdir=TB;", '    node [fontname="Helvetica"];',
             '    edge [fontname="Helvetica"];']
    lines.extend(f"    {_dot_node(node)}" for node in graph.nodes)
    for edge in graph.edges:
        attrs = f" [label={dot_text(edge.label)}]" if edge.label else ""
        lines.append(f"    {edge.source} -> {edge.target}{attrs};")
    if graph.exits:
        lines.append("    subgraph cluster_exits {")
        lines.append(f"        label={dot_text('exit_when: checked before every step')};")
        lines.extend(f"        {_dot_node(node)}" for node in graph.exits)
        lines.append("    }")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _dot_node(node: Node) -> str:
    return f"{node.id} [label={dot_text(node.label)}, {_DOT_SHAPES[node.shape]}];"
