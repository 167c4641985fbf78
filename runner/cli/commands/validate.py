"""`seqrun validate`: check sequence files (and their templates) and report every problem at once.

Output is compiler-style, one line per problem, sorted by file and position, then a summary:

    sequences/intro.yaml:14:5: error: steps[id=follow_up].wait: expected a duration like "3 days", ...
    1 error in 3 files

or, with `--format json`, a list of {file, line, column, severity, message, step} and nothing else.
Exit 0 when there is no error (warnings allowed unless `--strict`), 1 otherwise.
"""
from __future__ import annotations

import os
import pathlib

import click

from runner.language.checks import check_project, check_sequence
from runner.language.diagnostics import (
    Diagnostic,
    UserError,
    error,
    format_json,
    format_text,
    has_errors,
    sort_diagnostics,
    warning,
)
from runner.language.loader import TemplatesDirs, build_sequence, expand_paths
from runner.language.model import Sequence
from runner.language.schemacheck import plural


def validate_paths(paths: list[str], *, leads_csv: str | None = None,
                   db_url: str | None = None) -> tuple[list[Diagnostic], int]:
    """Every diagnostic for the sequence files named by `paths`, and how many files were checked.

    Each file is built even when some of its values are wrong, so its semantic and template
    problems are reported in the same run. Templates are rendered for the rows of `leads_csv` only
    for sequences with no error of their own (a broken sequence would fail on every row). Sequences
    without errors are compared with the leads running in the project's database, when it has one
    (`check_running_leads`).
    """
    from runner.language.templates import check_sequence_templates
    from runner.project.templaterows import check_templates_for_leads

    files, diags = expand_paths(paths)
    dirs = TemplatesDirs()
    built: list[Sequence] = []
    for file in files:
        seq, found = build_sequence(file, templates_dir=dirs.get(file))
        if seq is not None:
            found += check_sequence(seq)
            found += check_sequence_templates(seq)
            if leads_csv is not None and not has_errors(found):
                found += check_templates_for_leads(seq, leads_csv)
            built.append(seq)
        diags += found
    diags += check_project(built)
    diags += check_senders(built)
    broken = {d.file for d in diags if d.severity == "error"}
    diags += check_running_leads([s for s in built if s.path not in broken], db_url)
    return sort_diagnostics(diags), len(files)


def check_running_leads(seqs: list[Sequence], db_url: str | None) -> list[Diagnostic]:
    """What an edit means for the leads already running (runner.versions.edit_report), for each
    project whose database exists: `--db`, else as the other commands find it. A database is never
    created here (validate runs in CI, where there is none)."""
    from runner.project.config import find_config
    from runner.store import db, open_store
    from runner.store.backends import postgres
    from runner.store.db import database_file
    from runner.versions import edit_report

    by_url: dict[str, list[Sequence]] = {}
    urls: dict[pathlib.Path | None, str | None] = {}  # per seqrun.yaml: most files share one
    for seq in seqs:
        found = find_config(seq.path)
        if found not in urls:
            urls[found] = _database_of(found, db_url)
        url = urls[found]
        if url is not None:
            by_url.setdefault(url, []).append(seq)
    diags: list[Diagnostic] = []
    for url, group in by_url.items():
        path = database_file(url)
        if path is None:
            path = postgres.redact(url)  # a Postgres database: it exists if it can be opened
        elif path == ":memory:" or not os.path.isfile(path):
            continue
        try:
            open_store(url)
            diags += edit_report({s.name: s for s in group})
        except UserError as exc:  # a database validate cannot read is no reason to fail the files
            diags.append(warning(path, 0, 0, f"the sequences were not compared with the leads in this database: "
                                             f"{exc.message or exc}"))
        finally:
            db.close()
    return diags


def check_senders(seqs: list[Sequence]) -> list[Diagnostic]:
    """The problems of each project's seqrun.yaml (once per file, whether or not a sequence names a
    sender: `run` and `simulate` refuse a broken one), names in a sequence's `senders:` that are not
    senders of it, and steps their providers cannot perform."""
    from runner.project.config import find_config, load_config

    diags: list[Diagnostic] = []
    configs: dict[str, object] = {}
    for seq in seqs:
        found = find_config(seq.path)
        if found is None:
            continue
        key = str(found)
        if key not in configs:
            try:
                configs[key] = load_config(found)
                diags += configs[key].warnings  # type: ignore[attr-defined]
            except UserError as exc:  # the config's own problems, reported once
                configs[key] = None
                diags += exc.diagnostics
        config = configs[key]
        if config is None:
            continue
        from runner.project.capabilities import check_capabilities

        diags += check_capabilities(seq, config.senders)  # type: ignore[attr-defined]
        defined = [s.name for s in config.senders]  # type: ignore[attr-defined]
        for name, pos in zip(seq.senders, seq.sender_positions, strict=False):
            if name not in defined:
                diags.append(error(pos.file, pos.line, pos.column,
                                   f'senders: "{name}" is not a sender in {found.name} '
                                   f"(defined: {', '.join(defined) or 'none'})"))
    return diags


def _database_of(config: pathlib.Path | None, db_url: str | None) -> str | None:
    """The database of the project whose seqrun.yaml is `config`, as `run` finds it (`--db` first)."""
    from runner.project.config import load_config
    from runner.store.db import resolve_db_url

    if config is None:
        return resolve_db_url(db_url) if db_url is not None else None
    try:
        return load_config(config).database_url(db_url)
    except UserError:  # the config's own problems are reported by check_senders
        return None


def summary(diags: list[Diagnostic], files: int) -> str:
    """`2 errors, 1 warning in 3 files`, or `3 files ok`."""
    errors = sum(d.severity == "error" for d in diags)
    warnings = len(diags) - errors
    if not diags:
        return f"{plural(files, 'file')} ok"
    counts = [plural(n, word) for n, word in ((errors, "error"), (warnings, "warning")) if n]
    return f"{', '.join(counts)} in {plural(files, 'file')}"


@click.command("validate")
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@click.option("--format", "output_format", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="text: FILE:LINE:COL: severity: message lines and a summary; json: a list of objects.")
@click.option("--strict", is_flag=True, help="Fail (exit 1) on warnings too.")
@click.option("--leads", "leads_csv", type=click.Path(exists=True, dir_okay=False),
              help="A lead CSV: also render every template for every row and report what would fail.")
@click.option("--db", "db_url", metavar="URL",
              help="The database whose running leads the files are compared with (default: the project's, "
                   "as `run` finds it, when it exists).")
def command(paths: tuple[str, ...], output_format: str, strict: bool, leads_csv: str | None,
            db_url: str | None) -> None:
    """Check sequence files and their templates; report every problem with its file and line.

    PATHS are sequence files or directories (searched for *.yaml and *.yml); the seqrun.yaml of
    their project is checked too. Exits 0 when there are no errors (warnings are allowed unless
    --strict), 1 otherwise. When the project has a
    database, the files are also compared with the leads running in it: leads that stay on an
    earlier version of an edited sequence, and the steps a move to this version would need mapped.

    \b
    Example:
      seqrun validate sequences/
      seqrun validate --strict --leads leads.csv sequences/founders.yaml
      seqrun validate --format json sequences/ > problems.json
    """
    diags, files = validate_paths(list(paths), leads_csv=leads_csv, db_url=db_url)
    if output_format == "json":
        click.echo(format_json(diags))
    else:
        if diags:
            click.echo(format_text(diags))
        click.echo(summary(diags, files))
    if has_errors(diags) or (strict and diags):
        raise click.exceptions.Exit(1)
