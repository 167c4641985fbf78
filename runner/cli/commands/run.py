"""`seqrun run`: process every lead that is due, once (for cron) or on a loop.

Outgoing events (runner.outgoing) are delivered after each pass; a receiver that fails never stops
the run (its events wait in the outbox).

Stopping: SIGINT (Ctrl-C) and SIGTERM ask the run to stop. The call in flight finishes and is
committed, no new call starts, the leads claimed and not started are handed back (due at once), and
the process exits 130 after SIGINT, 0 after SIGTERM (a stop that was asked for and carried out; what
systemd and Docker send). A second Ctrl-C stops at once: an action already recorded and maybe sent
is reconciled by the next run, never sent twice.
"""
from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import logging
import os
import signal
import threading
from collections.abc import Callable, Mapping
from types import FrameType
from typing import Any

import click
import httpx
import schedule

from runner.engine.dryrun import DryRunProvider
from runner.engine.loop import Engine, TickReport
from runner.engine.presence import STALE_AFTER, Presence, age
from runner.language.diagnostics import UserError, format_text
from runner.language.urls import redact_url
from runner.outgoing import Outgoing
from runner.project.capabilities import require_capabilities
from runner.project.config import Config
from runner.project.discovery import (
    apply_provider_limits,
    build_runtime,
    http_notifier,
    missing_environment,
    missing_environment_of_earlier_versions,
    open_project,
    project_sequences,
    real_provider_for,
    running_sequences,
    sync_senders,
)
from runner.store import open_store
from runner.store.db import bound_file
from runner.store.enrollments import paced_at
from runner.store.transactions import writing
from runner.terminal import printable
from runner.versions import absent_report, edit_report

log = logging.getLogger(__name__)


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class StopSignals:
    """SIGINT and SIGTERM set a flag that the engine reads between leads and before every external
    call; the run stops at the next safe point. A second SIGINT raises KeyboardInterrupt at once."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._event = threading.Event()
        self._previous: dict[int, Any] = {}

    def requested(self) -> bool:
        return self.signum is not None

    def wait(self, seconds: float) -> None:
        """Sleep between passes; returns early when a stop is asked for."""
        self._event.wait(seconds)

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is not None:
            if signum == signal.SIGINT:
                raise KeyboardInterrupt
            return
        self.signum = signum
        self._event.set()
        said = ("Ctrl-C: stopping after the call in flight (Ctrl-C again to stop at once)" if signum == signal.SIGINT
                else f"{signal.Signals(signum).name}: stopping after the call in flight")
        with contextlib.suppress(Exception):  # never fail inside a signal handler
            click.echo(said, err=True)


@click.command("run")
@click.option("--once", is_flag=True, help="Process what is due now, then exit (for cron).")
@click.option("--dry-run", is_flag=True, help="Show what would be sent; call no provider and change nothing.")
@click.option("--interval", type=click.IntRange(5, 3600), default=60, show_default=True,
              help="Without --once: seconds between passes.")
@click.option("--db", "db_url", default=None, help="Database (default: SEQRUN_DB, the config's database, seqrun.db).")
def command(once: bool, dry_run: bool, interval: int, db_url: str | None) -> None:
    """Run the project's sequences: every lead that is due moves on, honouring windows and limits.

    With --once it processes what is due and exits (put it in cron); without, it keeps going every
    --interval seconds until Ctrl-C or SIGTERM, which finish the call in flight and stop (exit 130
    after Ctrl-C, 0 after SIGTERM; a second Ctrl-C stops at once). --dry-run prints what would be
    sent now and leaves the database and LinkedIn untouched. Outgoing events (`outgoing:` in
    seqrun.yaml) are delivered after each pass.

    \b
    Example:
      seqrun leads import leads.csv --sequence edges-full-flow
      seqrun run --once --dry-run
      seqrun run --once
    """
    config, sequences, url = prepare(db_url)
    _warn_webhook_only(config)
    if dry_run:
        _dry_run(config, sequences)
        return
    try:
        signum = _operate(config, sequences, once=once, interval=interval)
    except KeyboardInterrupt:
        signum = signal.SIGINT  # a second Ctrl-C: stopped at once (the next run reconciles)
    if signum == signal.SIGINT:
        from runner.cli.main import EXIT_INTERRUPTED

        click.echo("Interrupted.", err=True)
        raise click.exceptions.Exit(EXIT_INTERRUPTED)
    if signum is not None:
        click.echo(f"stopped ({signal.Signals(signum).name})", err=True)


def prepare(db_url: str | None, command: str = "seqrun run") -> tuple[Config, dict[str, Any], str]:
    """What `run` and `serve` check before anything moves: the project's sequences (at least one),
    the steps their senders' providers can do, a writable database, what edits mean for running
    leads, and the environment the sequences need. Returns (config, sequences, database URL)."""
    config, _, _ = open_project()
    sequences = project_sequences(config)
    if not sequences:
        raise UserError(f"no sequences found in {os.path.join(config.root, 'sequences')}")
    require_capabilities(sequences.values(), config.senders)
    url = config.database_url(db_url)
    open_store(url, writable=True)  # a run that cannot record what it does must not start
    # Before anything runs: what the files' edits mean for the leads already in them.
    report = edit_report(sequences) + absent_report(sequences)
    if report:
        click.echo(format_text(report), err=True)
    _check_environment(sequences, command)
    return config, sequences, url


def _warn_webhook_only(config: Config) -> None:
    """Senders whose provider reports replies only by webhook: `run` receives none, so say so at start."""
    from runner.providers import WEBHOOK_ONLY

    by_provider: dict[str, list[str]] = {}
    for sc in config.senders:
        if sc.provider in WEBHOOK_ONLY:
            by_provider.setdefault(sc.provider, []).append(sc.name)
    for provider, names in sorted(by_provider.items()):
        who = f"sender{'s' if len(names) > 1 else ''} {', '.join(names)}"
        click.echo(f"warning: {who} act{'' if len(names) > 1 else 's'} through {provider}, which delivers "
                   f"{WEBHOOK_ONLY[provider]}; `seqrun run` receives no webhooks, so their messages wait (never "
                   f"sent without a finished inbox sync) and replies go unseen: run them with `seqrun serve`, "
                   f"which receives the webhooks", err=True)


def _check_environment(sequences: Mapping[str, Any], command: str = "seqrun run") -> None:
    """Every environment variable the sequences with leads in them need is set, or nothing starts:
    otherwise each lead would stop at the step that needs it, one by one. A sequence without leads
    only gets a warning (its leads pause at that step until the variable is set)."""
    missing = missing_environment(sequences) + missing_environment_of_earlier_versions(sequences)
    running = running_sequences()
    for seq, diag in missing:
        if seq.name not in running:
            click.echo(dataclasses.replace(diag, severity="warning").format() + " (the sequence has no leads yet; "
                       "leads that reach this step will be paused)", err=True)
    errors = [diag for seq, diag in missing if seq.name in running]
    if errors:
        raise UserError(f"set the environment variables above and start {command} again; the leads of these "
                        "sequences would stop at these steps", errors)


def _operate(config: Config, sequences: Mapping[str, Any], *, once: bool, interval: int) -> int | None:
    """Recover, then one pass or the loop; returns the signal that stopped the run, if one did."""
    with httpx.Client(timeout=30.0) as client, StopSignals() as stop:
        outgoing = Outgoing.from_config(config, client)  # a variable not set stops the run here, before anything
        engine = _runtime(config, sequences, client, db_file=bound_file())
        # Other runners may share the database: this one is known by its row and heartbeat
        # (runner.engine.presence), and stops making calls once another found it gone.
        with Presence(engine.rt.owner, "run", clock=lambda: utc_now()) as presence:
            engine.rt.stop_requested = lambda: stop.requested() or presence.lost()
            try:
                _recover(engine)
                if once:
                    click.echo(_summary(_pass(engine)))
                    _deliver(outgoing)
                else:
                    _loop(engine, interval, stop, presence.lost, outgoing)
            finally:
                _close_providers(engine)
            if presence.lost() and stop.signum is None:
                raise UserError(f"this run stopped: another runner found it gone (no heartbeat in the database for "
                                f"{age(STALE_AFTER)}) and took its leads back; whatever it left in flight is "
                                "reconciled with the provider")
    return stop.signum


def _recover(engine: Engine, now: dt.datetime | None = None) -> None:
    """Once per process, before any lead moves."""
    now = now or utc_now()
    # Leads a killed run left mid-action are due now; their step reconciles the action first.
    recovered = engine.recover(now)
    if recovered:
        log.warning("%d action(s) were left in flight by an earlier run; reconciling them first", recovered)
    _take_back(engine, now)


def _take_back(engine: Engine, now: dt.datetime) -> None:
    """Leads claimed by a run that is gone come back now, not when its lease runs out."""
    for owner, count in engine.take_back_leases(now).items():
        log.warning("took back %d lead(s) leased by a run that is gone (%s)", count, owner)


def _runtime(config: Config, sequences: Mapping[str, Any], client: httpx.Client, provider: Any = None,
             db_file: str = ":memory:", clock: Callable[[], dt.datetime] | None = None) -> Engine:
    clock = clock or utc_now  # read at call time: tests put a clock of their own in its place
    rows = sync_senders(config, clock())
    provider_for = (lambda sc, cred: provider) if provider is not None else real_provider_for(config, client, db_file, clock=clock)
    notifier = http_notifier(client)
    if isinstance(provider, DryRunProvider):
        def notifier(url: str, headers: Mapping[str, str], payload: Mapping[str, Any]) -> None:
            provider.planned.append(_planned_notify(url))
    runtime = build_runtime(config, sequences, rows, provider_for=provider_for, notifier=notifier)
    for sender, lowered in apply_provider_limits(runtime).items():
        for action, (ours, theirs) in sorted(lowered.items()):
            click.echo(f"sender {sender}: at most {theirs} {action} a day, the provider account's own limit "
                       f"(seqrun.yaml allows {ours})", err=True)
    return Engine(runtime)


def _planned_notify(url: str) -> Any:
    from runner.engine.dryrun import Planned

    return Planned(sender="-", lead="-", action="notify", text=redact_url(url))


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
    with httpx.Client(timeout=30.0) as client, writing() as txn:
        try:
            engine = _runtime(config, sequences, client, provider)
            report = engine.tick(now)
            scheduled = [(f"{due:%Y-%m-%d %H:%M}", action, url) for due, action, url in paced_at(now)]
        finally:
            txn.rollback()  # everything the pass wrote goes: a dry run changes no state
    for p in provider.planned:
        line = f"would {p.action:<8} {printable(p.lead)}"
        if p.sender != "-":
            line += f"  (as {p.sender})"
        click.echo(line)
        if p.subject:
            click.echo(f"    subject: {printable(p.subject)}")
        if p.text:
            click.echo("    " + printable(p.text, multiline=True).replace("\n", "\n    "))
    for when, action, url in scheduled[:DRY_RUN_SHOWN]:
        click.echo(f"later    {action:<8} {url}  at {when} UTC (paced inside the window and the daily limit)")
    if len(scheduled) > DRY_RUN_SHOWN:
        click.echo(f"later    … and {len(scheduled) - DRY_RUN_SHOWN} more paced action(s)")
    click.echo(f"dry run: {len(provider.planned)} action(s) would be performed now and {len(scheduled)} paced for "
               f"later, for {report.processed} due lead(s); nothing was sent or saved")


DRY_RUN_SHOWN = 20


def _deliver(outgoing: Outgoing | None, now: dt.datetime | None = None) -> None:
    """Outgoing events between passes (runner.outgoing): a receiver that fails never stops the run."""
    if outgoing is None:
        return
    try:
        outgoing.deliver_due(now or utc_now())
    except Exception:  # noqa: BLE001 - the events stay in the outbox; the next pass tries again
        log.exception("outgoing events could not be delivered this pass")


def _loop(engine: Engine, interval: int, stop: StopSignals, lost: Callable[[], bool],
          outgoing: Outgoing | None = None) -> None:
    def one_pass() -> None:
        _take_back(engine, utc_now())  # a runner sharing the database may have gone since the last pass
        report = _pass(engine)
        if report.processed or report.events or report.errors:
            click.echo(f"{utc_now():%Y-%m-%d %H:%M:%S} {_summary(report)}")
        if not stop.requested():
            _deliver(outgoing)

    # `schedule` only triggers passes; whether a lead is due comes from the database.
    scheduler = schedule.Scheduler()
    scheduler.every(interval).seconds.do(one_pass)
    one_pass()
    if not stop.requested():
        click.echo(f"running every {interval} s; Ctrl-C to stop", err=True)
    while not stop.requested() and not lost():
        scheduler.run_pending()
        stop.wait(max(0.5, min(interval, scheduler.idle_seconds or interval)))


def _summary(report: TickReport) -> str:
    parts = [f"{report.processed} lead(s) processed", f"{report.transitions} step(s)", f"{report.events} event(s)"]
    if report.errors:
        parts.append(f"{report.errors} error(s) (see the log)")
    if report.outcomes:
        parts.append("ended: " + ", ".join(f"{k} {v}" for k, v in sorted(report.outcomes.items())))
    return "; ".join(parts)
