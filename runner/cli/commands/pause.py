"""`seqrun pause` and `seqrun resume`: hold and release the enrollments of a lead, sender or sequence."""
from __future__ import annotations

import click

from runner.cli.commands.leads import db_option, open_db, utc_now
from runner.holds import LEAD, SENDER, SEQUENCE, PauseResult, Target, find_target, pause, resume
from runner.project.discovery import open_project, sync_senders


def _target(lead: str | None, sender: str | None, sequence: str | None, db_url: str | None) -> Target:
    given = [(scope, value) for scope, value in ((LEAD, lead), (SENDER, sender), (SEQUENCE, sequence))
             if value is not None]
    if len(given) != 1:
        raise click.UsageError("give exactly one of --lead, --sender, --sequence")
    config, _, _ = open_project()
    open_db(config, db_url)
    sync_senders(config, utc_now())  # a configured sender may not be in the database yet
    scope, value = given[0]
    return find_target(scope, value)


_lead = click.option("--lead", metavar="URL", help="One lead, by LinkedIn profile URL.")
_sender = click.option("--sender", metavar="NAME", help="Every lead of a sender (from seqrun.yaml).")
_sequence = click.option("--sequence", metavar="NAME", help="Every lead in a sequence.")


def _report(verb: str, target: Target, result: PauseResult) -> None:
    noun = "enrollment" if result.changed == 1 else "enrollments"
    line = f"{verb} {result.changed} {noun} of {target.label}"
    if verb == "resumed" and result.changed:
        line += ", due now"
    click.echo(line)
    if result.unchanged:
        click.echo(unchanged_line(result, "already paused" if verb == "paused" else None))


def unchanged_line(result: PauseResult, what: str | None = None) -> str:
    """`2 stay paused (lead paused: 1, sequence paused: 1)`; `what` replaces "stay(s) paused"."""
    total = sum(result.unchanged.values())
    why = ", ".join(f"{reason}: {n}" for reason, n in sorted(result.unchanged.items()))
    return f"{total} {what or ('stays paused' if total == 1 else 'stay paused')} ({why})"


@click.command("pause")
@_lead
@_sender
@_sequence
@click.option("--reason", metavar="TEXT", help="Why; shown by `seqrun leads list` and `seqrun senders list`.")
@db_option
def pause_command(lead: str | None, sender: str | None, sequence: str | None, reason: str | None,
                  db_url: str | None) -> None:
    """Pause the running enrollments of one lead, one sender or one sequence.

    Paused leads do nothing until resumed. A paused sender also gets no new leads on import.

    \b
    Example:
      seqrun pause --sender alice --reason "on holiday"
      seqrun pause --lead https://www.linkedin.com/in/jane-doe --reason "talking on the phone"
      seqrun pause --sequence founders-q1
    """
    target = _target(lead, sender, sequence, db_url)
    result = pause(target, reason, utc_now())
    _report("paused", target, result)
    if target.scope == SENDER:
        click.echo(f"{target.label} gets no new leads until resumed")


@click.command("resume")
@_lead
@_sender
@_sequence
@db_option
def resume_command(lead: str | None, sender: str | None, sequence: str | None, db_url: str | None) -> None:
    """Resume what `seqrun pause` paused; the leads are due at once.

    Each resume lifts only its own kind of pause: a lead paused by hand stays paused when its
    sequence resumes, and no lead resumes while its sender is paused. The engine re-checks business
    hours and daily limits before acting.

    \b
    Example:
      seqrun resume --sender alice
      seqrun resume --lead https://www.linkedin.com/in/jane-doe
      seqrun resume --sequence founders-q1
    """
    target = _target(lead, sender, sequence, db_url)
    _report("resumed", target, resume(target, utc_now()))


COMMANDS = [pause_command, resume_command]
