"""`seqrun outgoing list|retry`: the outbox of outgoing events (runner.outgoing), and trying failed ones again."""
from __future__ import annotations

import datetime as dt
import json

import click

from runner.language.diagnostics import UserError
from runner.project.discovery import open_project
from runner.store import open_store
from runner.store.outgoing import STATES, list_events, retry_failed, subscription_names
from runner.terminal import json_printable, printable


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


_DB_HELP = "Database (default: SEQRUN_DB, the config's database, seqrun.db)."


@click.group("outgoing")
def command() -> None:
    """Outgoing events: the lead events seqrun POSTs to the URLs under `outgoing:` in seqrun.yaml.

    \b
    Example:
      seqrun outgoing list --state failed
      seqrun outgoing retry --subscription crm
    """


def _time(value: dt.datetime | None) -> str:
    return f"{value:%Y-%m-%d %H:%M}" if value is not None else "-"


@command.command("list")
@click.option("--state", type=click.Choice(STATES), help="Only events in this state.")
@click.option("--subscription", metavar="NAME", help="Only this subscription's events.")
@click.option("--limit", type=click.IntRange(1, 100000), default=50, show_default=True, help="Newest first, at most this many.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (with each event's body) instead of a table.")
@click.option("--db", "db_url", default=None, help=_DB_HELP)
def list_command(state: str | None, subscription: str | None, limit: int, as_json: bool, db_url: str | None) -> None:
    """List outgoing events, newest first: type, state, attempts and the last error.

    \b
    Example:
      seqrun outgoing list
      seqrun outgoing list --state failed --subscription crm --json
    """
    config, _, _ = open_project()
    open_store(config.database_url(db_url))
    rows = list(list_events(state=state, subscription=subscription, limit=limit))
    if as_json:
        out = [{"event_id": r.event_id, "type": r.type, "subscription": r.subscription.name, "state": r.state,
                "attempts": r.attempts, "occurred_at": r.occurred_at.isoformat(),
                "next_attempt_at": r.next_attempt_at.isoformat() if r.next_attempt_at else None,
                "delivered_at": r.delivered_at.isoformat() if r.delivered_at else None,
                "last_error": r.last_error, "body": json.loads(r.body)} for r in rows]
        click.echo(json_printable(json.dumps(out, indent=2, ensure_ascii=False)))
        return
    if not rows:
        click.echo("no outgoing events" + (f" in state {state}" if state else "")
                   + (f" for {subscription}" if subscription else ""))
        return
    click.echo(f"{'event':<36}  {'type':<22}  {'subscription':<12}  {'state':<9}  {'tries':>5}  "
               f"{'occurred (UTC)':<16}  {'next / delivered':<16}  last error")
    for r in rows:
        when = r.delivered_at if r.state == "delivered" else r.next_attempt_at
        click.echo(printable(f"{r.event_id:<36}  {r.type:<22}  {r.subscription.name:<12}  {r.state:<9}  {r.attempts:>5}  "
                             f"{_time(r.occurred_at):<16}  {_time(when):<16}  {r.last_error or ''}".rstrip()))


@command.command("retry")
@click.option("--all", "every", is_flag=True, help="Every failed event.")
@click.option("--subscription", metavar="NAME", help="The failed events of this subscription.")
@click.option("--event", "event_id", metavar="ID", help="This event (its id, as `seqrun outgoing list` shows).")
@click.option("--db", "db_url", default=None, help=_DB_HELP)
def retry_command(every: bool, subscription: str | None, event_id: str | None, db_url: str | None) -> None:
    """Try failed events again: they are due at once, with a fresh count of attempts.

    The next `seqrun run` pass (or `seqrun serve`) delivers them.

    \b
    Example:
      seqrun outgoing retry --subscription crm
      seqrun outgoing retry --event evt_3f2a...
      seqrun outgoing retry --all
    """
    if not (every or subscription or event_id):
        raise UserError("say which failed events to try again: --all, --subscription NAME or --event ID")
    config, _, _ = open_project()
    open_store(config.database_url(db_url), writable=True)
    names = subscription_names() if subscription is not None else []
    if subscription is not None and subscription not in names:
        known = ", ".join(names) or "none yet"
        raise UserError(f"no outgoing subscription named {subscription!r} has events (known: {known})")
    count = retry_failed(utc_now(), subscription=subscription, event_id=event_id)
    if event_id is not None and count == 0:
        raise UserError(f"no failed outgoing event with id {event_id!r} (see seqrun outgoing list --state failed)")
    click.echo(f"{count} failed event(s) will be tried again at the next pass of seqrun run or serve")
