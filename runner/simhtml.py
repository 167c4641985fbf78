"""`seqrun simulate --html`: the simulation report as one self-contained HTML file with SVG plots.

Everything is inline (styles, charts); the file needs no network and no JavaScript to open. The
plots: the funnel, the outcomes, actions per sender per day against the daily limit, the queue of
leads waiting for a paced slot over time, the time from acceptance to the first message, the A/B
results, and the audit (with every pause of a sender).
"""
from __future__ import annotations

import datetime as dt
import pathlib
from collections import defaultdict
from typing import Any

import jinja2

from runner import __version__
from runner.charts import bar_chart, hbars, histogram, line_chart
from runner.simulate import SimReport

TEMPLATE = pathlib.Path(__file__).parent / "data" / "simulate_report.html.j2"


def usage_charts(report: SimReport) -> list[dict[str, Any]]:
    """One bar chart per sender and action: actions performed each day, and the day's limit."""
    days = [(report.start.date() + dt.timedelta(days=i)).isoformat() for i in range(report.days)]
    grouped: dict[tuple[str, str], dict[str, dict[str, Any]]] = defaultdict(dict)
    for row in report.usage:
        grouped[(row["sender"], row["action"])][row["day"]] = row
    out = []
    for (sender, action), by_day in sorted(grouped.items()):
        used = [float(by_day[d]["used"]) if d in by_day else 0.0 for d in days]
        limits = [by_day[d]["limit"] for d in days if d in by_day and by_day[d]["limit"] is not None]
        limit = max(limits) if limits else None
        at_limit = sum(1 for d in days if d in by_day and by_day[d]["limit"] is not None
                       and by_day[d]["used"] >= by_day[d]["limit"])
        svg = bar_chart([d[5:] for d in days], [(action, used)], title=f"{action} per day, {sender}",
                        limit=limit, limit_label="daily limit", width=520, height=230, max_labels=8)
        out.append({"sender": sender, "action": action, "svg": svg, "total": int(sum(used)), "max": int(max(used)),
                    "limit": limit, "at_limit": at_limit})
    return out


def queue_chart(report: SimReport) -> str | None:
    if not report.queue:
        return None
    actions = sorted({a for sample in report.queue for a in sample["booked"]})
    if not actions:
        return None
    times = [dt.datetime.fromisoformat(s["at"]) for s in report.queue]
    labels = [t.strftime("%m-%d") if t.hour == 0 else "" for t in times]
    series = [(action, [float(s["booked"].get(action, 0)) for s in report.queue]) for action in actions]
    return line_chart(labels, series, title="leads waiting for a paced slot, per action")


def ab_chart(report: SimReport) -> str | None:
    if not report.ab:
        return None
    labels = [f"{r['step']} · {r['variant']}" for r in report.ab]
    return bar_chart(labels, [("messages sent", [float(r["sent"]) for r in report.ab]),
                              ("leads who replied", [float(r["replied"]) for r in report.ab])],
                     title="A/B variants: messages sent and replies")


def render(report: SimReport, seed: int) -> str:
    funnel = hbars([(s["id"], float(s["entered"])) for s in report.steps], title="leads entering each step")
    finished = sum(report.outcomes.values())
    running = report.states.get("active", 0) + report.states.get("paused", 0)
    outcome_rows = [(name, float(n)) for name, n in report.outcomes.items()] + [("(still in sequence)", float(running))]
    outcomes = hbars(outcome_rows, title="outcomes", of=float(report.leads)) if finished or running else None
    hours = report.accept_hours
    accept = histogram(hours, title="hours from acceptance to the first message") if hours else None
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    template = env.from_string(TEMPLATE.read_text(encoding="utf-8"))
    return template.render(r=report, seed=seed, version=__version__, funnel=funnel, outcomes=outcomes,
                           usage=usage_charts(report), queue=queue_chart(report), accept=accept,
                           ab=ab_chart(report), finished=finished, running=running)
