"""Loading sequence files: YAML -> schema -> the frozen `runner.language.model` records.

The pipeline for one file: read the bytes once; parse them with `yamlsrc` (safe, positioned); the
root must be a mapping; `schemacheck` (stops here on any error: the model cannot be built from a
file of the wrong shape); then build the model, checking what the schema cannot say (durations,
time zones, time ranges, dates, conditions that do not parse, template files that do not exist,
branch defaults, variant names, InMail subjects: `runner.language.builder`). Those value errors do not stop the build: the
model is still built, so that `seqrun validate` can report the semantic problems of the same file
in one run.

Two entry points for two kinds of callers:

- `load_sequence` / `load_paths` are for commands that run sequences: they include the semantic
  checks (`runner.language.checks`) and return a sequence only when it has no errors at all;
- `build_sequence` / `expand_paths` are the pieces `seqrun validate` combines itself, so that it
  can report everything about a file at once. Never hand an erroneous build to the engine.
"""
from __future__ import annotations

import dataclasses
import os
import pathlib
from collections.abc import Iterable, Mapping

from runner.language import checks
from runner.language.builder import Builder
from runner.language.diagnostics import Diagnostic, error, has_errors, sort_diagnostics
from runner.language.model import Sequence
from runner.language.paths import PROJECT_CONFIG, templates_dir_for
from runner.language.schemacheck import check_schema, show
from runner.language.yamlsrc import MAX_FILE_BYTES, load_yaml_bytes

SEQUENCE_SUFFIXES = (".yaml", ".yml")
# --- public entry points ------------------------------------------------------------------------


def load_sequence(path: str, display: str | None = None) -> tuple[Sequence | None, list[Diagnostic]]:
    """Load one sequence file with every structural and semantic check.

    Returns the sequence only when there is no error (warnings are returned beside it).
    `display` is the file name used in diagnostics (default: `path`).
    """
    seq, diags = _load_checked(path, display, None)
    return seq, sort_diagnostics(diags)


def load_paths(paths: list[str]) -> tuple[list[Sequence], list[Diagnostic], int]:
    """Load every sequence file named by `paths` (directories: their *.yaml / *.yml, recursively).

    Returns the sequences without errors, all diagnostics (sorted), and the number of files read.
    Sequence names must be unique across the loaded files.
    """
    files, diags = expand_paths(paths)
    loaded: list[Sequence] = []
    dirs = TemplatesDirs()
    for file in files:
        seq, found = _load_checked(file, None, dirs.get(file))
        diags += found
        if seq is not None:
            loaded.append(seq)
    diags += checks.check_project(loaded)
    return loaded, sort_diagnostics(diags), len(files)


def _load_checked(path: str, display: str | None,
                  templates_dir: pathlib.Path | None) -> tuple[Sequence | None, list[Diagnostic]]:
    seq, diags = build_sequence(path, display, templates_dir=templates_dir)
    if seq is not None:
        diags += checks.check_sequence(seq)
    return (None if has_errors(diags) else seq), diags


def expand_paths(paths: Iterable[str]) -> tuple[list[str], list[Diagnostic]]:
    """Files to load, named the way the user gave them, sorted within each directory.

    Directories are searched recursively for *.yaml / *.yml, skipping hidden entries and the
    project config (`seqrun.yaml`). A file named twice is loaded once.
    """
    files: list[str] = []
    diags: list[Diagnostic] = []
    seen: set[str] = set()
    for given in paths:
        if os.path.isdir(given):
            found = _sequence_files_in(given)
            if not found:
                diags.append(error(given, 0, 0, "no .yaml or .yml files in this directory"))
        elif os.path.exists(given):
            found = [given]
        else:
            diags.append(error(given, 0, 0, "no such file or directory"))
            found = []
        for file in found:
            real = os.path.realpath(file)
            if real not in seen:
                seen.add(real)
                files.append(file)
    return files, diags


class TemplatesDirs:
    """Caches the templates directory per sequence directory while loading many files."""

    def __init__(self) -> None:
        self._by_dir: dict[str, pathlib.Path] = {}

    def get(self, sequence_path: str) -> pathlib.Path:
        directory = os.path.dirname(os.path.abspath(sequence_path))
        if directory not in self._by_dir:
            self._by_dir[directory] = templates_dir_for(sequence_path)
        return self._by_dir[directory]


def build_sequence(path: str, display: str | None = None, *,
                   templates_dir: pathlib.Path | None = None) -> tuple[Sequence | None, list[Diagnostic]]:
    """Parse, schema-check and build one file, without the semantic checks.

    The sequence is built whenever the file has the right shape, even when some values are wrong
    (an unknown time zone, a missing template): the diagnostics say so. Use `load_sequence`
    unless you report diagnostics yourself.
    """
    name = display or path
    raw, diags = _read(path, name)
    if raw is None:
        return None, diags
    doc, diags = load_yaml_bytes(raw, name)
    if doc is None:
        return None, diags
    if not isinstance(doc.data, dict):
        line, col = doc.pos(())
        return None, [error(name, line, col, "expected a mapping of keys (version, name, steps, ...) at the "
                                             f"top of the file, got {_kind_of(doc.data, raw, name)}")]
    diags = check_schema(doc)
    if diags:
        return None, sort_diagnostics(diags)
    builder = Builder(doc, path, templates_dir or templates_dir_for(path))
    seq = builder.build(raw)
    return seq, sort_diagnostics(builder.diags)


def build_stored(source: str, templates: Mapping[str, str], *, path: str, templates_dir: str,
                 version_hash: str) -> tuple[Sequence | None, list[Diagnostic]]:
    """Rebuild a stored version of a sequence (`runner.versions`) from its text alone: its YAML and
    its templates as they were, whatever the files say now. Checked like a file; None on errors."""
    raw = source.encode("utf-8")
    doc, diags = load_yaml_bytes(raw, path)
    if doc is None or not isinstance(doc.data, dict):
        return None, diags
    diags = check_schema(doc)
    if diags:
        return None, sort_diagnostics(diags)
    builder = Builder(doc, path, pathlib.Path(templates_dir), stored_templates=templates)
    seq = builder.build(raw)
    diags = builder.diags + checks.check_sequence(seq)
    if has_errors(diags):
        return None, sort_diagnostics(diags)
    # The stored hash names the version, even if a later seqrun were to hash the same text otherwise.
    return dataclasses.replace(seq, source_hash=version_hash), sort_diagnostics(diags)


# --- reading ------------------------------------------------------------------------------------


def _sequence_files_in(directory: str) -> list[str]:
    found: list[tuple[tuple[str, ...], str]] = []
    for root, dirs, names in os.walk(directory):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        rel_root = os.path.relpath(root, directory)
        for filename in names:
            if filename.startswith(".") or filename == PROJECT_CONFIG:
                continue
            if filename.endswith(SEQUENCE_SUFFIXES):
                rel = filename if rel_root == "." else os.path.join(rel_root, filename)
                found.append((pathlib.PurePath(rel).parts, os.path.join(directory, rel)))
    return [file for _, file in sorted(found)]


def _read(path: str, name: str) -> tuple[bytes | None, list[Diagnostic]]:
    try:
        with open(path, "rb") as fh:
            # One byte more than allowed, so that yamlsrc can tell "too big" from "exactly at the limit".
            return fh.read(MAX_FILE_BYTES + 1), []
    except IsADirectoryError:
        return None, [error(name, 0, 0, "is a directory, not a sequence file")]
    except OSError as exc:
        return None, [error(name, 0, 0, f"cannot read file: {exc.strerror or exc}")]


def _kind_of(value: object, raw: bytes, name: str) -> str:
    if isinstance(value, list):
        return "a list"
    if not isinstance(value, str):
        return f"the value {show(value)}"
    # A whole text file (a CSV given in place of a sequence) reads as one long string: quote its first
    # line, not the file.
    lines = raw.decode("utf-8", "replace").splitlines()
    number, first = next(((i, line.strip()) for i, line in enumerate(lines, 1) if line.strip()), (1, value))
    if len(lines) <= 1 and len(value) <= _QUOTED:
        return f"the value {show(value)}"
    shown = f"text starting {show(first if len(first) <= _QUOTED else first[:_QUOTED] + '…')}"
    if len(lines) > 1:
        shown += f" (line {number} of {len(lines)})"
    if name.lower().endswith(".csv") or "linkedin_profile_url" in first:
        shown += "; is this a lead CSV? Give the sequence's YAML file here"
    return shown


_QUOTED = 60  # characters of a line quoted in a message
