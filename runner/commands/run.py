"""`seqrun run`: process every lead that is due, once (for cron) or on a loop."""
from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import logging
import os
import time
from typing import Any, Iterator, Mapping

import click
import httpx
import schedule

from ..capabilities import require_capabilities
from ..config import Config
from ..diagnostics import UserError
from ..dryrun import DryRunProvider
from ..engine import Engine, TickReport
from ..leads import open_project
from ..project import (
    build_runtime,
    http_notifier,
    project_sequences,
    real_provider_for,
    sync_senders,
)
from ..store import db, open_store
from ..store.db import sqlite_path

log = logging.getLogger(__name__)


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


@contextlib.contextmanager
def single_runner(db_file: str) -> Iterator[None]:
    """Only one `seqrun run` per database at a time: a second one would race for the same leads."""
    if db_file == ":memory:":
        yield
        return
    with open(os.path.realpath(db_file) + ".lock", "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UserError(f'another "seqrun run" is already working on {db_file}') from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@click.command("run")
@click.option("--once", is_flag=True, help="Process what is due now, then exit (for cron).")
@click.option("--dry-run", is_flag=True, help="Show what would be sent; call no provider and change nothing.")
@click.option("--interval", type=click.IntRange(5, 3600), default=60, show_default=True,
              help="Without --once: seconds between passes.")
@click.option("--db", "db_url", default=None, help="Database (default: SEQRUN_DB, the config's database, seqrun.db).")
def command(once: bool, dry_run: bool, interval: int, db_url: str | None) -> None:
    """Run the project's sequences: every lead that is due moves on, honouring windows and limits.

    With --once it processes what is due and exits (put it in cron); without, it keeps going every
    --interval seconds until Ctrl-C. --dry-run prints what would be sent now and leaves the
    database and LinkedIn untouched.

    \b
    Example:
      seqrun leads import leads.csv --sequence edges-full-flow
      seqrun run --once --dry-run
      seqrun run --once
    """
    config, _, _ = open_project()
    sequences = project_sequences(config)
    if not sequences:
        raise UserError(f"no sequences found in {os.path.join(config.root, 'sequences')}")
    require_capabilities(sequences.values(), config.senders)
    url = config.database_url(db_url)
    open_store(url)
    with single_runner(sqlite_path(url)):
        if dry_run:
            _dry_run(config, sequences)
            return
        with httpx.Client(timeout=30.0) as client:
            # One engine for the whole process: its per-sender poll schedule lives in it.
            engine = _runtime(config, sequences, client, db_file=db.database)
            try:
                # Once per process, before any lead moves: leads a killed run left mid-action are
                # due now, and their step reconciles the action with the provider first.
                recovered = engine.recover(utc_now())
                if recovered:
                    log.warning("%d action(s) were left in flight by an earlier run; reconciling them first", recovered)
                if once:
                    click.echo(_summary(_pass(engine)))
                else:
                    _loop(engine, interval)
            finally:
                _close_providers(engine)


def _runtime(config: Config, sequences: Mapping[str, Any], client: httpx.Client, provider: Any = None,
             db_file: str = ":memory:") -> Engine:
    rows = sync_senders(config, utc_now())
    provider_for = (lambda sc, cred: provider) if provider is not None else real_provider_for(config, client, db_file)
    notifier = http_notifier(client)
    if isinstance(provider, DryRunProvider):
        def notifier(url: str, headers: Mapping[str, str], payload: Mapping[str, Any]) -> None:
            provider.planned.append(_planned_notify(url))
    return Engine(build_runtime(config, sequences, rows, provider_for=provider_for, notifier=notifier))


def _planned_notify(url: str) -> Any:
    from ..dryrun import Planned

    return Planned(sender="-", lead="-", action="notify", text=url)


def _pass(engine: Engine) -> TickReport:
    # Each lead is processed at the time it is reached (`clock`), not at the start of the pass:
    # provider calls take real time, and windows and daily limits are judged when acting.
    return engine.tick(utc_now(), clock=utc_now)


def _close_providers(engine: Engine) -> None:
    """Drivers that hold something (the sandbox's state file) let go of it after each pass."""
    for provider in {id(s.provider): s.provider for s in engine.rt.senders.values()}.values():
        close = getattr(provider, "close", None)
        if callable(close):
            close()


def _dry_run(config: Config, sequences: Mapping[str, Any]) -> None:
    provider = DryRunProvider(clock=utc_now)
    now = utc_now()
    with httpx.Client(timeout=30.0) as client, db.atomic() as txn:
        try:
            engine = _runtime(config, sequences, client, provider)
            report = engine.tick(now)
            scheduled = _paced(now)
        finally:
            txn.rollback()  # everything the pass wrote goes: a dry run changes no state
    for p in provider.planned:
        line = f"would {p.action:<8} {p.lead}"
        if p.sender != "-":
            line += f"  (as {p.sender})"
        click.echo(line)
        if p.subject:
            click.echo(f"    subject: {p.subject}")
        if p.text:
            click.echo("    " + p.text.replace("\n", "\n    "))
    for when, action, url in scheduled[:DRY_RUN_SHOWN]:
        click.echo(f"later    {action:<8} {url}  at {when} UTC (paced inside the window and the daily limit)")
    if len(scheduled) > DRY_RUN_SHOWN:
        click.echo(f"later    … and {len(scheduled) - DRY_RUN_SHOWN} more paced action(s)")
    click.echo(f"dry run: {len(provider.planned)} action(s) would be performed now and {len(scheduled)} paced for "
               f"later, for {report.processed} due lead(s); nothing was sent or saved")


DRY_RUN_SHOWN = 20


def _paced(now: dt.datetime) -> list[tuple[str, str, str]]:
    """Actions the pass gave a pacing slot to (read before the rollback): when, what, for whom."""
    import json

    from ..store.fields import from_db_time, to_db_time

    rows = db.execute_sql(
        "SELECT e.due_at, e.facts, l.profile_url FROM enrollment e JOIN lead l ON l.id = e.lead_id "
        "WHERE e.state = 'active' AND e.updated_at = ? AND e.facts LIKE '%\"slot\"%' ORDER BY e.due_at",
        (to_db_time(now),)).fetchall()
    return [(f"{from_db_time(due):%Y-%m-%d %H:%M}", json.loads(facts)["slot"]["action"], url)
            for due, facts, url in rows]


def _loop(engine: Engine, interval: int) -> None:
    def one_pass() -> None:
        report = _pass(engine)
        if report.processed or report.events or report.errors:
            click.echo(f"{utc_now():%Y-%m-%d %H:%M:%S} {_summary(report)}")

    # `schedule` only triggers passes; whether a lead is due comes from the database.
    scheduler = schedule.Scheduler()
    scheduler.every(interval).seconds.do(one_pass)
    one_pass()
    click.echo(f"running every {interval} s; Ctrl-C to stop", err=True)
    while True:
        scheduler.run_pending()
        time.sleep(max(0.5, min(interval, scheduler.idle_seconds or interval)))


def _summary(report: TickReport) -> str:
    parts = [f"{report.processed} lead(s) processed", f"{report.transitions} step(s)", f"{report.events} event(s)"]
    if report.errors:
        parts.append(f"{report.errors} error(s) (see the log)")
    if report.outcomes:
        parts.append("ended: " + ", ".join(f"{k} {v}" for k, v in sorted(report.outcomes.items())))
    return "; ".join(parts)
