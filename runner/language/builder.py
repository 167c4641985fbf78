"""Building the frozen `runner.language.model` records from a schema-checked YAML document.

`Builder` checks what the schema cannot say (durations, time zones, time ranges, dates, conditions
that do not parse, template files that do not exist, branch defaults, variant names, InMail
subjects) and collects those problems as positioned diagnostics without stopping, so that
`seqrun validate` reports everything about a file in one run. `runner.language.loader` drives it.
"""
from __future__ import annotations

import datetime as dt
import difflib
import functools
import hashlib
import os
import pathlib
import zoneinfo
from collections.abc import Iterable, Mapping
from typing import Any

import jinja2
from jinja2 import meta

from runner.language.diagnostics import Diagnostic, error
from runner.language.durations import DurationError, parse_duration, parse_time_range
from runner.language.jinja import ConditionError, compile_condition, environment
from runner.language.model import (
    LIMITED_ACTIONS,
    WEEKDAYS,
    ActionStep,
    BranchCase,
    BranchStep,
    Calendar,
    Condition,
    Duration,
    EndStep,
    Exit,
    FieldSpec,
    Limit,
    Limits,
    MessageTemplate,
    Pos,
    Sequence,
    Step,
    Target,
    TemplateRef,
    TimeRange,
    Variant,
    WaitForStep,
    WaitStep,
    Warmup,
)
from runner.language.schemacheck import PathNames, show
from runner.language.urls import url_secrets
from runner.language.yamlsrc import Path, YamlDoc

#: `default: next` in a branch means "the following step"; no step may take the name.
NEXT = "next"
#: Calendar time zones that are not IANA names.
CALENDAR_OWNERS = ("lead", "sender")
DEFAULT_WARMUP_START = 0.2
_DEFAULT_CALENDAR = Calendar()

_CONDITION_HINTS = {
    "chunk after expression": "there is more after a complete expression (compare with ==, combine with and/or)",
    "unexpected 'end of template'": "the expression ends too early",
}


class Builder:
    """Turns a schema-valid document into a `Sequence`, collecting value errors on the way."""

    def __init__(self, doc: YamlDoc, path: str, templates_dir: pathlib.Path,
                 stored_templates: Mapping[str, str] | None = None) -> None:
        self.doc, self.path = doc, path
        self.file = doc.file
        self.templates_dir = templates_dir
        self.names = PathNames(doc.data)
        self.ids = self.names.ids
        self.diags: list[Diagnostic] = []
        self.templates_found: dict[str, bool] = {}
        #: a stored version's templates (runner.versions): read from here instead of templates/
        self.stored_templates = stored_templates
        #: the text of every template the sequence uses, those they include included (`build`)
        self.template_texts: dict[str, str] = {}

    # helpers

    def pos(self, path: Path, *, key: bool = False) -> Pos:
        line, col = self.doc.pos(path, key=key)
        return Pos(self.file, line, col)

    def err(self, path: Path, message: str, *, key: bool = False) -> None:
        """Report at the value (or with key=True at the key, which the message names itself)."""
        line, col = self.doc.pos(path, key=key)
        label = self.names.describe(path[:-1] if key else path)
        self.diags.append(error(self.file, line, col, f"{label}: {message}", self.names.step(path)))

    def duration(self, path: Path, value: Any) -> Duration:
        try:
            return parse_duration(value)
        except DurationError as exc:
            self.err(path, str(exc))
            return Duration(str(value))

    def condition(self, path: Path, source: str) -> Condition:
        try:
            _compiled_condition(source)
        except ConditionError as exc:
            hint = _CONDITION_HINTS.get(str(exc), str(exc))
            self.err(path, f"condition {show(source)} does not parse: {hint}")
        return Condition(source, self.pos(path))

    # the whole file

    def build(self, raw: bytes) -> Sequence:
        data = self.doc.data
        steps = tuple(self.step(i, item) for i, item in enumerate(data["steps"]))
        source_hash = self.source_hash(raw)  # after the steps: building them finds the templates used
        return Sequence(
            name=data["name"],
            version=data["version"],
            path=self.path,
            source_hash=source_hash,
            description=data.get("description", ""),
            provider=data.get("provider"),
            senders=tuple(data.get("senders", ())),
            fields=tuple(FieldSpec(name, value == "required", self.pos(("fields", name), key=True))
                         for name, value in data.get("fields", {}).items()),
            calendar=self.calendar(data.get("calendar", {})),
            limits=self.limits(data.get("limits", {})),
            exits=tuple(self.exit(i, item) for i, item in enumerate(data.get("exit_when", ()))),
            steps=steps,
            templates_dir=str(self.templates_dir),
            pos=self.pos(("name",)),
            sender_positions=tuple(self.pos(("senders", i)) for i in range(len(data.get("senders", ())))),
            source=raw.decode("utf-8", errors="replace"),
            templates=tuple(sorted(self.template_texts.items())),
        )

    def source_hash(self, raw: bytes) -> str:
        """sha256 over the YAML bytes and, in name order, the name and bytes of each existing template
        the sequence uses, and of the templates those include or import (by a constant name).

        The hash names a version of the sequence (`runner.versions`): everything that decides what a
        lead is sent is in it. The texts are kept in `template_texts` for the version's record.
        """
        digest = hashlib.sha256(raw)
        pending = sorted(n for n, found in self.templates_found.items() if found)
        texts: dict[str, bytes] = {}
        while pending:
            name = pending.pop()
            if name in texts:
                continue
            data = self.template_bytes(name)
            if data is None:
                continue
            texts[name] = data
            pending.extend(n for n in _included(data) if n not in texts and self.template_exists(n))
        for name in sorted(texts):
            digest.update(b"\0" + name.encode("utf-8") + b"\0")
            digest.update(texts[name])
        self.template_texts = {name: data.decode("utf-8", errors="replace") for name, data in texts.items()}
        return digest.hexdigest()

    def template_exists(self, name: str) -> bool:
        if self.stored_templates is not None:
            return name in self.stored_templates
        return (self.templates_dir / name).is_file()

    def template_bytes(self, name: str) -> bytes | None:
        if self.stored_templates is not None:
            text = self.stored_templates.get(name)
            return None if text is None else text.encode("utf-8")
        try:
            return (self.templates_dir / name).read_bytes()
        except OSError as exc:  # vanished since it was found: say so rather than hash nothing
            self.err(("name",), f'cannot read template "{name}": {exc.strerror or exc}')
            return None

    # calendar, limits, exits

    def calendar(self, raw: dict[str, Any]) -> Calendar:
        base = ("calendar",)
        timezone = raw.get("timezone", "lead")
        if timezone not in CALENDAR_OWNERS:
            self.check_zone(base + ("timezone",), timezone, owners=True)
        fallback = raw.get("fallback", "UTC")
        self.check_zone(base + ("fallback",), fallback, owners=False)
        days = tuple(sorted({WEEKDAYS.index(d) for d in raw["days"]})) if "days" in raw else _DEFAULT_CALENDAR.days
        hours = self.hours(raw["hours"]) if "hours" in raw else _DEFAULT_CALENDAR.hours
        holidays = frozenset(self.holidays(raw.get("holidays", ())))
        return Calendar(timezone=timezone, fallback=fallback, days=days, hours=hours, holidays=holidays)

    def check_zone(self, path: Path, name: str, *, owners: bool) -> None:
        if _zone_exists(name):
            return
        guess = _close_zone(name)
        message = f"unknown time zone {show(name)}"
        if guess:
            message += f'; did you mean "{guess}"?'
        zone = 'an IANA zone like "Europe/Berlin"'
        expected = f"lead, sender or {zone}" if owners else zone
        self.err(path, f"{message} (expected {expected})")

    def hours(self, raw: list[str]) -> tuple[TimeRange, ...]:
        ranges: list[tuple[TimeRange, int]] = []
        for index, text in enumerate(raw):
            try:
                ranges.append((parse_time_range(text), index))
            except DurationError as exc:
                self.err(("calendar", "hours", index), str(exc))
        ranges.sort(key=lambda pair: (pair[0].start, pair[0].end))
        latest: tuple[TimeRange, int] | None = None  # the range reaching furthest so far
        for current, index in ranges:
            if latest is not None and current.start < latest[0].end:
                self.err(("calendar", "hours", index), f"{show(raw[index])} overlaps {show(raw[latest[1]])}")
            if latest is None or current.end > latest[0].end:
                latest = (current, index)
        return tuple(r for r, _ in ranges)

    def holidays(self, raw: Iterable[str]) -> Iterable[dt.date]:
        for index, text in enumerate(raw):
            try:
                yield dt.date.fromisoformat(text)
            except ValueError:
                self.err(("calendar", "holidays", index), f"{show(text)} is not a real date")

    def limits(self, raw: dict[str, Any]) -> Limits:
        per_action: dict[str, Limit] = {}
        for action in LIMITED_ACTIONS:
            if action in raw:
                per_action[action] = self.limit(("limits", action), raw[action])
        warmup = None
        if "warmup" in raw:
            warmup = Warmup(days=raw["warmup"]["days"], start=float(raw["warmup"].get("start", DEFAULT_WARMUP_START)))
        jitter = self.duration(("limits", "jitter"), raw["jitter"]) if "jitter" in raw else None
        return Limits(per_action=per_action, warmup=warmup, jitter=jitter)

    def limit(self, path: Path, raw: int | dict[str, Any]) -> Limit:
        if isinstance(raw, int):
            return Limit(daily=raw, pos=self.pos(path))
        gap = self.duration(path + ("min_gap",), raw["min_gap"]) if "min_gap" in raw else None
        return Limit(daily=raw["daily"], min_gap=gap, pos=self.pos(path))

    def exit(self, index: int, raw: str | dict[str, Any]) -> Exit:
        path: Path = ("exit_when", index)
        if isinstance(raw, str):
            return Exit(name=raw, outcome=raw, when=None, pos=self.pos(path))
        when = self.condition(path + ("when",), raw["when"])
        return Exit(name="custom", outcome=raw["end"], when=when, pos=self.pos(path))

    # steps

    def step(self, index: int, raw: dict[str, Any]) -> Step:
        path: Path = ("steps", index)
        step_id, pos = self.ids[index], self.pos(path)
        if raw.get("id") == NEXT:
            self.err(path + ("id",), f'"{NEXT}" is reserved (a branch\'s "default: next" means the following '
                                     "step); choose another id")
        if "action" in raw:
            return self.action(path, step_id, pos, raw)
        if "wait" in raw:
            return WaitStep(step_id, pos, self.duration(path + ("wait",), raw["wait"]), self.then(path, raw))
        if "wait_for" in raw:
            return WaitForStep(step_id, pos, event=raw["wait_for"],
                               timeout=self.duration(path + ("timeout",), raw["timeout"]),
                               on_timeout=self.on_timeout(path, raw), then=self.then(path, raw))
        if "branch" in raw:
            return self.branch(path, step_id, pos, raw["branch"])
        return EndStep(step_id, pos, raw["end"])

    def then(self, path: Path, raw: dict[str, Any]) -> Target | None:
        """Where an action or wait step goes afterwards: `goto`, `end`, or None (the next step)."""
        if "goto" in raw and "end" in raw:
            self.err(path + ("end",), 'a step goes on with either "goto" or "end", not both', key=True)
        if "goto" in raw:
            return self.goto(path + ("goto",), raw["goto"])
        if "end" in raw:
            return Target(end=raw["end"], pos=self.pos(path + ("end",)))
        return None

    def goto(self, path: Path, step_id: str) -> Target:
        if step_id == NEXT:
            self.err(path, f'"{NEXT}" is not a step; leave this out to go on with the following step')
        return Target(goto=step_id, pos=self.pos(path))

    def on_timeout(self, path: Path, raw: dict[str, Any]) -> Target | None:
        if "on_timeout" not in raw:
            return None
        value = raw["on_timeout"]
        if isinstance(value, str):
            return self.goto(path + ("on_timeout",), value)
        return Target(end=value["end"], pos=self.pos(path + ("on_timeout",)))

    def action(self, path: Path, step_id: str, pos: Pos, raw: dict[str, Any]) -> ActionStep:
        action = raw["action"]
        note = self.template_ref(path + ("note",), raw["note"]) if "note" in raw else None
        template: MessageTemplate | None = None
        variants: tuple[Variant, ...] = ()
        if action == "message":
            template, variants = self.message_body(path, raw)
            self.check_inmail(path, raw)
        if action == "notify":
            self.check_notify_url(path + ("url",), raw["url"])
        return ActionStep(
            step_id, pos, action,
            note=note,
            template=template,
            variants=variants,
            inmail=bool(raw.get("inmail", False)),
            subject=raw.get("subject"),
            tags=tuple(raw.get("tags", ())),
            url=raw.get("url"),
            headers_from_env=dict(raw.get("headers_from_env", {})),
            invite=raw.get("invite", "ours"),
            in_window=bool(raw.get("in_window", False)),
            then=self.then(path, raw),
        )

    def message_body(self, path: Path, raw: dict[str, Any]) -> tuple[MessageTemplate | None, tuple[Variant, ...]]:
        if "template" in raw and "variants" in raw:
            self.err(path + ("variants",), 'use either "template" or "variants", not both', key=True)
        elif "template" not in raw and "variants" not in raw:
            self.err(path, 'a message step needs "template" (one message) or "variants" (an A/B test)')
        template = self.message_template(path + ("template",), raw["template"]) if "template" in raw else None
        variants = self.variants(path + ("variants",), raw["variants"]) if "variants" in raw else ()
        return template, variants

    def message_template(self, path: Path, raw: str | dict[str, str]) -> MessageTemplate:
        if isinstance(raw, str):
            return MessageTemplate(default=self.template_ref(path, raw))
        return MessageTemplate(with_note=self.template_ref(path + ("with_note",), raw["with_note"]),
                               without_note=self.template_ref(path + ("without_note",), raw["without_note"]))

    def variants(self, path: Path, raw: list[dict[str, Any]]) -> tuple[Variant, ...]:
        out: list[Variant] = []
        first_line: dict[str, int] = {}
        for index, item in enumerate(raw):
            name_path = path + (index, "name")
            name = item["name"]
            if name in first_line:
                self.err(name_path, f'variant name "{name}" is used twice (first on line {first_line[name]})')
            else:
                first_line[name] = self.doc.pos(name_path)[0]
            template = self.message_template(path + (index, "template"), item["template"])
            out.append(Variant(name, template, item.get("weight", 1), self.pos(path + (index,))))
        return tuple(out)

    def check_inmail(self, path: Path, raw: dict[str, Any]) -> None:
        inmail = raw.get("inmail", False)
        if "subject" in raw and not inmail:
            self.err(path + ("subject",), 'a subject is only sent with an InMail; add "inmail: true" or remove it',
                     key=True)
        if inmail and "subject" not in raw:
            self.err(path + ("inmail",), 'an InMail needs a "subject"', key=True)

    def check_notify_url(self, path: Path, url: str) -> None:
        """Credentials in a URL would end up in the database, logs and exports: refuse them, unshown."""
        found = url_secrets(url)
        if found:
            self.err(path, f"the URL carries a credential ({', '.join(found)}); secrets do not belong in a sequence: "
                           "put the value in an environment variable and send it as a header with headers_from_env, "
                           "e.g. headers_from_env: {Authorization: CRM_TOKEN} (the URL is not shown)")

    def template_ref(self, path: Path, name: str) -> TemplateRef:
        ref = TemplateRef(name, self.pos(path))
        parts = pathlib.PurePosixPath(name).parts
        if name.startswith("/") or "\\" in name or ".." in parts:
            self.err(path, f"template names are relative to templates/ and stay inside it, got {show(name)}")
            return ref
        if name not in self.templates_found:
            self.templates_found[name] = self.template_exists(name)
        if not self.templates_found[name]:
            self.err(path, f"template {show(name)} not found in {self.shown_dir_of(name)}")
        return ref

    def shown_dir_of(self, name: str) -> str:
        """Where a template was looked for, as messages show it (as `runner.language.templatelint` does, so
        that `seqrun validate` prints one line when both notice a missing file)."""
        full = os.path.join(self.templates_dir, name)
        shown = full if os.path.isabs(self.path) else os.path.relpath(full)
        return (os.path.dirname(shown) or ".") + os.sep

    def branch(self, path: Path, step_id: str, pos: Pos, raw: list[dict[str, Any]]) -> BranchStep:
        cases: list[BranchCase] = []
        default: Target | None = None
        default_pos: Pos | None = None
        defaults = [i for i, item in enumerate(raw) if "default" in item]
        for index, item in enumerate(raw):
            item_path = path + ("branch", index)
            if "default" in item:
                if index == defaults[0]:
                    default, default_pos = self.branch_default(item_path, item), self.pos(item_path + ("default",))
                continue
            case = self.branch_case(item_path, item)
            if case is not None:
                cases.append(case)
        self.check_defaults(path, raw, defaults)
        return BranchStep(step_id, pos, tuple(cases), default, default_pos)

    def branch_case(self, path: Path, item: dict[str, Any]) -> BranchCase | None:
        if "when" not in item:
            self.err(path, 'a case needs "when" and then "goto" or "end" (or is the last item, "default")')
            return None
        when = self.condition(path + ("when",), item["when"])
        if "goto" in item and "end" in item:
            self.err(path + ("end",), 'a case goes on with either "goto" or "end", not both', key=True)
        if "goto" in item:
            return BranchCase(when, self.goto(path + ("goto",), item["goto"]))
        if "end" in item:
            return BranchCase(when, Target(end=item["end"], pos=self.pos(path + ("end",))))
        self.err(path, 'a case needs "goto" or "end" to say where to go when it matches')
        return None

    def branch_default(self, path: Path, item: dict[str, Any]) -> Target | None:
        for key in ("when", "goto", "end"):
            if key in item:
                self.err(path + (key,), f'the default item holds only "default"; move "{key}" to a case of its own',
                         key=True)
        value = item["default"]
        if value == NEXT:
            return None
        if isinstance(value, str):
            return Target(goto=value, pos=self.pos(path + ("default",)))
        return Target(end=value["end"], pos=self.pos(path + ("default",)))

    def check_defaults(self, path: Path, raw: list[dict[str, Any]], defaults: list[int]) -> None:
        if not defaults:
            self.err(path + ("branch",), "a branch needs a default case as its last item")
            return
        first_line = self.doc.pos(path + ("branch", defaults[0]))[0]
        for extra in defaults[1:]:
            self.err(path + ("branch", extra), f"a branch has one default case; the first is on line {first_line}")
        if defaults[0] != len(raw) - 1 and len(defaults) == 1:
            self.err(path + ("branch", defaults[0]),
                     "the default case must be the last item; the cases after it would never be checked")


# --- small cached lookups -----------------------------------------------------------------------


@functools.lru_cache(maxsize=1024)
def _compiled_condition(source: str) -> object:
    # Sequences in one project repeat the same conditions; compiling one is the slowest part of a load.
    return compile_condition(source)


@functools.lru_cache(maxsize=256)
def _zone_exists(name: str) -> bool:
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        return False
    return True


def _close_zone(name: str) -> str | None:
    zones = _all_zones()
    lowered = {z.lower(): z for z in zones}
    if name.strip().lower() in lowered:
        return lowered[name.strip().lower()]
    guess = difflib.get_close_matches(name, zones, n=1, cutoff=0.8)
    return guess[0] if guess else None


@functools.cache
def _all_zones() -> list[str]:
    return sorted(zoneinfo.available_timezones())


@functools.lru_cache(maxsize=1024)
def _included(data: bytes) -> tuple[str, ...]:
    """Templates a template includes, imports or extends by a constant name (a template that does
    not parse includes nothing here: template lint reports it)."""
    try:
        ast = environment().parse(data.decode("utf-8"))
    except (jinja2.TemplateSyntaxError, UnicodeDecodeError):
        return ()
    return tuple(n for n in meta.find_referenced_templates(ast) if isinstance(n, str))
