"""`seqrun status`: the funnel per sequence and step, today's usage per sender, leads needing a human,
failing outgoing-event subscriptions."""
from __future__ import annotations

import datetime as dt
import json
from typing import Any

import click

from runner.cli.commands.events import event_json, event_line
from runner.engine.presence import age
from runner.language.loader import load_paths
from runner.language.model import Sequence
from runner.project.discovery import open_project
from runner.report import status
from runner.store import health, open_store
from runner.store import inbox as store_inbox
from runner.store.outgoing import summary as outgoing_summary
from runner.terminal import json_printable, printable

DEAD_SHOWN = 5  # the latest dead events `status` lists


def loaded_sequences(root: str) -> dict[str, Sequence]:
    """Sequences that load cleanly; status and export still work when one file has errors."""
    import os

    directory = os.path.join(root, "sequences")
    if not os.path.isdir(directory):
        return {}
    seqs, _, _ = load_paths([directory])
    return {s.name: s for s in seqs}


def _echo_earlier_versions(s: dict[str, Any]) -> None:
    """Leads that keep to an earlier version of the file, per version and step (runner.versions)."""
    if not s["on_earlier_versions"]:
        return
    click.echo(f"  on earlier versions: {s['on_earlier_versions']} lead(s), kept there until moved with "
               f"`seqrun leads migrate --sequence {s['name']}`")
    for v in s["versions"]:
        if v["current"]:
            continue
        stored = dt.datetime.fromisoformat(v["stored_at"]).strftime("%Y-%m-%d %H:%M UTC") if v["stored_at"] else "not stored"
        steps = ", ".join(f"{step} {n}" + (" (not in file)" if step in v["steps_not_in_file"] else "")
                          for step, n in v["steps"].items())
        click.echo(f"    version {v['version']} ({stored}): {steps}")


def _outgoing_json(summary: dict[str, Any]) -> dict[str, Any]:
    return {name: {**s, "latest_error_at": s["latest_error_at"].isoformat() if s["latest_error_at"] else None}
            for name, s in summary.items()}


def _echo_outgoing(summary: dict[str, Any]) -> None:
    """Subscriptions whose events fail (runner.outgoing): counts and the latest error of each."""
    failing = {name: s for name, s in summary.items() if s["counts"]["failed"] or s["counts"]["retrying"]}
    if not failing:
        return
    click.echo("Outgoing events failing")
    for name, s in sorted(failing.items()):
        c = s["counts"]
        line = (f"  {name}: {c['failed']} failed, {c['retrying']} retrying, {c['pending'] - c['retrying']} waiting, "
                f"{c['delivered']} delivered")
        if s["latest_error"]:
            line += f"; latest error {s['latest_error_at']:%Y-%m-%d %H:%M} UTC: {s['latest_error']}"
        click.echo(printable(line))
    click.echo("  (seqrun outgoing list --state failed; seqrun outgoing retry)")
    click.echo("")


@click.command("status")
@click.option("--sequence", "-s", metavar="NAME", help="Only this sequence.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")
@click.option("--db", "db_url", default=None, help="Database (default: SEQRUN_DB, the config's database, seqrun.db).")
def command(sequence: str | None, as_json: bool, db_url: str | None) -> None:
    """Show where every lead is, today's usage per sender against its limits, and what needs a human.

    A provider quota over a longer window (ConnectSafely: 90 invitations a week per account) is
    shown per its window, under the sender's daily usage.

    Leads a run has claimed and not finished with are listed with the run that holds them;
    outgoing-event subscriptions whose deliveries fail, with their counts and latest error; and
    events that could not be applied (dead), with their errors.

    \b
    Example:
      seqrun status
      seqrun status --sequence edges-full-flow --json
    """
    config, _, _ = open_project()
    open_store(config.database_url(db_url))
    sequences = loaded_sequences(config.root)
    with health.reading():
        report = status(config, sequences, dt.datetime.now(dt.UTC), sequence=sequence)
        outgoing = outgoing_summary()
        events = store_inbox.counts()
        dead = store_inbox.listing("dead", DEAD_SHOWN) if events["dead"] else []
    if as_json:
        body = {**report.to_json(), "outgoing": _outgoing_json(outgoing),
                "events": {**events, "latest_dead": [event_json(row) for row in dead]}}
        click.echo(json_printable(json.dumps(body, indent=2, ensure_ascii=False)))
        return
    if not report.sequences:
        click.echo("no leads yet" + (f" in sequence {sequence}" if sequence else "") + "; import some with `seqrun leads import`")
    for s in report.sequences:
        total = sum(s["states"].values())
        states = ", ".join(f"{k} {v}" for k, v in sorted(s["states"].items()))
        click.echo(f"{s['name']}: {total} lead(s) ({states})" + ("" if s["loaded"] else "  [sequence file not loaded]"))
        click.echo(f"  {'step':<24} {'leads here':>10} {'done':>6} {'skipped':>8} {'failed':>7} {'in flight':>10}")
        for step in s["steps"]:
            a = step["actions"]
            shown = step["id"] + ("" if step.get("in_file", True) else " (not in file)")
            click.echo(f"  {shown:<24} {step['leads_here']:>10} {a.get('done', 0):>6} {a.get('skipped', 0):>8} "
                       f"{a.get('failed', 0):>7} {a.get('in_flight', 0):>10}")
        if s["outcomes"]:
            click.echo("  ended: " + ", ".join(f"{k} {v}" for k, v in s["outcomes"].items()))
        _echo_earlier_versions(s)
        click.echo("")
    if report.usage:
        click.echo("Today per sender (used / limit)")
        for u in report.usage:
            cells = "  ".join(f"{a} {u['used'][a]}/{u['limits'][a]}" for a in u["limits"])
            state = "" if u["status"] == "active" else f"  [paused: {printable(str(u['paused_reason']))}]"
            click.echo(f"  {u['sender']:<12} {u['day']}  {cells}{state}")
            for q in u.get("quotas", ()):
                # A provider's own quota over its window: a week is shown as a week, not as a day.
                since = dt.datetime.fromisoformat(q["since"])
                resets = dt.datetime.fromisoformat(q["resets_at"])
                window = f"this week (from {since:%a %Y-%m-%d} 00:00 UTC)" if q["period"] == "week" \
                    else f"today (from {since:%Y-%m-%d} 00:00 UTC)"
                click.echo(f"  {'':<12} {window}: {q['action']} {q['used']}/{q['limit']} ({q['provider']} quota, "
                           f"resets {resets:%a %Y-%m-%d %H:%M} UTC)")
        click.echo("")
    if report.runners:
        click.echo("Runners")
        for r in report.runners:
            gone = "" if r["live"] else "  [gone: the next run takes its leads back]"
            click.echo(f"  {r['command']:<5} {printable(r['host'])} pid {r['pid']}, heartbeat "
                       f"{age(dt.timedelta(seconds=r['heartbeat_age_s']))} ago, started "
                       f"{r['started_at'][:16].replace('T', ' ')} UTC{gone}")
        click.echo("")
    if report.calls:
        click.echo("Calls in flight (at most one per sender account)")
        for call in report.calls:
            click.echo(printable(f"  {call['sender']}  action {call['action_key']} since "
                                 f"{call['started_at'][:16].replace('T', ' ')} UTC, by {call['holder']}"))
        click.echo("")
    if report.leased:
        click.echo("Leased (claimed by a run that has not finished with them)")
        for lease in report.leased:
            click.echo(f"  {lease['leads']} lead(s) by {lease['holder']}, until {lease['until'][:16].replace('T', ' ')} UTC")
        click.echo("")
    _echo_outgoing(outgoing)
    if dead:
        # Events that could not be applied: they hold nothing up, but a reply among them is missed.
        click.echo(f"Dead events ({events['dead']}; `seqrun events retry --all` tries them again)")
        for row in dead:
            click.echo(printable(f"  {event_line(row)}"))
        if events["dead"] > len(dead):
            click.echo(f"  … and {events['dead'] - len(dead)} more (seqrun events list --state dead)")
        click.echo("")
    if report.attention:
        click.echo(f"Needs attention ({report.attention_total})")
        for a in report.attention:
            # Reasons quote provider errors and what people typed: never raw on a terminal.
            click.echo(printable(f"  {a['lead']}  [{a['sequence']} @ {a['step']}] {a['reason']}"))
        if report.attention_total > len(report.attention):
            click.echo(f"  … and {report.attention_total - len(report.attention)} more (seqrun leads list --state failed)")
    else:
        click.echo("Nothing needs attention.")
