"""`seqrun export`: the audit log (actions, events, step transitions, enrollments) as CSV or JSON lines."""
from __future__ import annotations

import csv
import json
import sys
from collections.abc import Iterable
from typing import IO, Any

import click

from runner.cli.outfile import atomic_output, check_output, owned_files
from runner.language.diagnostics import UserError
from runner.language.urls import redact_secrets
from runner.project.discovery import open_project
from runner.report import EXPORTS, export_rows, spreadsheet_safe
from runner.store import health, open_store, reports

NOTHING_EXPORTED = "nothing was exported"
#: the table each export reads, every row of it (checked: a damaged database must not give a shorter file)
TABLES = {"actions": "action", "events": "event", "transitions": "transition", "enrollments": "enrollment"}


@click.command("export")
@click.argument("what", type=click.Choice(list(EXPORTS)))
@click.option("--format", "fmt", type=click.Choice(["csv", "jsonl"]), default="csv", show_default=True)
@click.option("--output", "-o", type=click.Path(dir_okay=False, writable=True), default=None,
              help="Write to this file instead of standard output (replaced only once the export is complete).")
@click.option("--db", "db_url", default=None, help="Database (default: SEQRUN_DB, the config's database, seqrun.db).")
def command(what: str, fmt: str, output: str | None, db_url: str | None) -> None:
    """Export the audit log, from the database alone: every action (lead, sender, step, variant,
    planned and performed times in UTC and the lead's local time, both time zones, the lead's
    relationship, new or existing conversation, whether it was charged to a limit, outcome, provider
    ids, error); every event (acceptances, replies, blocks and unblocks); every step transition (lead,
    step, entered at); or every enrollment (state, outcome, start and finish). CSV cells that a
    spreadsheet would run as a formula are neutralised. An output file is written whole or not at
    all, and never over the database or another file seqrun owns.

    \b
    Example:
      seqrun export actions --format csv -o actions.csv
      seqrun export events --format jsonl
      seqrun export transitions -o transitions.csv
      seqrun export enrollments
    """
    config, _, _ = open_project()
    url = config.database_url(db_url)
    if output:
        owned = owned_files(root=config.root, config_path=config.path, databases=(url, config.project_database_url()),
                            sandbox_state=config.sandbox.get("state_path"))
        check_output(output, root=config.root, owned=owned)
    database = open_store(url)
    # One read transaction: the count and the rows come from the same snapshot of the database.
    with health.reading(NOTHING_EXPORTED), reports.snapshot():
        health.quick_check(NOTHING_EXPORTED)
        expected = health.count_rows(TABLES[what])
        if output:
            with atomic_output(output) as handle:
                written = _write(handle, what, fmt, export_rows(what))
                _check_count(what, written, expected, database.database)
        else:
            _check_count(what, _write(sys.stdout, what, fmt, export_rows(what)), expected, database.database)


def _write(handle: IO[str], what: str, fmt: str, rows: Iterable[dict[str, Any]]) -> int:
    count = 0
    if fmt == "csv":
        columns = EXPORTS[what]
        writer = csv.DictWriter(handle, fieldnames=columns, lineterminator="\r\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: spreadsheet_safe(_redacted(v)) for k, v in row.items()})
            count += 1
    else:
        for row in rows:
            handle.write(json.dumps({k: _redacted(v) for k, v in row.items()}, ensure_ascii=False) + "\n")
            count += 1
    return count


def _redacted(value: Any) -> Any:
    """A URL's password or token never leaves in an export, whatever the database holds."""
    return redact_secrets(value) if isinstance(value, str) else value


def _check_count(what: str, written: int, expected: int, path: str) -> None:
    """Every row must have come out: a join that lost rows to damage would just make the file shorter."""
    if written != expected:
        raise UserError(f"the database {path} is inconsistent: only {written} of {expected} {what} could be "
                        f"read; {NOTHING_EXPORTED}; {health.check_command('integrity_check', 'foreign_key_check')}")
