"""The sequence flowchart `seqrun graph` draws (runner.language.graph), as server-side SVG with lead counts.

Layout: steps are ranked top to bottom by the longest forward path from the first step (an edge
back to an earlier step, a `goto` loop, is drawn around the right side instead); nodes of one rank
sit side by side in file order. Each step node carries the number of leads on it now; each end node
the number of leads that finished with that outcome.
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from runner.charts import FONT, TEXT, esc
from runner.language.graph import Graph, Node

NODE_H, RANK_GAP, NODE_GAP, MARGIN = 44, 46, 28, 24
LEFT_ROOM = 120  # for edges that pass other ranks on the left
CHAR_W = 6.6
FILL = {"action": "#eaf1fd", "wait": "#f4f5f7", "wait_for": "#fdf3e6", "branch": "#f3ecfb", "end": "#e8f6ef",
        "exit": "#fdecec"}
STROKE = {"action": "#3b6fd8", "wait": "#8a94a0", "wait_for": "#e08a2e", "branch": "#a05cc8", "end": "#3aa676",
          "exit": "#d0504f"}


@dataclass
class _Box:
    node: Node
    x: float
    y: float
    w: float

    @property
    def cx(self) -> float:
        return self.x + self.w / 2


def _order(graph: Graph) -> list[str]:
    return [n.id for n in graph.nodes]


def _ranks(graph: Graph) -> dict[str, int]:
    order = {node_id: i for i, node_id in enumerate(_order(graph))}
    rank = {graph.nodes[0].id: 0} if graph.nodes else {}
    for node in graph.nodes:  # steps come in file order, so forward edges see their source ranked
        if node.id not in rank:
            rank[node.id] = max(rank.values(), default=-1) + 1 if node.shape != "end" else 0
        for edge in graph.edges:
            if edge.source == node.id and _forward(edge.source, edge.target, order):
                rank[edge.target] = max(rank.get(edge.target, 0), rank[node.id] + 1)
    return rank


def _forward(source: str, target: str, order: Mapping[str, int]) -> bool:
    return target.startswith("o") or order[target] > order[source]


def _width(node: Node, count: int | None) -> float:
    badge = 0 if count is None else 16 + CHAR_W * len(f"{count:,}")
    return max(120.0, min(340.0, CHAR_W * len(node.label) + 28 + badge))


def flowchart_svg(graph: Graph, step_ids: Sequence[str], on_step: Mapping[str, int], ended: Mapping[str, int]) -> str:
    """The graph as SVG; `step_ids` are the sequence's steps in file order (node `s<i>` is the i-th),
    `on_step` maps step ids to running leads, `ended` outcomes to finished leads."""
    counts = _counts(graph, step_ids, on_step, ended)
    ranks = _ranks(graph)
    rows: dict[int, list[Node]] = defaultdict(list)
    for node in graph.nodes:
        rows[ranks[node.id]].append(node)
    widths = {n.id: _width(n, counts.get(n.id)) for n in graph.nodes}
    row_w = {r: sum(widths[n.id] for n in nodes) + NODE_GAP * (len(nodes) - 1) for r, nodes in rows.items()}
    inner = max(row_w.values(), default=200)
    boxes: dict[str, _Box] = {}
    for r in sorted(rows):
        x = MARGIN + LEFT_ROOM + (inner - row_w[r]) / 2
        for node in rows[r]:
            boxes[node.id] = _Box(node, x, MARGIN + r * (NODE_H + RANK_GAP), widths[node.id])
            x += widths[node.id] + NODE_GAP
    order = {node_id: i for i, node_id in enumerate(_order(graph))}
    body: list[str] = ['<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" '
                       'markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#7b8591"/>'
                       "</marker></defs>"]
    loops = detours = 0
    labels: list[str] = []
    for edge in graph.edges:
        a, b = boxes[edge.source], boxes[edge.target]
        span = ranks[edge.target] - ranks[edge.source]
        if _forward(edge.source, edge.target, order) and span <= 1:
            x1, y1, x2, y2 = a.cx, a.y + NODE_H, b.cx, b.y
            mid = (y1 + y2) / 2
            path = f"M{x1:.1f},{y1:.1f} C{x1:.1f},{mid:.1f} {x2:.1f},{mid:.1f} {x2:.1f},{y2 - 2:.1f}"
            lx, ly = x1 + (x2 - x1) * 0.7, y1 + RANK_GAP * 0.45
        elif _forward(edge.source, edge.target, order):  # past other ranks: around the left-hand side
            detours += 1
            between = [box.x for box in boxes.values() if ranks[edge.source] < ranks[box.node.id] < ranks[edge.target]]
            side = min([*between, a.x, b.x]) - 30 - 16 * detours
            y1, y2 = a.y + NODE_H / 2, b.y + NODE_H / 2
            path = f"M{a.x:.1f},{y1:.1f} C{side:.1f},{y1:.1f} {side:.1f},{y2:.1f} {b.x - 2:.1f},{y2:.1f}"
            lx, ly = 0.75 * side + 0.125 * (a.x + b.x), (y1 + y2) / 2  # the curve's midpoint
        else:  # a loop back up: around the right-hand side
            loops += 1
            side = MARGIN + LEFT_ROOM + inner + 18 * loops
            y1, y2 = a.y + NODE_H / 2, b.y + NODE_H / 2
            path = (f"M{a.x + a.w:.1f},{y1:.1f} C{side:.1f},{y1:.1f} {side:.1f},{y2:.1f} {b.x + b.w + 2:.1f},{y2:.1f}")
            lx, ly = 0.75 * side + 0.125 * (a.x + a.w + b.x + b.w), (y1 + y2) / 2
        body.append(f'<path d="{path}" fill="none" stroke="#7b8591" stroke-width="1.4" marker-end="url(#arrow)"/>')
        if edge.label:
            text = edge.label if len(edge.label) <= 34 else edge.label[:33] + "…"
            w = CHAR_W * len(text) + 10
            labels.append(f'<g class="edge-label"><rect x="{lx - w / 2:.1f}" y="{ly - 10:.1f}" width="{w:.1f}" height="18" '
                          f'rx="4" fill="#ffffff" stroke="#dde2e8"/><text x="{lx:.1f}" y="{ly + 3:.1f}" '
                          f'text-anchor="middle" fill="#5b6570" font-size="11">{esc(text)}<title>{esc(edge.label)}</title>'
                          f"</text></g>")
    for box in boxes.values():
        body.append(_node_svg(box, counts.get(box.node.id)))
    body += labels
    height = MARGIN * 2 + (max(rows, default=0) + 1) * (NODE_H + RANK_GAP) - RANK_GAP
    if graph.exits:
        body.append(f'<text x="{MARGIN + LEFT_ROOM}" y="{height + 4}" fill="{TEXT}" font-weight="600">exit_when: checked before every '
                    "step</text>")
        for i, node in enumerate(graph.exits):
            count = ended.get(node.label.rsplit("→ ", 1)[-1], 0)
            body.append(_node_svg(_Box(node, MARGIN + LEFT_ROOM, height + 16 + i * (NODE_H - 8), _width(node, count)),
                                  count, h=NODE_H - 14))
        height += 24 + len(graph.exits) * (NODE_H - 8)
    width = MARGIN * 2 + LEFT_ROOM + inner + 18 * loops + (40 if loops else 0)
    return (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width:.0f} {height:.0f}" width="{width:.0f}" '
            f'role="img" aria-label="flowchart of {esc(graph.name)}" class="flowchart" {FONT} font-size="12">'
            f"{''.join(body)}</svg>")


def _counts(graph: Graph, step_ids: Sequence[str], on_step: Mapping[str, int],
            ended: Mapping[str, int]) -> dict[str, int]:
    """Running leads per step node; finished leads per outcome, on the first node ending with it."""
    out: dict[str, int] = {}
    counted: set[str] = set()
    for node in graph.nodes:
        count = on_step.get(step_ids[int(node.id[1:])], 0) if node.id.startswith("s") else 0
        if node.shape == "end" and node.label not in counted:
            counted.add(node.label)
            count += ended.get(node.label, 0)
        out[node.id] = count
    return out


def _node_svg(box: _Box, count: int | None, h: int = NODE_H) -> str:
    shape = box.node.shape
    rx = {"action": 4, "wait": 14, "wait_for": 10, "branch": 2, "end": h / 2, "exit": h / 2}[shape]
    dash = ' stroke-dasharray="5 3"' if shape == "wait" else ""
    out = [f'<g class="node node-{shape}" data-node="{esc(box.node.id)}">',
           f'<rect x="{box.x:.1f}" y="{box.y:.1f}" width="{box.w:.1f}" height="{h}" rx="{rx}" fill="{FILL[shape]}" '
           f'stroke="{STROKE[shape]}" stroke-width="1.5"{dash}/>']
    label = box.node.label
    text_x = box.x + 12
    if count is not None:
        badge = f"{count:,}"
        bw = 10 + CHAR_W * len(badge)
        bx = box.x + box.w - bw - 8
        colour = STROKE[shape] if count else "#c3c9d0"
        out.append(f'<rect x="{bx:.1f}" y="{box.y + h / 2 - 10:.1f}" width="{bw:.1f}" height="20" rx="10" fill="{colour}"/>')
        out.append(f'<text x="{bx + bw / 2:.1f}" y="{box.y + h / 2 + 4:.1f}" text-anchor="middle" fill="#ffffff" '
                   f'font-weight="600" class="count">{badge}</text>')
        room = int((bx - text_x - 4) / CHAR_W)
    else:
        room = int((box.w - 24) / CHAR_W)
    shown = label if len(label) <= room else label[: max(room - 1, 1)] + "…"
    out.append(f'<text x="{text_x:.1f}" y="{box.y + h / 2 + 4:.1f}" fill="{TEXT}">{esc(shown)}<title>{esc(label)}</title></text>')
    out.append("</g>")
    return "".join(out)
