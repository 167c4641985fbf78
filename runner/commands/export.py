"""`seqrun export`: the audit log (actions, events, step transitions, enrollments) as CSV or JSON lines."""
from __future__ import annotations

import csv
import json
import sys

import click

from ..leads import open_project
from ..report import EXPORTS, export_rows, spreadsheet_safe
from ..store import open_store


@click.command("export")
@click.argument("what", type=click.Choice(list(EXPORTS)))
@click.option("--format", "fmt", type=click.Choice(["csv", "jsonl"]), default="csv", show_default=True)
@click.option("--output", "-o", type=click.Path(dir_okay=False, writable=True), default=None,
              help="Write to this file instead of standard output.")
@click.option("--db", "db_url", default=None, help="Database (default: SEQRUN_DB, the config's database, seqrun.db).")
def command(what: str, fmt: str, output: str | None, db_url: str | None) -> None:
    """Export the audit log, from the database alone: every action (lead, sender, step, variant,
    planned and performed times in UTC and the lead's local time, both time zones, the lead's
    relationship, new or existing conversation, whether it was charged to a limit, outcome, provider
    ids, error); every event (acceptances, replies, blocks and unblocks); every step transition (lead,
    step, entered at); or every enrollment (state, outcome, start and finish). CSV cells that a
    spreadsheet would run as a formula are neutralised.

    \b
    Example:
      seqrun export actions --format csv -o actions.csv
      seqrun export events --format jsonl
      seqrun export transitions -o transitions.csv
      seqrun export enrollments
    """
    config, _, _ = open_project()
    open_store(config.database_url(db_url))
    rows = export_rows(what)
    columns = EXPORTS[what]
    handle = open(output, "w", newline="", encoding="utf-8") if output else sys.stdout
    try:
        if fmt == "csv":
            writer = csv.DictWriter(handle, fieldnames=columns, lineterminator="\r\n")
            writer.writeheader()
            for row in rows:
                writer.writerow({k: spreadsheet_safe(v) for k, v in row.items()})
        else:
            for row in rows:
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    finally:
        if output:
            handle.close()
