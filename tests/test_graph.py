"""`seqrun graph`: the flow as Mermaid and DOT, checked exactly and for well-formedness."""
from __future__ import annotations

import pathlib
import re
import shutil
import subprocess

import pytest

from runner.cli.main import main
from runner.language.graph import build_graph, dot_text, mermaid_text, to_dot, to_mermaid
from runner.language.loader import load_sequence
from runner.language.model import Sequence

FLOW = """\
version: 1
name: flow
fields:
  company_name: optional
exit_when:
  - replied
  - {when: "'customer' in tags", end: customer}
steps:
  - id: start
    branch:
      - when: connected
        goto: hello
      - when: 'lead.company_name == "A|B <C> [#1]" or invite_pending'
        end: skipped
      - default: next
  - {id: connect, action: connect, note: hello.j2}
  - {id: accepted, wait_for: accepted, timeout: 14 days, on_timeout: withdraw}
  - {id: hello, action: message, template: hello.j2}
  - wait: 3 business days
  - {id: check, action: tag, tags: [warm, q1]}
  - branch:
      - {when: messages_sent < 2, goto: hello}
      - default: {end: no_reply}
  - {id: withdraw, action: withdraw, goto: bye}
  - {id: bye, end: not_accepted}
"""

FLOW_MERMAID = """\
flowchart TD
    s0{"start: branch"}
    s1["connect: connect (note: hello.j2)"]
    s2{{"accepted: wait for accepted ≤ 14 days"}}
    s3["hello: message (hello.j2)"]
    s4("hello+1: wait 3 business days")
    s5["check: tag warm, q1"]
    s6{"check+1: branch"}
    s7["withdraw: withdraw invite"]
    s8(["not_accepted"])
    o0(["skipped"])
    o1(["no_reply"])
    s0 -->|"connected"| s3
    s0 -->|"lead.company_name == #quot;A#124;B #lt;C#gt; [#35;1]#quot; or invite_pending"| o0
    s0 -->|"default"| s1
    s1 --> s2
    s2 -->|"accepted"| s3
    s2 -->|"timeout 14 days"| s7
    s3 --> s4
    s4 --> s5
    s5 --> s6
    s6 -->|"messages_sent #lt; 2"| s3
    s6 -->|"default"| o1
    s7 --> s8
    subgraph exits ["exit_when: checked before every step"]
        x0(["replied"])
        x1(["when 'customer' in tags → customer"])
    end
    classDef outcome stroke-width:3px
    class s8,o0,o1,x0,x1 outcome
"""

FLOW_DOT = """\
digraph "flow" {
    rankdir=TB;
    node [fontname="Helvetica"];
    edge [fontname="Helvetica"];
    s0 [label="start: branch", shape=diamond];
    s1 [label="connect: connect (note: hello.j2)", shape=box];
    s2 [label="accepted: wait for accepted ≤ 14 days", shape=hexagon];
    s3 [label="hello: message (hello.j2)", shape=box];
    s4 [label="hello+1: wait 3 business days", shape=box, style="rounded,dashed"];
    s5 [label="check: tag warm, q1", shape=box];
    s6 [label="check+1: branch", shape=diamond];
    s7 [label="withdraw: withdraw invite", shape=box];
    s8 [label="not_accepted", shape=box, style="rounded,bold"];
    o0 [label="skipped", shape=box, style="rounded,bold"];
    o1 [label="no_reply", shape=box, style="rounded,bold"];
    s0 -> s3 [label="connected"];
    s0 -> o0 [label="lead.company_name == \\"A|B <C> [#1]\\" or invite_pending"];
    s0 -> s1 [label="default"];
    s1 -> s2;
    s2 -> s3 [label="accepted"];
    s2 -> s7 [label="timeout 14 days"];
    s3 -> s4;
    s4 -> s5;
    s5 -> s6;
    s6 -> s3 [label="messages_sent < 2"];
    s6 -> o1 [label="default"];
    s7 -> s8;
    subgraph cluster_exits {
        label="exit_when: checked before every step";
        x0 [label="replied", shape=box, style="rounded,bold"];
        x1 [label="when 'customer' in tags → customer", shape=box, style="rounded,bold"];
    }
}
"""

EXAMPLES = pathlib.Path(__file__).parent.parent / "sequences"


def write_project(root: pathlib.Path, yaml_text: str, name: str = "flow.yaml") -> pathlib.Path:
    (root / "templates").mkdir(exist_ok=True)
    (root / "templates" / "hello.j2").write_text('Hi {{ lead.company_name | fallback("there") }}\n', encoding="utf-8")
    (root / "sequences").mkdir(exist_ok=True)
    path = root / "sequences" / name
    path.write_text(yaml_text, encoding="utf-8")
    return path


def load(path: pathlib.Path) -> Sequence:
    seq, diags = load_sequence(str(path))
    assert seq is not None, [d.format() for d in diags]
    return seq


@pytest.fixture
def flow(tmp_path: pathlib.Path) -> Sequence:
    return load(write_project(tmp_path, FLOW))


# --- structural checkers --------------------------------------------------------------------------------

_MERMAID_KEYWORDS = {"end", "graph", "flowchart", "subgraph", "class", "classDef", "style", "click", "linkStyle"}
_LABEL = r'"([^"]*)"'
_MERMAID_NODE = re.compile(r"\s+(\w+)(\(\[|\{\{|\[|\(|\{)" + _LABEL + r"(\]\)|\}\}|\]|\)|\})")
_PAIRS = {"([": "])", "{{": "}}", "[": "]", "(": ")", "{": "}"}
_MERMAID_EDGE = re.compile(r"\s+(\w+) -->(?:\|" + _LABEL + r"\|)? (\w+)")
_MERMAID_SUBGRAPH = re.compile(r"\s+subgraph (\w+) \[" + _LABEL + r"\]")
_STRAY_HASH = re.compile(r"#(?!(?:quot|lt|gt|35|124);)")


def check_mermaid(text: str) -> tuple[set[str], list[tuple[str, str, str | None]]]:
    """Parse our Mermaid subset strictly; return node ids and edges. Fails on anything else."""
    lines = text.splitlines()
    assert lines[0] == "flowchart TD"
    nodes: set[str] = set()
    edges: list[tuple[str, str, str | None]] = []
    labels: list[str] = []
    depth = 0
    for line in lines[1:]:
        if m := _MERMAID_NODE.fullmatch(line):
            node_id, left, label, right = m.groups()
            assert _PAIRS[left] == right, line
            assert node_id not in nodes and node_id not in _MERMAID_KEYWORDS, line
            nodes.add(node_id)
            labels.append(label)
        elif m := _MERMAID_EDGE.fullmatch(line):
            edges.append((m.group(1), m.group(3), m.group(2)))
            if m.group(2) is not None:
                labels.append(m.group(2))
        elif m := _MERMAID_SUBGRAPH.fullmatch(line):
            depth += 1
            labels.append(m.group(2))
        elif line.strip() == "end":
            depth -= 1
            assert depth >= 0
        elif re.fullmatch(r"\s+classDef \w+ [\w:-]+", line):
            pass
        elif m := re.fullmatch(r"\s+class ([\w,]+) \w+", line):
            assert set(m.group(1).split(",")) <= nodes, line
        else:
            raise AssertionError(f"not valid in our Mermaid subset: {line!r}")
    assert depth == 0
    for source, target, _ in edges:
        assert source in nodes and target in nodes, (source, target)
    for label in labels:
        assert not _STRAY_HASH.search(label) and not set(label) & set('"<>|\n'), label
    return nodes, edges


_DOT_STRING = r'"((?:[^"\\]|\\.)*)"'
_DOT_ATTRS = r"\[(label=" + _DOT_STRING + r"(?:, [a-z]+=(?:\w+|" + _DOT_STRING + r"))*)\]"
_DOT_NODE = re.compile(r"\s+(\w+) " + _DOT_ATTRS + ";")
_DOT_EDGE = re.compile(r"\s+(\w+) -> (\w+)(?: \[label=" + _DOT_STRING + r"\])?;")


def check_dot(text: str) -> tuple[set[str], list[tuple[str, str]]]:
    lines = text.splitlines()
    assert re.fullmatch(r"digraph " + _DOT_STRING + r" \{", lines[0]) and lines[-1] == "}"
    nodes: set[str] = set()
    edges: list[tuple[str, str]] = []
    depth = 1
    for line in lines[1:-1]:
        if m := _DOT_NODE.fullmatch(line):
            assert m.group(1) not in nodes
            nodes.add(m.group(1))
        elif m := _DOT_EDGE.fullmatch(line):
            edges.append((m.group(1), m.group(2)))
        elif re.fullmatch(r"\s+subgraph cluster_\w+ \{", line):
            depth += 1
        elif line.strip() == "}":
            depth -= 1
        elif re.fullmatch(r"\s+(rankdir=TB|(node|edge) \[fontname=\"Helvetica\"\]|label=" + _DOT_STRING + ");", line):
            pass
        else:
            raise AssertionError(f"not valid in our DOT subset: {line!r}")
    assert depth == 1
    assert all(s in nodes and t in nodes for s, t in edges)
    return nodes, edges


# --- tests ----------------------------------------------------------------------------------------------


def test_mermaid_for_branch_wait_for_goto_and_ends(flow: Sequence) -> None:
    assert to_mermaid(flow) == FLOW_MERMAID
    nodes, edges = check_mermaid(FLOW_MERMAID)
    assert len(nodes) == 9 + 2 + 2  # steps, implicit outcomes, exits
    assert ("s0", "o0", "lead.company_name == #quot;A#124;B #lt;C#gt; [#35;1]#quot; or invite_pending") in edges


def test_dot_is_the_same_graph(flow: Sequence) -> None:
    assert to_dot(flow) == FLOW_DOT
    dot_nodes, dot_edges = check_dot(FLOW_DOT)
    mermaid_nodes, mermaid_edges = check_mermaid(FLOW_MERMAID)
    assert dot_nodes == mermaid_nodes
    assert dot_edges == [(s, t) for s, t, _ in mermaid_edges]


@pytest.mark.skipif(shutil.which("dot") is None, reason="graphviz is not installed")
def test_graphviz_accepts_the_dot_output(flow: Sequence) -> None:
    result = subprocess.run(["dot", "-Tsvg"], input=to_dot(flow), capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_every_step_is_a_node_and_falling_off_the_end_completes(tmp_path: pathlib.Path) -> None:
    seq = load(write_project(tmp_path, "version: 1\nname: tiny\nsteps:\n  - action: visit\n  - wait: 2 days\n"
                             "  - {action: notify, url: 'https://crm.example.com/hook?x=1'}\n"))
    assert to_mermaid(seq) == (
        "flowchart TD\n"
        '    s0["start: visit profile"]\n'
        '    s1("start+1: wait 2 days")\n'
        '    s2["start+2: notify crm.example.com"]\n'
        '    o0(["completed"])\n'
        "    s0 --> s1\n"
        "    s1 --> s2\n"
        "    s2 --> o0\n"
        "    classDef outcome stroke-width:3px\n"
        "    class o0 outcome\n"
    )


def test_message_labels(tmp_path: pathlib.Path) -> None:
    yaml_text = """\
version: 1
name: labels
exit_when: [replied]
steps:
  - {id: connect, action: connect}
  - {id: accepted, wait_for: accepted, timeout: 2 weeks, on_timeout: {end: not_accepted}}
  - id: thanks
    action: message
    template: {with_note: hello.j2, without_note: hello.j2}
  - wait: 1 day
  - id: ab
    action: message
    variants: [{name: a, template: hello.j2, weight: 3}, {name: b, template: hello.j2}]
  - {id: reply, wait_for: replied, timeout: 5 business days, end: engaged}
"""
    graph = build_graph(load(write_project(tmp_path, yaml_text)))
    assert [n.label for n in graph.nodes] == [
        "connect: connect (no note)",
        "accepted: wait for accepted ≤ 2 weeks",
        "thanks: message (with note: hello.j2, without: hello.j2)",
        "thanks+1: wait 1 day",
        "ab: message (A/B: a 3, b 1)",
        "reply: wait for replied ≤ 5 business days",
        "not_accepted",
        "engaged",
        "completed",
    ]
    assert [(e.source, e.target, e.label) for e in graph.edges if e.source in ("s1", "s5")] == [
        ("s1", "s2", "accepted"), ("s1", "o0", "timeout 2 weeks"),
        ("s5", "o1", "replied"), ("s5", "o2", "timeout 5 business days"),
    ]


@pytest.mark.parametrize(("text", "mermaid", "dot"), [
    ('say "hi"', '"say #quot;hi#quot;"', '"say \\"hi\\""'),
    ("a|b <c> #d", '"a#124;b #lt;c#gt; #35;d"', '"a|b <c> #d"'),
    ("back\\slash", '"back\\slash"', '"back\\\\slash"'),
    ("two\nlines", '"two lines"', '"two lines"'),
    ("[x] {y} (z)", '"[x] {y} (z)"', '"[x] {y} (z)"'),
])
def test_label_escaping(text: str, mermaid: str, dot: str) -> None:
    assert mermaid_text(text) == mermaid
    assert dot_text(text) == dot


@pytest.mark.parametrize("name", ["connect-no-note.yaml", "connect-with-note.yaml", "edges-full-flow.yaml",
                                  "two-senders-ab.yaml"])
def test_example_sequences_draw_valid_graphs(name: str) -> None:
    path = EXAMPLES / name
    if not path.exists():
        pytest.skip(f"{name} is not in this checkout")
    seq = load(path)
    nodes, _ = check_mermaid(to_mermaid(seq))
    dot_nodes, _ = check_dot(to_dot(seq))
    assert nodes == dot_nodes
    assert {f"s{i}" for i in range(len(seq.steps))} <= nodes


def test_graph_command(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_project(tmp_path, FLOW)
    assert main(["graph", str(path)]) == 0
    assert capsys.readouterr().out == FLOW_MERMAID
    assert main(["graph", str(path), "--format", "dot"]) == 0
    assert capsys.readouterr().out == FLOW_DOT


def test_graph_command_refuses_an_invalid_sequence(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_project(tmp_path, "version: 1\nname: broken\nsteps:\n  - wait: 3 dayz\n", "broken.yaml")
    assert main(["graph", str(path)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.splitlines()[-1] == "error: fix the errors above first (see `seqrun validate`)"
    assert f"{path}:4:11: error: steps[id=start].wait: expected" in captured.err
