"""Diagnostics: positioned errors and warnings about user input, and the exceptions that carry them.

Every check in seqrun (YAML, schema, semantics, templates, CSV rows, project config) reports a
`Diagnostic`. They are collected, sorted by position and printed compiler-style:

    sequences/intro.yaml:14:5: error: steps[id=follow_up].wait: expected a duration like "3 days", got "3 dayz"

`UserError` is the one exception type that the CLI turns into exit code 1; nothing below the CLI
prints or exits.
"""
from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Literal

from runner.terminal import json_printable, printable

Severity = Literal["error", "warning"]


@dataclass(frozen=True, slots=True)
class Diagnostic:
    file: str
    line: int  # 1-based; 0 when the problem is about the whole file
    column: int  # 1-based; 0 when unknown
    severity: Severity
    message: str
    step: str | None = None  # the id of the step the problem is in, when there is one

    def sort_key(self) -> tuple[str, int, int, int, str]:
        return (self.file, self.line, self.column, 0 if self.severity == "error" else 1, self.message)

    def format(self) -> str:
        where = self.file
        if self.line:
            where += f":{self.line}"
            if self.column:
                where += f":{self.column}"
        return printable(f"{where}: {self.severity}: {self.message}")  # messages may quote a lead's text

    def to_json(self) -> dict[str, object]:
        return asdict(self)


def error(file: str, line: int, column: int, message: str, step: str | None = None) -> Diagnostic:
    return Diagnostic(file, line, column, "error", message, step)


def warning(file: str, line: int, column: int, message: str, step: str | None = None) -> Diagnostic:
    return Diagnostic(file, line, column, "warning", message, step)


def sort_diagnostics(diags: Iterable[Diagnostic]) -> list[Diagnostic]:
    """Sorted by file and position, duplicates removed (two checks may find the same thing)."""
    return sorted(set(diags), key=Diagnostic.sort_key)


def has_errors(diags: Iterable[Diagnostic]) -> bool:
    return any(d.severity == "error" for d in diags)


def format_text(diags: Iterable[Diagnostic]) -> str:
    return "\n".join(d.format() for d in diags)


def format_json(diags: Iterable[Diagnostic]) -> str:
    return json_printable(json.dumps([d.to_json() for d in diags], indent=2, ensure_ascii=False))


class SeqrunError(Exception):
    """Base of every error seqrun raises on purpose."""


class UserError(SeqrunError):
    """A mistake in the user's input or invocation. The CLI prints it and exits 1.

    Carries either a plain message or a list of diagnostics (or both: the message is a summary).
    """

    def __init__(self, message: str = "", diagnostics: Iterable[Diagnostic] = ()) -> None:
        self.diagnostics = sort_diagnostics(diagnostics)
        super().__init__(message or format_text(self.diagnostics))
        self.message = message

    def render(self) -> str:
        parts = [format_text(self.diagnostics)] if self.diagnostics else []
        if self.message:
            parts.append(printable(f"error: {self.message}", multiline=True))
        return "\n".join(parts)
