"""Checking a parsed sequence file against the JSON schema, with messages written for people.

The schema (`runner/data/sequence.schema.json`) is compiled once. jsonschema's own messages
("'tues' is not one of [...]", "{...} is not valid under any of the given schemas") are rewritten
into seqrun's compiler style, positioned at the offending value (unknown keys: at the key):

    steps[id=follow_up]: unknown key "wiat" (expected one of: id, wait, goto, end)
    calendar.days[2]: expected one of mon, tue, wed, thu, fri, sat, sun, got "tues"

Three things keep the output short and to the point: `version` is checked first (a file in another
version of the language is not worth checking further); the shape of each step (a mapping with
exactly one kind key) is checked here before the schema, and a step with the wrong shape gets one
message instead of the schema's cascade; and for `oneOf`/`anyOf` only the branch matching the
value's type is reported.

Knowing each step's kind also makes checking fast: every step is validated directly against its
kind's definition (`$defs/wait_step`, ...) instead of through the schema's chain of if/then rules,
and a step already seen valid in this process (`{action: visit}` recurs in every file) is not
validated again. 200 files take a few hundred milliseconds (bench/bench_validate.py).

This module also owns how paths are named in messages (`steps[id=visit+1].wait`,
`variants[name=a].template`), including the ids generated for steps without one, so the loader and
the semantic checks name things alike.
"""
from __future__ import annotations

import difflib
import functools
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from importlib import resources
from typing import Any

from jsonschema import Draft202012Validator, ValidationError

from runner.language.diagnostics import Diagnostic, error
from runner.language.durations import DurationError, parse_duration, parse_time_range
from runner.language.model import ACTIONS
from runner.language.urls import redact_url
from runner.language.yamlsrc import Path, YamlDoc

#: Keys that say what kind of step a mapping is, in the schema's order of precedence. `end` is a
#: kind only on its own; next to another kind key it says where to go afterwards.
STEP_KINDS: tuple[str, ...] = ("action", "wait", "wait_for", "branch", "end")
_EXCLUSIVE_KINDS = STEP_KINDS[:-1]

SUPPORTED_VERSION = 1
FIRST_STEP_ID = "start"

_DURATION_KEYS = {"wait", "timeout", "min_gap", "jitter"}
_TEMPLATE_KEYS = {"note", "template", "with_note", "without_note"}
_TARGET_KEYS = {"goto", "on_timeout", "default"}
TYPE_WORDS = {
    "integer": "a whole number",
    "number": "a number",
    "string": "text",
    "array": "a list",
    "object": "a mapping (key: value pairs)",
    "boolean": "true or false",
    "null": "nothing",
}
_ITEM_WORDS = {"steps": "step", "variants": "variant", "branch": "case"}


@functools.cache
def load_schema() -> dict[str, Any]:
    """The sequence schema shipped in the package."""
    text = resources.files("runner").joinpath("data/sequence.schema.json").read_text(encoding="utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


@functools.cache
def _validators() -> tuple[Draft202012Validator, dict[str, Draft202012Validator]]:
    """A validator for the file without its steps, and one per step definition.

    The schema dispatches each step on its kind key with a chain of if/then rules, which costs
    jsonschema most of its time. `check_step_shapes` has already found each step's kind, so every
    step is validated directly against its definition: the same rules, a fraction of the work.
    """
    schema = load_schema()
    Draft202012Validator.check_schema(schema)
    steps = {k: v for k, v in schema["properties"]["steps"].items() if k != "items"}
    top = {**schema, "properties": {**schema["properties"], "steps": steps}}
    defs = schema["$defs"]
    per_step = {name: Draft202012Validator({"$defs": defs, "$ref": f"#/$defs/{name}"})
                for name in defs if name == "step" or name.endswith("_step")}
    return Draft202012Validator(top), per_step


# --- naming -------------------------------------------------------------------------------------


def step_ids(raw_steps: object) -> list[str]:
    """The id of every item of a raw `steps` list: its own `id`, or a generated one.

    A step without an id is named after the previous explicit id plus `+N`, N counting the id-less
    steps since it (`visit+2`); before any explicit id the first step is `start`, then `start+1`.
    Works on malformed input too (anything that is not a text id counts as missing), because
    messages about malformed steps need names as well.
    """
    if not isinstance(raw_steps, list):
        return []
    ids: list[str] = []
    base, count = None, 0
    for item in raw_steps:
        own = item.get("id") if isinstance(item, dict) else None
        if isinstance(own, str) and own:
            base, count = own, 0
            ids.append(own)
        elif base is None:
            base, count = FIRST_STEP_ID, 0
            ids.append(FIRST_STEP_ID)
        else:
            count += 1
            ids.append(f"{base}+{count}")
    return ids


class PathNames:
    """Names paths inside one document the way messages show them.

    `("steps", 3, "wait")` -> `steps[id=follow_up].wait`; A/B variants by their name
    (`variants[name=a].template`); other list items by index (`calendar.hours[1]`).
    """

    def __init__(self, data: Any) -> None:
        self.data = data
        self.ids = step_ids(data.get("steps")) if isinstance(data, dict) else []

    def describe(self, path: Path) -> str:
        out, node, parent_key = "", self.data, None
        for i, part in enumerate(path):
            if isinstance(part, int):
                out += self._item_label(i, part, node, parent_key)
            else:
                out += f".{part}" if out else part
                parent_key = part
            node = _child(node, part)
        return out

    def _item_label(self, depth: int, index: int, items: Any, key: str | None) -> str:
        if depth == 1 and key == "steps" and index < len(self.ids):
            return f"[id={self.ids[index]}]"
        if key == "variants" and isinstance(items, list) and index < len(items):
            name = items[index].get("name") if isinstance(items[index], dict) else None
            if isinstance(name, str) and name:
                return f"[name={name}]"
        return f"[{index}]"

    def step(self, path: Path) -> str | None:
        """The id of the step a path is inside, if any."""
        if len(path) >= 2 and path[0] == "steps" and isinstance(path[1], int) and path[1] < len(self.ids):
            return self.ids[path[1]]
        return None


def _child(node: Any, part: str | int) -> Any:
    if isinstance(part, int):
        return node[part] if isinstance(node, list) and part < len(node) else None
    return node.get(part) if isinstance(node, dict) else None


# Prefixes of well-known secret formats: Stripe-style keys, Slack, GitHub, JWTs, LinkedIn li_at cookies.
SECRET_PREFIXES = ("sk_", "sk-", "pk_", "rk_", "xox", "ghp_", "gho_", "eyJ", "AQED", "Bearer ")
ENV_NAME = re.compile(r"[A-Z_][A-Z0-9_]*")


def looks_like_secret(value: str) -> bool:
    """Heuristic: known secret prefixes, or long random-looking text mixing cases or digits."""
    if value.startswith(SECRET_PREFIXES):
        return True
    mixed = any(c.islower() for c in value) + any(c.isupper() for c in value) + any(c.isdigit() for c in value)
    return len(value) >= 20 and mixed >= 2 and not ENV_NAME.fullmatch(value)


def secret_name_message(value: object, example: str) -> str:
    """For a place that takes the *name* of an environment variable: never echo what was found there,
    since anything that is not a variable name may well be the secret itself."""
    if isinstance(value, str) and looks_like_secret(value):
        return ("this looks like a secret value, not the name of an environment variable; put the value in an "
                f'environment variable and write its name here, like "{example}" (the value is not shown)')
    return ('expected the name of an environment variable: upper-case letters, digits and "_", '
            f'like "{example}" (the value is not shown)')


def _pasted_secret(value: str) -> bool:
    """Stricter than `looks_like_secret`, for values found anywhere (time zones, conditions, template
    names must still be shown): a known prefix, or one random-looking word."""
    if value.startswith(SECRET_PREFIXES):
        return True
    if any(c.isspace() for c in value) or "/" in value:
        return False
    digits, lower, upper = (any(c.isdigit() for c in value), any(c.islower() for c in value),
                            any(c.isupper() for c in value))
    return (len(value) >= 20 and digits and lower and upper) or (len(value) >= 32 and value.isalnum() and digits
                                                                  and (lower or upper))


def show(value: object) -> str:
    """A value as messages show what was found: text quoted (unless it looks like a pasted secret,
    which is never repeated), containers by their kind."""
    if isinstance(value, str):
        if _pasted_secret(value):
            return "a value that looks like a secret (not shown)"
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "nothing"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return repr(value)


def plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


# --- the check ----------------------------------------------------------------------------------


def check_schema(doc: YamlDoc) -> list[Diagnostic]:
    """Diagnostics for everything the schema rejects in a file whose root is a mapping."""
    data = doc.data
    version = _check_version(doc)
    if version is not None:
        return [version]
    report = _Reporter(doc)
    skipped = _check_step_shapes(data.get("steps"), report)
    leaves = list(_flatten(_schema_errors(data, skipped)))
    unknown_at = {tuple(e.absolute_path) for e in leaves if e.validator == "additionalProperties"}
    for err in leaves:
        # A key that is missing because it is misspelt is reported once, as the unknown key.
        if err.validator == "required" and tuple(err.absolute_path) in unknown_at:
            continue
        _convert(err, report)
    return report.diags


def _schema_errors(data: dict[str, Any], skipped: set[int]) -> Iterator[ValidationError]:
    """jsonschema's errors for the file, each step checked against its own definition."""
    top, per_step = _validators()
    yield from top.iter_errors(data)
    steps = data.get("steps")
    if not isinstance(steps, list):
        return
    for index, step in enumerate(steps):
        if index in skipped:
            continue
        definition = _definition_of(step)
        if not _known_valid(definition, json.dumps(step, sort_keys=True)):
            yield from _step_errors(per_step[definition], step, index)


def _check_version(doc: YamlDoc) -> Diagnostic | None:
    if "version" not in doc.data:
        return None  # the schema reports the missing key together with everything else
    value = doc.data["version"]
    if type(value) is int and value == SUPPORTED_VERSION:
        return None
    line, col = doc.pos(("version",))
    return error(doc.file, line, col,
                 f"version: unsupported version {show(value)}; this seqrun reads version {SUPPORTED_VERSION}")


class _Reporter:
    """Collects diagnostics for one file, naming paths and finding positions."""

    def __init__(self, doc: YamlDoc) -> None:
        self.doc, self.names = doc, PathNames(doc.data)
        self.diags: list[Diagnostic] = []

    def add(self, path: Path, message: str, *, key: bool = False) -> None:
        """Report at the value (or with key=True at the key, which the message then names itself,
        so the label stops at the mapping that holds it)."""
        line, col = self.doc.pos(path, key=key)
        label = self.names.describe(path[:-1] if key else path)
        text = f"{label}: {message}" if label else message
        self.diags.append(error(self.doc.file, line, col, text, self.names.step(path)))


# --- step shapes --------------------------------------------------------------------------------


def _check_step_shapes(raw_steps: object, report: _Reporter) -> set[int]:
    """Report steps that are not a mapping with one kind key; return their indices."""
    if not isinstance(raw_steps, list):
        return set()
    bad: set[int] = set()
    for index, item in enumerate(raw_steps):
        path: Path = ("steps", index)
        if not isinstance(item, dict):
            report.add(path, f"expected a step mapping like {{action: visit}}, got {show(item)}")
        elif not any(k in item for k in STEP_KINDS):
            _report_kindless(item, path, report)
        elif sum(k in item for k in _EXCLUSIVE_KINDS) > 1:
            kinds = [k for k in _EXCLUSIVE_KINDS if k in item]
            listed = ", ".join(f'"{k}"' for k in kinds[:-1]) + f' and "{kinds[-1]}"'
            report.add(path + (kinds[1],),
                       f"a step does one thing, but this one has {listed}; split it into separate steps",
                       key=True)
        else:
            continue
        bad.add(index)
    return bad


def _report_kindless(item: dict[str, Any], path: Path, report: _Reporter) -> None:
    known = _all_step_keys()
    for key in item:
        if key in known:
            continue
        guess = difflib.get_close_matches(key, STEP_KINDS, n=1, cutoff=0.6)
        if guess:
            expected = ", ".join(_kind_schema(guess[0], item[key])["properties"])
            report.add(path + (key,), f'unknown key "{key}" (expected one of: {expected})', key=True)
            return
    report.add(path, "a step needs one of: " + ", ".join(STEP_KINDS))


def _kind_schema(kind: str, value: object) -> dict[str, Any]:
    defs: dict[str, dict[str, Any]] = load_schema()["$defs"]
    if kind == "action":
        return defs[f"{value}_step"] if value in ACTIONS else defs["visit_step"]
    return defs[f"{kind}_step"]


@functools.cache
def _all_step_keys() -> frozenset[str]:
    defs = load_schema()["$defs"]
    keys: set[str] = set()
    for name, sub in defs.items():
        if name.endswith("_step"):
            keys.update(sub.get("properties", {}))
    return frozenset(keys)


def _definition_of(step: dict[str, Any]) -> str:
    """The schema definition a step of the right shape is checked against."""
    if "action" in step:
        # An unknown action goes through the general rule, which reports just the action enum.
        return f"{step['action']}_step" if step["action"] in ACTIONS else "step"
    return next(f"{kind}_step" for kind in STEP_KINDS if kind in step)


@functools.lru_cache(maxsize=4096)
def _known_valid(definition: str, canonical: str) -> bool:
    """Steps repeat across the files of a project (`{action: visit}`, `wait: 3 days`): check each once."""
    return bool(_validators()[1][definition].is_valid(json.loads(canonical)))


def _step_errors(validator: Draft202012Validator, step: dict[str, Any], index: int) -> Iterator[ValidationError]:
    for err in validator.iter_errors(step):
        err.path.extendleft((index, "steps"))  # make the path absolute within the file
        yield err


# --- jsonschema errors --------------------------------------------------------------------------


def error_parts(err: ValidationError) -> tuple[Any, Any, Any, Mapping[str, Any]]:
    """(validator, its value in the schema, the checked value, the schema) of a raised error: JSON values.
    jsonschema's types allow its "unset" marker on each of them; an error a validator raised has them all."""
    schema = err.schema
    return err.validator, err.validator_value, err.instance, schema if isinstance(schema, Mapping) else {}


def _flatten(errors: Iterable[ValidationError]) -> Iterator[ValidationError]:
    """Leaf errors, descending into the relevant branch of every oneOf/anyOf."""
    for err in errors:
        if err.validator in ("oneOf", "anyOf") and err.context:
            yield from _flatten(_relevant_branch(err))
        else:
            yield err


def _relevant_branch(err: ValidationError) -> list[ValidationError]:
    """The errors of the branch meant for this kind of value (the first branch when none is)."""
    _, branches, instance, _ = error_parts(err)
    chosen = next((i for i, b in enumerate(branches) if _accepts_type(b, instance)), 0)
    return [c for c in err.context if c.relative_schema_path and c.relative_schema_path[0] == chosen]


def _accepts_type(schema: dict[str, Any], value: object) -> bool:
    if "type" in schema:
        return _is_type(value, schema["type"])
    if "enum" in schema:
        return any(_same_type(value, v) for v in schema["enum"])
    return True


def _is_type(value: object, name: str) -> bool:
    if name == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if name == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    expected = {"string": str, "array": list, "object": dict, "boolean": bool, "null": type(None)}[name]
    return isinstance(value, expected)


def _same_type(a: object, b: object) -> bool:
    return type(a) is type(b)


def _convert(err: ValidationError, report: _Reporter) -> None:
    path: Path = tuple(err.absolute_path)
    validator, value, instance, schema = error_parts(err)
    if validator == "additionalProperties":
        expected = ", ".join(schema.get("properties", {}))
        for key in instance:
            if key not in schema.get("properties", {}):
                report.add(path + (key,), f'unknown key "{key}" (expected one of: {expected})', key=True)
    elif "propertyNames" in err.relative_schema_path:
        report.add(path + (instance,), f'field name {show(instance)} must be lower-case letters, digits and "_", '
                                       f'like "company_name"', key=True)
    elif validator == "required":
        missing = [k for k in value if isinstance(instance, dict) and k not in instance]
        for key in missing:
            report.add(path, f'missing required key "{key}"')
    elif validator == "type":
        report.add(path, _typed_value_message(path, instance) or simple_message(err) or err.message)
    elif validator == "pattern":
        report.add(path, _pattern_message(path, instance))
    elif validator == "minItems":
        word = _ITEM_WORDS.get(_last_key(path), "item")
        report.add(path, f"expected at least {plural(value, word)}, got {len(instance)}")
    elif validator == "uniqueItems":
        _report_duplicate_items(path, instance, report)
    else:  # a constraint with no special wording here: jsonschema's text is still accurate
        report.add(path, simple_message(err) or err.message)


def simple_message(err: ValidationError) -> str | None:
    """Plain words for the constraints whose message does not depend on where they are (shared with
    the seqrun.yaml checks in `runner.project.config`); None for the others."""
    validator, value, instance, schema = error_parts(err)
    if validator == "enum":
        return "expected one of " + ", ".join(str(v) for v in value) + f", got {show(instance)}"
    if validator == "const":
        return f"expected {show(value)}, got {show(instance)}"
    if validator == "type":
        return f"expected {TYPE_WORDS.get(value, value)}, got {show(instance)}"
    if validator == "minLength":
        return "expected non-empty text"
    if validator in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        return _range_message(validator, value, schema, instance)
    return None


def _last_key(path: Path) -> str:
    return next((p for p in reversed(path) if isinstance(p, str)), "")


def _report_duplicate_items(path: Path, items: list[Any], report: _Reporter) -> None:
    seen: list[Any] = []
    for index, item in enumerate(items):
        if item in seen:
            report.add(path + (index,), f"{show(item)} is listed twice")
        else:
            seen.append(item)


def _range_message(validator: str, bound: object, schema: Mapping[str, Any], instance: object) -> str:
    kind = "a whole number" if schema.get("type") == "integer" else "a number"
    relation = {"minimum": "of at least", "maximum": "of at most",
                "exclusiveMinimum": "above", "exclusiveMaximum": "below"}[validator]
    return f"expected {kind} {relation} {bound}, got {show(instance)}"


def _typed_value_message(path: Path, value: object) -> str | None:
    """Durations and time ranges explain themselves best through their own parsers."""
    key = _last_key(path)
    parser = parse_duration if key in _DURATION_KEYS else parse_time_range if key == "hours" else None
    if parser is None:
        return None
    try:
        parser(value)
    except DurationError as exc:
        return str(exc)
    return None


def _pattern_message(path: Path, value: str) -> str:
    key = _last_key(path)
    parent = path[-2] if len(path) >= 2 else None
    typed = _typed_value_message(path, value)
    if typed is not None:
        return typed
    if key in _TEMPLATE_KEYS:
        return ('expected a template file name like "intro.j2" (ending in .j2, .jinja, .jinja2 or .txt), '
                f"got {show(value)}")
    if key in _TARGET_KEYS:
        if "+" in value:
            return (f"generated step ids like {show(value)} cannot be jumped to; "
                    f'give that step an id (e.g. "id: follow_up") and use it')
        return f'expected a step id (lower-case letters, digits, "_" and "-"), got {show(value)}'
    if key == "holidays":
        return f'expected a date like "2026-12-24", got {show(value)}'
    if key == "url":
        return f'expected an http:// or https:// URL, got {show(redact_url(value))}'
    if key == "tags":
        return f'expected a tag of letters, digits, "_", ":" and "-", got {show(value)}'
    if parent == "headers_from_env":
        return secret_name_message(value, "CRM_API_KEY")
    if key == "name" and len(path) > 1:
        return f'expected a variant name of lower-case letters, digits, "_" and "-", got {show(value)}'
    words = {"id": "a step id", "end": "an outcome name", "name": "a name"}.get(key, "a name")
    return f'expected {words} of lower-case letters, digits, "_" and "-" starting with a letter, got {show(value)}'
