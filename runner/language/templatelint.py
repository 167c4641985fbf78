"""Checking a sequence's templates without rendering them (`seqrun validate` runs this).

Every template a sequence references (connect notes, message templates, with_note/without_note
pairs, A/B variants, the templates those include or import, and inline InMail subjects) is parsed
once, however many steps use it. Reported, at the template's own `templates/x.j2:LINE:COL`:

- syntax errors, with Jinja's message (column 1: Jinja does not track columns);
- unknown filters and tests, also those inside an `if` that Jinja itself only notices when the
  branch runs;
- names that are neither facts (`model.FACTS`) nor `lead`, `sender`, `sequence`;
- `lead.<field>` for a field the sequence does not declare (and unknown `sender.`/`sequence.`
  attributes), naming the step that uses the template and what is declared;
- a note (or message) whose fixed text alone is over LinkedIn's limit, so it can never be sent.

A template file that does not exist or cannot be read is reported at the reference in the sequence's
YAML, in the loader's words (so `seqrun validate` prints one line when both notice). Problems in
InMail subjects are reported at the step, as they live in the YAML.
"""
from __future__ import annotations

import dataclasses
import difflib
import functools
import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, cast

import jinja2
from jinja2 import meta, nodes

from runner.language.diagnostics import Diagnostic, error, sort_diagnostics
from runner.language.jinja import FILTERS, attribute_uses, environment
from runner.language.model import CONTEXT_NAMES, FACTS, ActionStep, MessageTemplate, Sequence, TemplateRef

NOTE_LIMIT = 300  # LinkedIn's limit for an invitation note
MESSAGE_LIMIT = 8000  # LinkedIn's limit for a message body

#: Attributes of `sender` and `sequence` that templates may read.
SENDER_FIELDS: tuple[str, ...] = ("name", "full_name")
SEQUENCE_FIELDS: tuple[str, ...] = ("name",)


@dataclass(frozen=True, slots=True)
class TemplateUse:
    """One place where a step uses a template file. `where` is the YAML path below the step."""

    ref: TemplateRef
    step: ActionStep
    where: str  # "note", "template", "template.with_note", "variants[name=a].template", ...
    variant: str | None = None

    @property
    def is_note(self) -> bool:
        return self.where == "note"


# --- which templates a sequence uses ----------------------------------------------------------------


def template_uses(seq: Sequence) -> list[TemplateUse]:
    """Every template file reference in the sequence, in file order."""
    uses: list[TemplateUse] = []
    for step in seq.steps:
        if not isinstance(step, ActionStep):
            continue
        if step.action == "connect" and step.note is not None:
            uses.append(TemplateUse(step.note, step, "note"))
        if step.action == "message":
            if step.template is not None:
                uses.extend(_message_uses(step, step.template, "template", None))
            for variant in step.variants:
                uses.extend(_message_uses(step, variant.template, f"variants[name={variant.name}].template", variant.name))
    return uses


def _message_uses(step: ActionStep, mt: MessageTemplate, where: str, variant: str | None) -> Iterator[TemplateUse]:
    for key, ref in (("", mt.default), (".with_note", mt.with_note), (".without_note", mt.without_note)):
        if ref is not None:
            yield TemplateUse(ref, step, where + key, variant)


def template_path(seq: Sequence, name: str) -> str:
    """The template file as diagnostics show it: relative when the sequence path was relative."""
    full = os.path.join(seq.templates_dir, name)
    if os.path.isabs(seq.path):
        return full
    try:
        return os.path.relpath(full)
    except ValueError:  # another drive on Windows
        return full


# --- lint ------------------------------------------------------------------------------------------


def check_sequence_templates(seq: Sequence) -> list[Diagnostic]:
    """Check every template the sequence uses without rendering it; see the module docstring."""
    env = environment(seq.templates_dir)
    uses = template_uses(seq)
    by_name: dict[str, list[TemplateUse]] = {}
    for use in uses:
        by_name.setdefault(use.ref.name, []).append(use)
    diags: list[Diagnostic] = []
    checked: set[str] = set()
    for name, group in by_name.items():
        if not _is_plain_name(name):
            continue  # the loader refuses names that leave templates/; nothing to read
        source = _load_source(env, name)
        if isinstance(source, str):
            diags.extend(_missing_template(seq, use, source) for use in group)
            continue
        diags.extend(_lint_file(seq, env, name, source, group, checked))
    for step in seq.steps:
        if isinstance(step, ActionStep) and step.action == "message" and step.subject is not None:
            diags.extend(_lint_subject(seq, env, step))
    return sort_diagnostics(diags)


def _is_plain_name(name: str) -> bool:
    return not (name.startswith("/") or "\\" in name or ".." in name.split("/"))


def _load_source(env: jinja2.Environment, name: str) -> tuple[str, str] | str:
    """(source, filename), or the reason it cannot be read."""
    assert env.loader is not None
    try:
        source, filename, _ = env.loader.get_source(env, name)
    except jinja2.TemplateNotFound:
        return "not found"
    except UnicodeDecodeError:
        return "is not valid UTF-8"
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    return source, filename or name


def _missing_template(seq: Sequence, use: TemplateUse, reason: str) -> Diagnostic:
    where = os.path.dirname(template_path(seq, use.ref.name)) or "."
    message = f'steps[id={use.step.id}].{use.where}: template "{use.ref.name}" {reason}'
    if reason == "not found":
        message += f" in {where}{os.sep}"
    return error(seq.path, use.ref.pos.line, use.ref.pos.column, message, use.step.id)


def _lint_file(
    seq: Sequence, env: jinja2.Environment, name: str, loaded: tuple[str, str],
    group: list[TemplateUse], checked: set[str], *, included: bool = False,
) -> list[Diagnostic]:
    """Lint one template file and, once each, the templates it includes or imports."""
    if name in checked:
        return []
    checked.add(name)
    source, filename = loaded
    shown = template_path(seq, name)
    used_by = _used_by(seq, group)
    step_id = group[0].step.id
    parsed = _parse_and_compile(seq.templates_dir, name, filename, source)
    if isinstance(parsed, tuple):
        line, message = parsed
        return [error(shown, line, 1, message, step_id)]
    ast, compile_problem = parsed.ast, parsed.compile_problem
    diags = [error(shown, line, 1, message, step_id) for line, message in _lint_ast(seq, env, source, ast, used_by)]
    if compile_problem is not None:
        diags.append(error(shown, compile_problem[0], 1, compile_problem[1], step_id))
    if not included:  # an included file's text may sit inside an `if`: no lower bound from it alone
        diags.extend(_static_length(shown, ast, group, used_by, step_id))
    for line, other in _included_names(ast):
        loaded_other = _load_source(env, other)
        if isinstance(loaded_other, str):
            diags.append(error(shown, line, 1, f'included template "{other}" {loaded_other}', step_id))
        else:
            diags.extend(_lint_file(seq, env, other, loaded_other, group, checked, included=True))
    return diags


@dataclasses.dataclass(frozen=True)
class _Parsed:
    ast: nodes.Template
    compile_problem: tuple[int, str] | None


@functools.lru_cache(maxsize=1024)
def _parse_and_compile(templates_dir: str, name: str, filename: str, source: str) -> _Parsed | tuple[int, str]:
    """Parse and compile one template text once, however many sequences use it (validate of a
    large project re-checks the same few templates for every sequence). The AST is only read."""
    env = environment(templates_dir)
    try:
        ast = env.parse(source, name, filename)
    except jinja2.TemplateSyntaxError as exc:
        return (exc.lineno or 1, exc.message or "invalid template syntax")
    try:  # what only the compiler notices, e.g. a block defined twice (unknown filters are in already)
        _lenient(env, ast).compile(source, name, filename)
    except jinja2.TemplateSyntaxError as exc:
        return _Parsed(ast, (exc.lineno or 1, exc.message or "invalid template"))
    return _Parsed(ast, None)


def _used_by(seq: Sequence, group: Iterable[TemplateUse]) -> str:
    ids = list(dict.fromkeys(use.step.id for use in group))
    steps = f"step {ids[0]}" if len(ids) == 1 else "steps " + ", ".join(ids)
    return f"used by {steps} of sequence {seq.name}"


def _lint_ast(
    seq: Sequence, env: jinja2.Environment, source: str, ast: nodes.Template, used_by: str,
) -> list[tuple[int, str]]:
    """(line, message) for unknown names, undeclared fields and unknown filters/tests, once each."""
    found: dict[tuple[int, str], None] = {}
    for node in ast.find_all((nodes.Filter, nodes.Test)):
        table, kind = (env.filters, "filter") if isinstance(node, nodes.Filter) else (env.tests, "test")
        if node.name not in table:
            found[(node.lineno, _unknown_callable(kind, node.name, table, used_by))] = None
    known = set(FACTS) | set(CONTEXT_NAMES)
    unknown = _undeclared_names(env, source, ast) - known
    for name_node in ast.find_all(nodes.Name):
        if name_node.ctx == "load" and name_node.name in unknown:
            found[(name_node.lineno, _unknown_name(name_node.name, known, used_by))] = None
    declared = {"lead": seq.field_names, "sender": SENDER_FIELDS, "sequence": SEQUENCE_FIELDS}
    for name, fields in declared.items():
        for attr, line in attribute_uses(ast, name):
            if attr not in fields:
                found[(line, _undeclared_attr(name, attr, fields, used_by))] = None
    return sorted(found)


def _lenient(env: jinja2.Environment, ast: nodes.Template) -> jinja2.Environment:
    """`env`, or an overlay where the template's unknown filters and tests exist as no-ops.

    Jinja's analysis and compiler stop at the first unknown filter or test; those are reported
    on their own, and the rest of the template still deserves checking.
    """
    filters = {n.name for n in ast.find_all(nodes.Filter)} - set(env.filters)
    tests = {n.name for n in ast.find_all(nodes.Test)} - set(env.tests)
    if not (filters or tests):
        return env
    overlay = env.overlay()
    overlay.filters = {**env.filters, **{name: _no_op for name in filters}}
    overlay.tests = {**env.tests, **{name: _no_op for name in tests}}
    return overlay


def _undeclared_names(env: jinja2.Environment, source: str, ast: nodes.Template) -> set[str]:
    """Names the template reads but never sets, with Jinja's own scoping rules."""
    lenient = _lenient(env, ast)
    if lenient is not env:
        ast = lenient.parse(source)
    try:
        return meta.find_undeclared_variables(ast)
    except jinja2.TemplateSyntaxError:
        # e.g. a block defined twice (reported by the compile step): read plainly instead.
        loaded = {n.name for n in ast.find_all(nodes.Name) if n.ctx == "load"}
        stored = {n.name for n in ast.find_all(nodes.Name) if n.ctx in ("store", "param")}
        return loaded - stored - set(env.globals)


def _no_op(value: Any, *args: Any, **kwargs: Any) -> Any:
    return value


def _unknown_callable(kind: str, name: str, table: Mapping[str, Any], used_by: str) -> str:
    ours = f"; seqrun adds the filters {', '.join(FILTERS)} to Jinja's built-in ones" if kind == "filter" else ""
    return f'unknown {kind} "{name}"{_did_you_mean(name, table)} ({used_by}){ours}'


def _unknown_name(name: str, known: set[str], used_by: str) -> str:
    facts = ", ".join(FACTS)
    return (f'unknown name "{name}"{_did_you_mean(name, known)} ({used_by}); templates can use lead, '
            f"sender, sequence and the facts {facts}")


def _undeclared_attr(name: str, attr: str, fields: Iterable[str], used_by: str) -> str:
    listed = ", ".join(fields)
    if name == "lead":
        return (f"{name}.{attr} is not a declared field ({used_by}); declared fields: {listed} "
                f"(add it under `fields:`)")
    return f'{name}.{attr} does not exist ({used_by}); {name} has: {listed}'


def _did_you_mean(name: str, choices: Iterable[str]) -> str:
    # A high cutoff: a wrong suggestion ("acme" -> "sameas") is worse than none.
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.75)
    return f' (did you mean "{close[0]}"?)' if close else ""


def _static_length(shown: str, ast: nodes.Template, group: list[TemplateUse], used_by: str, step_id: str) -> list[Diagnostic]:
    """A note whose fixed text alone is over the limit can never be sent, whatever the lead."""
    fixed = len(_min_static_text(ast.body).strip())
    for use in group:
        limit, what = (NOTE_LIMIT, "connect note") if use.is_note else (MESSAGE_LIMIT, "message")
        if fixed > limit:
            return [error(shown, 1, 1, f"the fixed text of this {what} is already {fixed} characters before "
                                       f"any field is filled in; LinkedIn allows {limit} ({used_by})", step_id)]
    return []


def _min_static_text(body: list[nodes.Node]) -> str:
    """The literal text every rendering contains, taking the shortest arm of each `if`.

    Expressions add text and never remove it, so the stripped result is a lower bound of the
    stripped output's length. Loops may run zero times and count as nothing.
    """
    parts: list[str] = []
    for node in body:
        if isinstance(node, nodes.Output):
            parts.extend(n.data for n in node.nodes if isinstance(n, nodes.TemplateData))
        elif isinstance(node, nodes.If):
            arms = [node.body, *(elif_.body for elif_ in node.elif_), node.else_]
            parts.append(min((_min_static_text(arm) for arm in arms), key=lambda t: len(t.strip())))
        elif isinstance(node, (nodes.Scope, nodes.With, nodes.Block)):
            parts.append(_min_static_text(node.body))
    return "".join(parts)


def _included_names(ast: nodes.Template) -> list[tuple[int, str]]:
    found: list[tuple[int, str]] = []
    # find_all with a tuple of types is typed as yielding their common base (Stmt): name the union.
    kinds = (nodes.Include, nodes.Import, nodes.FromImport, nodes.Extends)
    for node in cast("Iterator[nodes.Include | nodes.Import | nodes.FromImport | nodes.Extends]", ast.find_all(kinds)):
        target = node.template
        if isinstance(target, nodes.Const) and isinstance(target.value, str):
            found.append((node.lineno, target.value))
    return found


def _lint_subject(seq: Sequence, env: jinja2.Environment, step: ActionStep) -> list[Diagnostic]:
    assert step.subject is not None
    prefix = f"steps[id={step.id}].subject: "
    line, col = step.pos.line, step.pos.column
    try:
        ast = env.parse(step.subject)
    except jinja2.TemplateSyntaxError as exc:
        return [error(seq.path, line, col, prefix + (exc.message or "invalid template syntax"), step.id)]
    used_by = f"used by step {step.id} of sequence {seq.name}"
    found = _lint_ast(seq, env, step.subject, ast, used_by)
    return [error(seq.path, line, col, prefix + message, step.id) for _, message in found]
