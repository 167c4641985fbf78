"""Safe, positioned YAML reading for every file seqrun loads (sequences, project config).

PyYAML's safe loader is close but not enough: it silently keeps the last of two duplicate keys,
reads `on`/`yes` as booleans and `09:30` as a base-60 integer, loses source positions, and lets an
alias bomb or a deeply nested document exhaust memory or the stack. So we compose the node graph
ourselves (libyaml when present) and build plain Python values with our own rules:

- one document per file, UTF-8 (a BOM is accepted), no NUL bytes, no tabs in indentation;
- only the plain tags (str, int, float, bool, null, map, seq; dates stay strings);
- booleans are only true/false, integers only decimal or 0x hex (YAML 1.2 core schema);
- duplicate keys are errors; keys are always strings;
- bounded size, nesting depth, node count (after alias expansion) and scalar length.

The result is `YamlDoc(data, positions)`, where `positions[path]` is the (line, column) of the node
at that path (a tuple of keys and list indices), and `key_positions[path]` the position of the key
that introduced it. Problems come back as diagnostics, never as exceptions.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import yaml

from runner.language.diagnostics import Diagnostic, error

try:  # libyaml is much faster; fall back to the pure-Python composer.
    from yaml import CSafeLoader as _Loader
except ImportError:  # pragma: no cover - depends on how PyYAML was built
    from yaml import SafeLoader as _Loader  # type: ignore[assignment]

MAX_FILE_BYTES = 1024 * 1024
MAX_DEPTH = 40
MAX_NODES = 50_000
MAX_SCALAR_CHARS = 64 * 1024

Path = tuple[str | int, ...]

_TAG = "tag:yaml.org,2002:"
_ALLOWED_TAGS = {_TAG + t for t in ("str", "int", "float", "bool", "null", "map", "seq", "timestamp")}
_INT_RE = re.compile(r"[-+]?(0|[1-9][0-9]*)$|0x[0-9a-fA-F]+$")
_FLOAT_RE = re.compile(r"[-+]?(\d+\.\d*|\.\d+|\d+)([eE][-+]?\d+)?$")
_NULLS = {"", "~", "null", "Null", "NULL"}


@dataclass
class YamlDoc:
    data: Any
    file: str
    positions: dict[Path, tuple[int, int]] = field(default_factory=dict)
    key_positions: dict[Path, tuple[int, int]] = field(default_factory=dict)

    def pos(self, path: Path, *, key: bool = False) -> tuple[int, int]:
        """Position of the node at `path` (of its key with key=True), else of the nearest parent."""
        table = self.key_positions if key else self.positions
        p = tuple(path)
        while p:
            if p in table:
                return table[p]
            if key and p in self.positions:
                return self.positions[p]
            p = p[:-1]
        return self.positions.get((), (1, 1))


class _TooBig(Exception):
    def __init__(self, message: str, line: int, column: int) -> None:
        super().__init__(message)
        self.message, self.line, self.column = message, line, column


def load_yaml_file(path: str, display: str | None = None) -> tuple[YamlDoc | None, list[Diagnostic]]:
    """Read and parse one YAML file. `display` is the name used in diagnostics (default `path`)."""
    name = display or path
    try:
        with open(path, "rb") as fh:
            raw = fh.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        return None, [error(name, 0, 0, f"cannot read file: {exc.strerror or exc}")]
    return load_yaml_bytes(raw, name)


def load_yaml_bytes(raw: bytes, name: str) -> tuple[YamlDoc | None, list[Diagnostic]]:
    if len(raw) > MAX_FILE_BYTES:
        return None, [error(name, 0, 0, f"file is larger than {MAX_FILE_BYTES // 1024} KiB; is it really a YAML file?")]
    text, diags = _decode(raw, name)
    if text is None:
        return None, diags
    diags = _check_tabs(text, name)
    if diags:
        return None, diags
    try:
        nodes = list(yaml.compose_all(text, Loader=_Loader))
    except yaml.MarkedYAMLError as exc:
        return None, [_yaml_error(exc, name)]
    except yaml.YAMLError as exc:
        return None, [error(name, 0, 0, f"invalid YAML: {exc}")]
    except RecursionError:
        return None, [error(name, 1, 1, f"the document is nested too deeply (more than {MAX_DEPTH} levels)")]
    nodes = [n for n in nodes if n is not None]
    if not nodes:
        return None, [error(name, 1, 1, "file is empty; expected a YAML mapping")]
    if len(nodes) > 1:
        m = nodes[1].start_mark
        return None, [error(name, m.line + 1, m.column + 1,
                            "found a second YAML document; a file holds exactly one (remove the '---')")]
    doc = YamlDoc(data=None, file=name)
    builder = _Builder(doc, name)
    try:
        doc.data = builder.build(nodes[0], (), 0)
    except _TooBig as exc:
        return None, [error(name, exc.line, exc.column, exc.message)]
    if builder.diags:
        return None, builder.diags
    return doc, []


def _decode(raw: bytes, name: str) -> tuple[str | None, list[Diagnostic]]:
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    nul = raw.find(b"\x00")
    if nul >= 0:
        line, col = _line_col(raw, nul)
        return None, [error(name, line, col, "file contains a NUL byte; is it a text file? (UTF-16 is not supported, save it as UTF-8)")]
    try:
        return raw.decode("utf-8"), []
    except UnicodeDecodeError as exc:
        line, col = _line_col(raw, exc.start)
        return None, [error(name, line, col, f"file is not valid UTF-8 (byte 0x{raw[exc.start]:02x}); save it as UTF-8")]


def _line_col(raw: bytes, offset: int) -> tuple[int, int]:
    line = raw.count(b"\n", 0, offset) + 1
    start = raw.rfind(b"\n", 0, offset) + 1
    return line, len(raw[start:offset].decode("utf-8", "replace")) + 1


def _check_tabs(text: str, name: str) -> list[Diagnostic]:
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.lstrip(" \t")
        indent = line[: len(line) - len(stripped)]
        if "\t" in indent and stripped and not stripped.startswith("#"):
            return [error(name, number, indent.index("\t") + 1, "tab character in indentation; YAML indents with spaces only")]
    return []


def _yaml_error(exc: yaml.MarkedYAMLError, name: str) -> Diagnostic:
    mark = exc.problem_mark or exc.context_mark
    problem = exc.problem or "invalid YAML"
    if exc.context and exc.context not in problem:
        problem = f"{problem} ({exc.context})"
    line, col = (mark.line + 1, mark.column + 1) if mark else (0, 0)
    return error(name, line, col, f"invalid YAML: {problem}")


class _Builder:
    def __init__(self, doc: YamlDoc, name: str) -> None:
        self.doc, self.name = doc, name
        self.count = 0
        self.diags: list[Diagnostic] = []

    def build(self, node: yaml.Node, path: Path, depth: int) -> Any:
        mark = node.start_mark
        line, col = mark.line + 1, mark.column + 1
        self.count += 1
        if self.count > MAX_NODES:
            raise _TooBig(f"document has more than {MAX_NODES} nodes (an alias expanding too often?)", line, col)
        if depth > MAX_DEPTH:
            raise _TooBig(f"the document is nested too deeply (more than {MAX_DEPTH} levels)", line, col)
        self.doc.positions.setdefault(path, (line, col))
        if node.tag not in _ALLOWED_TAGS:
            self.diags.append(error(self.name, line, col,
                                    f"unsupported YAML tag {_short_tag(node.tag)}; seqrun reads plain YAML values only"))
            return None
        if isinstance(node, yaml.ScalarNode):
            return self._scalar(node, line, col)
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, path + (i,), depth + 1) for i, item in enumerate(node.value)]
        assert isinstance(node, yaml.MappingNode)  # the composer makes only these three kinds
        return self._mapping(node, path, depth)

    def _scalar(self, node: yaml.ScalarNode, line: int, col: int) -> Any:
        text = node.value
        if len(text) > MAX_SCALAR_CHARS:
            raise _TooBig(f"value is longer than {MAX_SCALAR_CHARS} characters", line, col)
        if node.style:  # quoted or block scalars are always strings (libyaml says "" for plain)
            return text
        tag = node.tag[len(_TAG):]
        if tag == "null" and text in _NULLS:
            return None
        if tag == "bool" and text.lower() in ("true", "false"):
            return text.lower() == "true"
        if tag == "int" and _INT_RE.match(text):
            return int(text, 16) if text.startswith("0x") else int(text)
        if tag == "float" and _FLOAT_RE.match(text):
            return float(text)
        if tag == "float" and text.lower() in (".inf", "+.inf", "-.inf", ".nan"):
            return float(text.replace(".", ""))
        return text

    def _mapping(self, node: yaml.MappingNode, path: Path, depth: int) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            kline, kcol = key_node.start_mark.line + 1, key_node.start_mark.column + 1
            if key_node.tag == _TAG + "merge":
                self.diags.append(error(self.name, kline, kcol, "merge keys ('<<') are not supported; repeat the keys"))
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                self.diags.append(error(self.name, kline, kcol, "mapping keys must be plain strings"))
                continue
            key = key_node.value
            if key in out:
                first = self.doc.key_positions[path + (key,)][0]
                self.diags.append(error(self.name, kline, kcol, f'duplicate key "{key}" (first defined on line {first})'))
                continue
            self.doc.key_positions[path + (key,)] = (kline, kcol)
            out[key] = self.build(value_node, path + (key,), depth + 1)
        return out


def _short_tag(tag: str) -> str:
    return "!!" + tag[len(_TAG):] if tag.startswith(_TAG) else tag
