"""`seqrun render`: every note and message of a sequence, rendered for the leads of a CSV.

For each lead (or only `--row N`) and each step that produces text (or only `--step ID`), the text
as the lead would get it, with its length against LinkedIn's limit, the template and A/B variant
that produced it. Steps that pick a template by how the invite was sent show both. A text that
cannot be rendered or must not be sent ("Hi ,", over 300 characters, ...) is shown in its place,
and the command exits 1 at the end. Problems found before rendering (template lint, CSV rows) go
to stderr as diagnostics.
"""
from __future__ import annotations

import json
from typing import Any

import click

from runner.language import templates
from runner.language.diagnostics import UserError, format_text, has_errors, sort_diagnostics
from runner.language.loader import load_sequence
from runner.language.model import ActionStep, Sequence
from runner.language.schemacheck import plural
from runner.language.templates import MESSAGE_LIMIT, NOTE_LIMIT, Preview, preview_lead, rendered_steps
from runner.project.leadsfile import URL_FIELD, LeadRow, LeadsFile, read_leads
from runner.project.templaterows import project_senders
from runner.terminal import json_printable, printable


@click.command("render")
@click.argument("sequence", type=click.Path(exists=True, dir_okay=False))
@click.option("--leads", "leads_csv", required=True, type=click.Path(exists=True, dir_okay=False),
              help="The lead CSV to render for (linkedin_profile_url plus the sequence's fields).")
@click.option("--step", "step_id", metavar="ID", help="Only this step (a connect with a note, or a message).")
@click.option("--row", "row_number", type=click.IntRange(min=2), metavar="N",
              help="Only CSV row N, numbered as a spreadsheet shows it (the header is row 1).")
@click.option("--sender", "sender_name", metavar="NAME", help="Render as this sender (default: the sequence's first).")
@click.option("--all-variants", is_flag=True, help="Show every A/B variant, not only the one each lead gets.")
@click.option("--format", "output_format", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="text: one block per text; json: a list of objects.")
def command(sequence: str, leads_csv: str, step_id: str | None, row_number: int | None, sender_name: str | None,
            all_variants: bool, output_format: str) -> None:
    """Render a sequence's notes and messages for the leads in a CSV.

    Shows every text as each lead would get it, with its length, template and variant. Exits 1
    if any text cannot be rendered or must not be sent.

    \b
    Example:
      seqrun render sequences/founders.yaml --leads leads.csv
      seqrun render sequences/founders.yaml --leads leads.csv --row 7 --step first_message
      seqrun render sequences/founders.yaml --leads leads.csv --all-variants --format json
    """
    seq, diags = load_sequence(sequence)
    if seq is None:
        raise UserError("fix the errors above first (see `seqrun validate`)", diags)
    steps = _select_steps(seq, step_id)
    sender = _select_sender(seq, sender_name)
    leads = read_leads(leads_csv, required_fields=[f.name for f in seq.fields if f.required])
    if leads.fatal:  # the rows read so far cannot be trusted either (a stray quote, a broken header)
        raise UserError(f"nothing rendered: {leads_csv} cannot be read as a lead list",
                        [d for d in leads.diagnostics if d.severity == "error"])
    if not leads.rows:
        raise UserError(f"{leads_csv} has no leads to render", leads.diagnostics)
    rows = _select_rows(leads, row_number)
    problems = sort_diagnostics([*diags, *templates.check_sequence_templates(seq), *leads.diagnostics])
    if problems:
        click.echo(format_text(problems), err=True)
    results = [(row, preview) for row in rows if row.ok for preview in
               preview_lead(seq, row.fields, row.key or "", sender, steps=steps, all_variants=all_variants)]
    if output_format == "json":
        click.echo(json_printable(json.dumps([_as_json(row, preview) for row, preview in results], indent=2,
                                             ensure_ascii=False)))
    else:
        _echo_text(rows, results)
    failed = sum(preview.error is not None for _, preview in results)
    if failed:
        raise UserError(f"{failed} of {plural(len(results), 'text')} cannot be sent (see above)")
    if has_errors(problems):
        raise UserError("there are errors (see above)")


def _select_steps(seq: Sequence, step_id: str | None) -> list[ActionStep]:
    steps = rendered_steps(seq)
    if step_id is None:
        return steps
    chosen = [s for s in steps if s.id == step_id]
    if chosen:
        return chosen
    with_text = ", ".join(s.id for s in steps) or "none"
    if step_id in seq.index:
        raise UserError(f'step "{step_id}" sends no text; steps that do: {with_text}')
    raise UserError(f'{seq.path} has no step "{step_id}"; steps that send text: {with_text}')


def _select_sender(seq: Sequence, name: str | None) -> dict[str, str]:
    senders = project_senders(seq)
    if name is None:
        return senders[0]
    for sender in senders:
        if sender["name"] == name:
            return sender
    raise UserError(f'no sender "{name}" for {seq.name}; senders: {", ".join(s["name"] for s in senders)}')


def _select_rows(leads: LeadsFile, number: int | None) -> list[LeadRow]:
    if number is None:
        return leads.rows
    chosen = [row for row in leads.rows if row.row == number]
    if not chosen:
        first, last = leads.rows[0].row, leads.rows[-1].row
        raise UserError(f"{leads.path} has no lead in row {number}; leads are in rows {first} to {last}")
    return chosen


def _heading(preview: Preview) -> str:
    what = preview.kind
    if preview.case:
        what += f" {preview.case}"
    if preview.variant:
        what += f" variant {preview.variant}"
    return f"{preview.step}: {what} from {preview.template}"


def _limit(preview: Preview) -> int:
    return NOTE_LIMIT if preview.kind == "note" else MESSAGE_LIMIT


def _echo_text(rows: list[LeadRow], results: list[tuple[LeadRow, Preview]]) -> None:
    by_row: dict[int, list[Preview]] = {}
    for row, preview in results:
        by_row.setdefault(row.row, []).append(preview)
    first = True
    for row in rows:
        if row.row not in by_row:
            continue  # rows with CSV errors: reported on stderr
        if not first:
            click.echo()
        first = False
        click.echo(printable(f"=== row {row.row}: {row.fields.get(URL_FIELD, row.profile_url)} ==="))
        for preview in by_row[row.row]:
            click.echo()
            if preview.rendered is None:
                assert preview.error is not None
                click.echo(f"--- {_heading(preview)}: CANNOT BE SENT")
                click.echo(printable(f"error: {preview.error.message}", multiline=True))
                continue
            rendered = preview.rendered
            click.echo(f"--- {_heading(preview)} ({rendered.length} of {_limit(preview)} characters)")
            if rendered.subject is not None:
                click.echo(printable(f"Subject: {rendered.subject}"))
            click.echo(printable(rendered.text, multiline=True))  # what a template or a lead put there, escaped


def _as_json(row: LeadRow, preview: Preview) -> dict[str, Any]:
    rendered = preview.rendered
    return {
        "row": row.row,
        "lead": row.fields.get(URL_FIELD, row.profile_url),
        "step": preview.step,
        "kind": preview.kind,
        "case": preview.case,
        "variant": preview.variant,
        "template": preview.template,
        "subject": rendered.subject if rendered else None,
        "text": rendered.text if rendered else None,
        "length": rendered.length if rendered else None,
        "limit": _limit(preview),
        "error": preview.error.message if preview.error else None,
    }

