"""`seqrun export`: the audit log (actions or events) as CSV or JSON lines."""
from __future__ import annotations

import csv
import json
import sys

import click

from ..leads import open_project
from ..report import ACTION_COLUMNS, EVENT_COLUMNS, export_rows, spreadsheet_safe
from ..store import open_store
from .status import loaded_sequences


@click.command("export")
@click.argument("what", type=click.Choice(["actions", "events"]))
@click.option("--format", "fmt", type=click.Choice(["csv", "jsonl"]), default="csv", show_default=True)
@click.option("--output", "-o", type=click.Path(dir_okay=False, writable=True), default=None,
              help="Write to this file instead of standard output.")
@click.option("--db", "db_url", default=None, help="Database (default: SEQRUN_DB, the config's database, seqrun.db).")
def command(what: str, fmt: str, output: str | None, db_url: str | None) -> None:
    """Export the audit log: every action with lead, sender, sequence, step, variant, planned and
    performed times (UTC and the lead's local time), outcome, provider ids and error; or every event
    with its time and source. CSV cells that a spreadsheet would run as a formula are neutralised.

    \b
    Example:
      seqrun export actions --format csv -o actions.csv
      seqrun export events --format jsonl
    """
    config, _, _ = open_project()
    open_store(config.database_url(db_url))
    rows = export_rows(what, loaded_sequences(config.root))
    columns = ACTION_COLUMNS if what == "actions" else EVENT_COLUMNS
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
