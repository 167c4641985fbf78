"""Rendering message templates for one lead, and refusing output a human would be embarrassed by.

All rendering goes through the one environment in `runner.language.jinja`. After rendering, text is stripped
and rejected (`TemplateRenderError`) when it is empty, has a greeting with no name ("Hi ,"), still
contains "{{", "}}" or "{%", or is longer than LinkedIn allows (notes 300, messages 8,000
characters, counted after stripping). `preview_lead` is what `seqrun render` shows; rendering every
template for every row of a lead CSV is `runner.project.templaterows`. Checking templates without leads is
`runner.language.templatelint` (re-exported here as `check_sequence_templates`).

Missing lead fields. A field that is empty or absent in the lead's row is a `MissingField`: false in
`{% if lead.company_name %}`, equal to no string, replaced by `| fallback("...")` or `| default(...)`,
and an error naming the field when printed as it is. The name filters turn it into "", so
`Hi {{ lead.full_name | first_name }},` with no name renders "Hi ,", which is refused as a greeting
without a name that tells the author to add `| fallback("there")`.

A/B variants are picked by `pick_variant` from sha256(lead key, NUL, step id): the same answer on
every machine and every run, so a preview shows exactly what the lead will get.
"""
from __future__ import annotations

import functools
import hashlib
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import jinja2

from runner.language.diagnostics import SeqrunError
from runner.language.jinja import environment
from runner.language.model import ActionStep, MessageTemplate, Sequence, TemplateRef, Variant
from runner.language.templatelint import (
    MESSAGE_LIMIT,
    NOTE_LIMIT,
    SENDER_FIELDS,
    SEQUENCE_FIELDS,
    check_sequence_templates,
    template_path,
)

__all__ = [
    "MESSAGE_LIMIT", "NOTE_LIMIT", "MissingField", "Preview", "Record", "Rendered", "TemplateRenderError",
    "build_context", "check_output", "check_sequence_templates",
    "choose_template", "pick_variant", "preview_facts", "preview_lead", "render_message",
    "render_note", "render_variant", "rendered_steps", "sender_fields",
]

_LEFTOVER_TAGS = ("{{", "}}", "{%", "%}", "{#")
_GREETINGS = (
    "hi", "hello", "hey", "hiya", "dear", "greetings", "good morning", "good afternoon",
    "good evening", "hallo", "guten tag", "moin", "servus", "bonjour", "salut", "hola", "buenas",
    "buenos días", "ciao", "salve", "olá", "oi", "hej", "hoi", "witam", "cześć", "привет",
    "здравствуйте",
)
# A greeting followed by blank space and then punctuation or the end of the line: the name that
# belonged in between rendered empty ("Hi ,", "Hello !", "Dear \n").
_EMPTY_GREETING = re.compile(
    r"(?<!\w)(?:" + "|".join(re.escape(g) for g in _GREETINGS) + r")[ \t\u00a0]+(?:[,.!?;:]|$)",
    re.IGNORECASE | re.MULTILINE,
)
# Exceptions a user's template can raise while rendering: they are the template's fault, not ours.
_RENDER_FAILURES = (jinja2.TemplateError, ArithmeticError, LookupError, TypeError, ValueError, AttributeError)


class TemplateRenderError(SeqrunError):
    """A template that cannot be rendered for one lead, or whose output must not be sent.

    `template` is the template name (or `steps[id=x].subject` for an InMail subject), `line` the
    line in it (0 when the problem is the whole output), `message` a complete sentence that names
    what was rendered and from which template.
    """

    def __init__(self, template: str, line: int, message: str) -> None:
        super().__init__(message)
        self.template, self.line, self.message = template, line, message


@dataclass(frozen=True, slots=True)
class Rendered:
    """One rendered note or message, ready to send. `text` has surrounding whitespace removed."""

    text: str
    template: str
    variant: str | None = None
    subject: str | None = None  # InMail only

    @property
    def length(self) -> int:
        return len(self.text)


# --- context ---------------------------------------------------------------------------------------


class MissingField(jinja2.StrictUndefined):
    """A field that is empty for this lead: false in `if`, replaced by `fallback`, an error when printed."""

    __slots__ = ()

    # StrictUndefined makes truth, comparison and hashing raise (typed as never returning); a missing
    # field answers them instead, hence the ignores.
    def __bool__(self) -> bool:  # type: ignore[override]
        return False

    # Comparisons are as natural as truth: an empty field equals no string (`lead.title == "CEO"`).
    def __eq__(self, other: object) -> bool:  # type: ignore[override]
        return isinstance(other, MissingField)

    def __ne__(self, other: object) -> bool:  # type: ignore[override]
        return not self.__eq__(other)

    __hash__ = jinja2.Undefined.__hash__  # type: ignore[assignment]


class Record:
    """Read-only named values for templates (`lead`, `sender`, `sequence`).

    Only dunder methods, so that no field name ("items", "keys", ...) is shadowed by a method; an
    empty or absent value comes back as `MissingField` with a message saying how to handle it.
    """

    __slots__ = ("_kind", "_values", "_declared")

    def __init__(self, kind: str, values: Mapping[str, str], declared: Iterable[str]) -> None:
        self._kind = kind
        self._values = {k: v for k, v in values.items() if isinstance(v, str) and v.strip()}
        self._declared = tuple(declared)

    def __getitem__(self, name: str) -> Any:
        if name in self._values and name in self._declared:
            return self._values[name]
        full = f"{self._kind}.{name}"
        if name not in self._declared:
            hint = f"{full} does not exist; {self._kind} has: {', '.join(self._declared)}"
        else:
            hint = (f'{full} is empty for this {self._kind}; write {{{{ {full} | fallback("...") }}}} '
                    f"or put it inside {{% if {full} %}}")
        return MissingField(hint=hint, obj=self, name=name)

    def __contains__(self, name: object) -> bool:
        return name in self._values and name in self._declared

    def __repr__(self) -> str:
        return f"<{self._kind}>"


def build_context(
    seq: Sequence, lead_fields: Mapping[str, str], facts: Mapping[str, object], sender: Mapping[str, str],
) -> dict[str, object]:
    """The names a template sees: the facts, `lead`, `sender` and `sequence`."""
    context: dict[str, object] = dict(facts)
    context["lead"] = Record("lead", lead_fields, seq.field_names)
    context["sender"] = Record("sender", sender, SENDER_FIELDS)
    context["sequence"] = Record("sequence", {"name": seq.name}, SEQUENCE_FIELDS)
    return context


def preview_facts(*, invited_with_note: bool | None) -> dict[str, object]:
    """Facts of a typical lead, for previews and checks: before the invite when `invited_with_note`
    is None (what a connect note sees), else just after the lead accepted the invite."""
    before = invited_with_note is None
    return {
        "connected": not before,
        "invite_pending": False,
        "invited": not before,
        "invited_with_note": bool(invited_with_note),
        "accepted": not before,
        "conversation_exists": bool(invited_with_note),
        "replied": False,
        "lead_messaged_first": False,
        "days_since_last_message": None,
        "messages_sent": 0,
        "blocked": False,
        "tags": [],
    }


# --- rendering -------------------------------------------------------------------------------------


def pick_variant(step: ActionStep, lead_key: str) -> Variant | None:
    """The A/B variant this lead gets: weighted, from sha256(lead_key NUL step id), so the same on
    every machine and every run. None when the step has no variants."""
    if not step.variants:
        return None
    digest = hashlib.sha256(f"{lead_key}\0{step.id}".encode()).digest()
    point = int.from_bytes(digest[:8], "big") % sum(v.weight for v in step.variants)
    for variant in step.variants:
        if point < variant.weight:
            return variant
        point -= variant.weight
    raise AssertionError("unreachable: point is below the total weight")


def choose_template(mt: MessageTemplate, *, invited_with_note: bool) -> TemplateRef | None:
    """with_note when the invite carried a note, else without_note; a single template otherwise."""
    paired = mt.with_note if invited_with_note else mt.without_note
    return paired or mt.default


def render_note(seq: Sequence, step: ActionStep, context: Mapping[str, object]) -> Rendered | None:
    """The connect note for this lead, or None when the step sends its invite without a note."""
    if step.note is None:
        return None
    what = f"connect note from {step.note.name}"
    text = _render_file(seq, step.note.name, context, what)
    check_output(text, what, step.note.name, NOTE_LIMIT)
    return Rendered(text, step.note.name)


def render_message(
    seq: Sequence, step: ActionStep, context: Mapping[str, object], *, invited_with_note: bool, lead_key: str,
) -> Rendered:
    """The message (or InMail body and subject) this lead gets from `step`, variant included."""
    return render_variant(seq, step, pick_variant(step, lead_key), context, invited_with_note=invited_with_note)


def render_variant(
    seq: Sequence, step: ActionStep, variant: Variant | None, context: Mapping[str, object], *,
    invited_with_note: bool,
) -> Rendered:
    """Like `render_message` for a given variant (None for a step without variants)."""
    mt = variant.template if variant is not None else step.template
    ref = choose_template(mt, invited_with_note=invited_with_note) if mt is not None else None
    kind = "InMail" if step.inmail else "message"
    if ref is None:  # the loader guarantees a template; this names the gap if it ever did not
        case = "with" if invited_with_note else "without"
        raise TemplateRenderError("", 0, f"step {step.id} has no {kind} template for an invite {case} a note")
    what = f"{kind}{f' variant {variant.name}' if variant else ''} from {ref.name}"
    text = _render_file(seq, ref.name, context, what)
    check_output(text, what, ref.name, MESSAGE_LIMIT)
    subject = _render_subject(seq, step, context) if step.inmail and step.subject is not None else None
    return Rendered(text, ref.name, variant.name if variant else None, subject)


def sequence_environment(seq: Sequence) -> jinja2.Environment:
    """The environment a sequence's templates render in: the texts stored with its version first
    (`Sequence.templates`: what a lead gets never changes with the files), then templates/ for a
    name the version does not hold (an include by a computed name)."""
    return _environment_for(seq.source_hash, seq.templates_dir, seq.templates)


@functools.lru_cache(maxsize=64)
def _environment_for(source_hash: str, templates_dir: str, texts: tuple[tuple[str, str], ...]) -> jinja2.Environment:
    shared = environment(templates_dir)  # cached and shared: never change it, overlay it
    assert shared.loader is not None  # environment() always gives one
    return shared.overlay(loader=jinja2.ChoiceLoader([jinja2.DictLoader(dict(texts)), shared.loader]))


def _inline_template(seq: Sequence, source: str) -> jinja2.Template:
    return _compiled_inline(seq.source_hash, seq.templates_dir, seq.templates, source)


@functools.lru_cache(maxsize=256)
def _compiled_inline(source_hash: str, templates_dir: str, texts: tuple[tuple[str, str], ...],
                     source: str) -> jinja2.Template:
    """Compiled once: compiling costs far more than rendering, and subjects are rendered per lead."""
    return _environment_for(source_hash, templates_dir, texts).from_string(source)


def _render_file(seq: Sequence, name: str, context: Mapping[str, object], what: str) -> str:
    env = sequence_environment(seq)
    try:
        template = env.get_template(name)
    except jinja2.TemplateNotFound:
        where = os.path.dirname(template_path(seq, name)) or "."
        raise TemplateRenderError(name, 0, f"{what}: template not found in {where}{os.sep}") from None
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateRenderError(name, exc.lineno or 0, f"{what} has an error at line {exc.lineno}: {exc.message}") from None
    except (UnicodeDecodeError, OSError) as exc:
        raise TemplateRenderError(name, 0, f"{what}: template cannot be read ({exc})") from None
    return _render(template, context, name, what).strip()


def _render_subject(seq: Sequence, step: ActionStep, context: Mapping[str, object]) -> str:
    assert step.subject is not None
    label, what = f"steps[id={step.id}].subject", f"InMail subject of step {step.id}"
    try:
        template = _inline_template(seq, step.subject)
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateRenderError(label, exc.lineno or 0, f"{what} has a syntax error: {exc.message}") from None
    subject = _render(template, context, label, what).strip()
    check_output(subject, what, label, MESSAGE_LIMIT)
    return subject


def _render(template: jinja2.Template, context: Mapping[str, object], label: str, what: str) -> str:
    try:
        return template.render(context)
    except _RENDER_FAILURES as exc:
        line = _failing_line(exc, template.filename or "<template>")
        reason = str(exc) if isinstance(exc, jinja2.TemplateError) else f"{type(exc).__name__}: {exc}"
        at = f" at line {line}" if line else ""
        raise TemplateRenderError(label, line, f"{what} failed{at}: {reason}") from None


def _failing_line(exc: BaseException, filename: str) -> int:
    """The template line Jinja reports in the traceback it rewrote (its frames carry template lines)."""
    line, tb = 0, exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == filename:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def check_output(text: str, what: str, template: str, limit: int) -> None:
    """Raise TemplateRenderError for rendered text that must not be sent (`text` already stripped)."""
    for tag in _LEFTOVER_TAGS:
        if tag in text:
            raise TemplateRenderError(template, 0, f'{what} still contains "{tag}" after rendering')
    if not text:
        raise TemplateRenderError(template, 0, f"{what} is empty")
    greeting = _EMPTY_GREETING.search(text)
    if greeting:
        shown = greeting.group(0).replace("\n", "")
        raise TemplateRenderError(template, 0, f'{what} has a greeting without a name: "{shown}" (is the name empty '
                                          f'for this lead? use | fallback("there"))')
    if len(text) > limit:
        raise TemplateRenderError(template, 0, f"{what} is {len(text)} characters; LinkedIn allows {limit}")


# --- previews and checks against real leads --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Preview:
    """One note or message rendered for one lead (or why it could not be)."""

    step: str
    kind: str  # "note", "message" or "InMail"
    case: str | None  # "with_note" / "without_note" when the step picks by how the invite was sent
    variant: str | None
    template: str
    rendered: Rendered | None = None
    error: TemplateRenderError | None = None


def rendered_steps(seq: Sequence) -> list[ActionStep]:
    """The steps that produce text: connects with a note, and messages."""
    return [s for s in seq.steps if isinstance(s, ActionStep)
            and ((s.action == "connect" and s.note is not None) or s.action == "message")]


def sender_fields(name: str, full_name: str | None) -> dict[str, str]:
    """`sender` as templates see it; without a configured full name, the sender's name stands in
    (what the engine sends, so previews match it)."""
    return {"name": name, "full_name": full_name or name}


def preview_lead(
    seq: Sequence, lead_fields: Mapping[str, str], lead_key: str, sender: Mapping[str, str], *,
    steps: Iterable[ActionStep] | None = None, all_variants: bool = False, both_cases: bool = False,
) -> list[Preview]:
    """Every note and message of `steps` (default: all) as this lead would get them.

    Steps that choose by how the invite was sent show both templates. The lead's own variant is
    shown unless `all_variants`; `both_cases` also renders single templates with
    `invited_with_note` true and false (they may test it).
    """
    previews: list[Preview] = []
    for step in rendered_steps(seq) if steps is None else steps:
        if step.action == "connect":
            previews.append(_preview_note(seq, step, lead_fields, sender))
            continue
        variants: list[Variant | None] = list(step.variants) if all_variants and step.variants \
            else [pick_variant(step, lead_key)]
        for variant in variants:
            mt = variant.template if variant is not None else step.template
            for flag, case in _cases(seq, mt, both_cases):
                previews.append(_preview_message(seq, step, variant, lead_fields, sender, flag, case))
    return previews


def _cases(seq: Sequence, mt: MessageTemplate | None, both: bool) -> list[tuple[bool, str | None]]:
    if mt is not None and (mt.with_note or mt.without_note):
        return [(True, "with_note"), (False, "without_note")]
    if both:
        return [(True, None), (False, None)]
    # A single template sees the facts of the usual path: a note was sent if this sequence sends one.
    return [(any(s.action == "connect" for s in rendered_steps(seq)), None)]


def _preview_note(seq: Sequence, step: ActionStep, lead_fields: Mapping[str, str],
                  sender: Mapping[str, str]) -> Preview:
    assert step.note is not None
    context = build_context(seq, lead_fields, preview_facts(invited_with_note=None), sender)
    try:
        return Preview(step.id, "note", None, None, step.note.name, rendered=render_note(seq, step, context))
    except TemplateRenderError as exc:
        return Preview(step.id, "note", None, None, step.note.name, error=exc)


def _preview_message(seq: Sequence, step: ActionStep, variant: Variant | None, lead_fields: Mapping[str, str],
                     sender: Mapping[str, str], invited_with_note: bool, case: str | None) -> Preview:
    kind = "InMail" if step.inmail else "message"
    mt = variant.template if variant is not None else step.template
    ref = choose_template(mt, invited_with_note=invited_with_note) if mt is not None else None
    name = ref.name if ref is not None else ""
    context = build_context(seq, lead_fields, preview_facts(invited_with_note=invited_with_note), sender)
    variant_name = variant.name if variant is not None else None
    try:
        rendered = render_variant(seq, step, variant, context, invited_with_note=invited_with_note)
    except TemplateRenderError as exc:
        return Preview(step.id, kind, case, variant_name, name, error=exc)
    return Preview(step.id, kind, case, variant_name, name, rendered=rendered)
