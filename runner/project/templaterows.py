"""A sequence's templates against a project: the senders of its seqrun.yaml, and every row of a
lead CSV rendered (every variant, invites with and without a note, every sender) before anything is
sent (`seqrun validate --leads`, `seqrun render`). Rendering one lead is `runner.language.templates`; this
module reads the project's config and the CSV, which the language modules never do.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping

from runner.language.diagnostics import Diagnostic, UserError, error, sort_diagnostics
from runner.language.model import Sequence
from runner.language.paths import PROJECT_CONFIG
from runner.language.templates import preview_lead, sender_fields
from runner.project.config import load_project_config
from runner.project.leadsfile import URL_FIELD, read_leads


def project_senders(seq: Sequence) -> list[dict[str, str]]:
    """The senders this sequence may use, as templates see them (see `sender_fields`), from the
    project's seqrun.yaml or the embedded default. A broken seqrun.yaml raises UserError."""
    config = load_project_config(seq.path, [seq])
    if not config.senders:  # a seqrun.yaml without any (the embedded default always has one)
        raise UserError(diagnostics=[error(config.path or PROJECT_CONFIG, 0, 0, (
            f'no senders are defined, so nobody can send for sequence "{seq.name}"; add one under `senders:` '
            "(see docs/config.md)"))])
    chosen = [s for s in config.senders if not seq.senders or s.name in seq.senders] or list(config.senders)
    return [sender_fields(s.name, s.full_name) for s in chosen]


def check_templates_for_leads(
    seq: Sequence, leads_path: str, *, senders: Iterable[Mapping[str, str]] | None = None,
) -> list[Diagnostic]:
    """Render every template (every variant, invites with and without a note, every sender) for
    every good row of the CSV and report what would fail or must not be sent, by row:

        leads.csv:7: error: row 7 (https://linkedin.com/in/x): connect note from connect_note.j2 is 318 characters; LinkedIn allows 300

    The CSV's own problems come first; rows that have them are not rendered. `senders` defaults to
    `project_senders(seq)`; the problems of a broken seqrun.yaml are returned instead.
    """
    required = [f.name for f in seq.fields if f.required]
    leads = read_leads(leads_path, required_fields=required)
    diags = list(leads.diagnostics)
    if leads.fatal:  # no row of a file that cannot be read is worth rendering
        return sort_diagnostics(diags)
    if senders is None:
        try:
            senders = project_senders(seq)
        except UserError as exc:
            return sort_diagnostics(diags + (exc.diagnostics or [error(seq.path, 0, 0, exc.message)]))
    who = list(senders)
    for row in leads.good_rows:
        assert row.key is not None  # good rows have a valid profile URL
        url = row.fields.get(URL_FIELD, row.profile_url)
        for sender in who:
            for preview in preview_lead(seq, row.fields, row.key, sender, all_variants=True, both_cases=True):
                if preview.error is not None:
                    message = f"row {row.row} ({url}): {preview.error.message}"
                    diags.append(error(leads.path, row.line, 0, message, preview.step))
    return sort_diagnostics(diags)
