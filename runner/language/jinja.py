"""The one Jinja environment seqrun uses for message templates and `when` conditions.

Sandboxed (templates come from users and may be shared), StrictUndefined (a missing variable is an
error, never an empty string: no "Hi ,"), plain text without autoescaping, tidy whitespace
(`trim_blocks`, `lstrip_blocks`, and the final newline dropped). Filters for the names people have:

- `first_name`: "Dr. Jane van der Berg" -> "Jane"; "李雷" -> "李雷"; "" -> "" (combine with `fallback`)
- `last_name`: the last word of a full name
- `fallback(value, default)`: `default` when value is missing, None or blank
- `company`: trims legal suffixes ("Acme GmbH" -> "Acme", "Foo, Inc." -> "Foo")
"""
from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

import jinja2
from jinja2 import meta, nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment

if TYPE_CHECKING:
    from collections.abc import Iterator

_TITLES = {"mr", "mrs", "ms", "miss", "dr", "prof", "sir", "dame", "mx", "herr", "frau", "m", "mme", "mlle"}
_CASED_RUN = re.compile(r"[^\W\d_]+")  # a run of letters, between hyphens and apostrophes
_SUFFIXES = re.compile(
    r"[\s,]+&?\s*(inc|inc\.|llc|l\.l\.c\.|ltd|ltd\.|limited|gmbh|ag|sa|s\.a\.|sas|sarl|bv|b\.v\.|nv|plc|corp|corp\.|"
    r"corporation|co|co\.|company|oy|ab|as|a/s|srl|s\.r\.l\.|spa|s\.p\.a\.|kg|ug|pty|pty\.? ltd\.?|pvt|pvt\.|"
    r"private|s\.l\.|sl|k\.k\.|kk|llp|lp)$",
    re.IGNORECASE,
)


def _is_blank(value: Any) -> bool:
    return value is None or isinstance(value, jinja2.Undefined) or (isinstance(value, str) and not value.strip())


def fallback(value: Any, default: Any = "") -> Any:
    """`{{ lead.first_name | fallback("there") }}`: the default for missing, None or blank values."""
    return default if _is_blank(value) else value


def first_name(value: Any) -> str:
    if _is_blank(value):
        return ""
    words = [w for w in re.split(r"\s+", str(value).strip()) if w]
    while words and words[0].rstrip(".").lower() in _TITLES:
        words.pop(0)  # a lone title ("Dr.") is no name: "" lets `fallback` step in
    word = words[0] if words else ""
    # "JANE" / "jane" -> "Jane", "JEAN-PIERRE" -> "Jean-Pierre", "o'neil" -> "O'Neil"; leave mixed
    # case ("McKenzie") alone. Scripts without case ("李雷") are neither upper nor lower.
    if word.isupper() or word.islower():
        word = _CASED_RUN.sub(lambda m: m.group(0)[:1].upper() + m.group(0)[1:].lower(), word)
    return word.rstrip(",")


def last_name(value: Any) -> str:
    if _is_blank(value):
        return ""
    words = str(value).strip().split()
    return words[-1] if len(words) > 1 else ""


def company(value: Any) -> str:
    if _is_blank(value):
        return ""
    text = str(value).strip()
    # Suffixes stack ("Kestrel Software Pvt. Ltd.", "Bauer GmbH & Co. KG"): strip until none is left.
    stripped = text
    while True:
        shorter = _SUFFIXES.sub("", stripped).strip()
        if shorter == stripped or not shorter:
            break
        stripped = shorter
    return stripped or text


FILTERS: dict[str, Callable[..., Any]] = {
    "first_name": first_name,
    "last_name": last_name,
    "fallback": fallback,
    "company": company,
}


@functools.cache
def environment(templates_dir: str | None = None) -> ImmutableSandboxedEnvironment:
    """The shared environment; with a directory, templates are loaded from it by name."""
    env = ImmutableSandboxedEnvironment(
        loader=jinja2.FileSystemLoader(templates_dir, encoding="utf-8") if templates_dir else None,
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=False,
        auto_reload=False,
    )
    env.filters.update(FILTERS)
    return env


class ConditionError(ValueError):
    """A `when` condition that does not compile; `.lineno` is relative to the expression."""


def compile_condition(source: str) -> Callable[..., Any]:
    """Compile a `when` expression once; call the result with the context as keyword arguments."""
    env = environment()
    try:
        expr = env.compile_expression(source, undefined_to_none=False)
    except jinja2.TemplateSyntaxError as exc:
        raise ConditionError(exc.message or "invalid expression") from None
    return expr


def expression_names(source: str) -> set[str]:
    """Top-level names an expression or template reads (e.g. {"connected", "lead"})."""
    env = environment()
    try:
        ast = env.parse(source if "{" in source else "{{ (" + source + ") }}")
    except jinja2.TemplateSyntaxError:
        return set()
    return set(meta.find_undeclared_variables(ast))


def attribute_uses(ast: nodes.Template, name: str) -> list[tuple[str, int]]:
    """Attributes read from a top-level name: `lead.company_name` -> [("company_name", lineno)].

    Item access with a constant key (`lead["company_name"]`) counts too.
    """
    uses: list[tuple[str, int]] = []
    # find_all with a tuple of types is typed as yielding their common base (Expr): name the union.
    for node in cast("Iterator[nodes.Getattr | nodes.Getitem]", ast.find_all((nodes.Getattr, nodes.Getitem))):
        target = node.node
        if isinstance(target, nodes.Name) and target.name == name:
            if isinstance(node, nodes.Getattr):
                uses.append((node.attr, node.lineno))
            elif isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str):
                uses.append((node.arg.value, node.lineno))
    return uses
