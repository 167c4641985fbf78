"""`seqrun events list` and `seqrun events retry`: the event inbox and its dead letters."""
from __future__ import annotations

import json

import click

from runner.cli.commands.leads import db_option, open_db
from runner.language.diagnostics import UserError
from runner.project.discovery import open_project
from runner.store import inbox as store_inbox
from runner.store.models import InboxEvent
from runner.terminal import json_printable, printable


@click.group("events")
def command() -> None:
    """The events received from providers (polls, webhooks, callbacks) and the ones that could not be applied.

    Every event is stored in the inbox when it arrives and applied to its lead by the next run. An
    event that still cannot be applied after a few attempts (its lead is not in the database, or
    applying it failed) is dead: it holds nothing up, and `seqrun status` counts it.

    \b
    Example:
      seqrun events list --state dead
      seqrun events retry --all
    """


@command.command("list")
@click.option("--state", type=click.Choice(store_inbox.STATES), default=None, help="Only events in this state.")
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True, help="How many, newest first.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON lines instead of a table.")
@db_option
def list_events(state: str | None, limit: int, as_json: bool, db_url: str | None) -> None:
    """List received events, newest first (the body as received is in --json)."""
    config, _, _ = open_project()
    open_db(config, db_url)
    rows = store_inbox.listing(state, limit)
    for row in rows:
        if as_json:
            click.echo(json_printable(json.dumps(event_json(row), ensure_ascii=False)))
        else:
            click.echo(printable(event_line(row)))
    if not rows and not as_json:
        click.echo("no events" + (f" in state {state}" if state else ""))


@command.command("retry")
@click.option("--id", "ids", type=int, multiple=True, metavar="N", help="A dead event by its number (repeatable).")
@click.option("--all", "retry_all", is_flag=True, help="Every dead event.")
@db_option
def retry_events(ids: tuple[int, ...], retry_all: bool, db_url: str | None) -> None:
    """Make dead events pending again; the next `seqrun run` tries to apply them afresh."""
    if bool(ids) == retry_all:
        raise click.UsageError("give --id N (one or more) or --all")
    config, _, _ = open_project()
    open_db(config, db_url)
    if ids:
        states = store_inbox.states_of(ids)
        problems = [f"event #{n} does not exist" if n not in states else f"event #{n} is {states[n]}, not dead"
                    for n in ids if states.get(n) != "dead"]
        if problems:
            raise UserError("; ".join(problems) + " (see `seqrun events list --state dead`)")
    count = store_inbox.retry(list(ids) if ids else None)
    click.echo(f"{count} dead event(s) pending again; the next `seqrun run` applies them")


def event_line(row: InboxEvent) -> str:
    when = row.received_at.strftime("%Y-%m-%d %H:%M UTC")
    line = (f"#{row.id}  {row.state:<7}  {row.kind} for {row.lead_key or '-'}  ({row.source} {row.provider}, "
            f"{when}, id {row.event_id})")
    if row.error:
        line += f"  attempts {row.attempts}: {row.error}"
    return line


def event_json(row: InboxEvent) -> dict[str, object]:
    return {"id": row.id, "state": row.state, "source": row.source, "provider": row.provider,
            "event_id": row.event_id, "kind": row.kind, "lead_key": row.lead_key, "account_id": row.account_id,
            "received_at": row.received_at.isoformat(),
            "occurred_at": row.occurred_at.isoformat() if row.occurred_at else None,
            "attempts": row.attempts, "error": row.error,
            "applied_at": row.applied_at.isoformat() if row.applied_at else None, "payload": row.payload}
