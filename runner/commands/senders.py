"""`seqrun senders`: list the senders with their state, and resume one after its session expired."""
from __future__ import annotations

import json

import click

from ..holds import SENDER, SenderListing, find_target, list_senders, resume
from ..leads import open_project
from ..project import sync_senders
from .leads import db_option, open_db, utc_now
from .pause import unchanged_line


@click.group("senders")
def command() -> None:
    """List senders and resume a paused one.

    \b
    Example:
      seqrun senders list
      seqrun senders resume alice
    """


@command.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON array instead of a table.")
@db_option
def list_command(as_json: bool, db_url: str | None) -> None:
    """Senders with provider, account type, status and enrollment counts.

    \b
    Example:
      seqrun senders list
      seqrun senders list --json
    """
    config, _, _ = open_project()
    open_db(config, db_url)
    sync_senders(config, utc_now())
    senders = list_senders(config)
    if as_json:
        click.echo(json.dumps([s.to_json() for s in senders], indent=2, ensure_ascii=False))
        return
    header = ("NAME", "PROVIDER", "ACCOUNT", "TIMEZONE", "STATUS", "ACTIVE", "PAUSED", "DONE")
    table = [header] + [_cells(s) for s in senders]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


def _cells(s: SenderListing) -> tuple[str, ...]:
    status = f"paused: {s.paused_reason}" if s.status == "paused" and s.paused_reason else s.status
    if not s.configured:
        status += " (not in seqrun.yaml)"
    done = s.enrollments.get("done", 0) + s.enrollments.get("failed", 0)
    return (s.name, s.provider, s.account_type, s.timezone, status, str(s.enrollments.get("active", 0)),
            str(s.enrollments.get("paused", 0)), str(done))


@command.command("resume")
@click.argument("name")
@db_option
def resume_command(name: str, db_url: str | None) -> None:
    """Reactivate a paused sender and the leads paused with it, due now.

    Use it after re-authenticating the sender's account: after AUTH_EXPIRED the engine pauses
    the sender and all its leads with reason "auth expired"; this resumes them. Leads paused by
    hand or by a sequence pause stay paused.

    \b
    Example:
      seqrun senders resume alice
    """
    config, _, _ = open_project()
    open_db(config, db_url)
    sync_senders(config, utc_now())
    target = find_target(SENDER, name)
    result = resume(target, utc_now())
    click.echo(f"{target.label} is active; resumed {result.changed} "
               f"{'enrollment' if result.changed == 1 else 'enrollments'}")
    if result.unchanged:
        click.echo(unchanged_line(result))
