"""`/metrics`: the Prometheus text format (prometheus_client), one registry per app.

What the process counts itself: webhook deliveries by provider and verdict, their answer time, the
engine loop's pass duration and what passes did. What the database knows is read at scrape time
(`runner.store.serving`): actions by kind and outcome, the queue of due leads, leads by state, each
sender's usage today against its daily caps, and the inbox lag (how long the oldest event stored in
the inbox and not yet applied has waited, whoever received it), so the figures are right across restarts and
across several processes sharing one database.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from runner.engine.limits import SenderCaps
from runner.language.calendar import local_date
from runner.store import serving

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Metrics:
    """The process's own counters; `render()` adds the database's figures."""

    def __init__(self, *, clock: Callable[[], dt.datetime],
                 senders: Callable[[], Iterable[SenderCaps]] = lambda: ()) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.webhooks = Counter("seqrun_webhooks", "Webhook deliveries answered, by provider and verdict",
                                ["provider", "verdict"], registry=self.registry)
        self.webhook_seconds = Histogram("seqrun_webhook_answer_seconds", "Time from a delivery's arrival to its answer",
                                         registry=self.registry)
        self.loop_seconds = Histogram("seqrun_loop_seconds", "Duration of one engine pass",
                                      buckets=(.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120),
                                      registry=self.registry)
        self.loop_work = Counter("seqrun_loop_work", "What engine passes did: leads processed, steps, events, errors",
                                 ["what"], registry=self.registry)
        self.inbox_lag = Gauge("seqrun_inbox_lag_seconds", "Age of the oldest event in the inbox not applied yet "
                               "(0 when none waits)", registry=self.registry)
        self.registry.register(_StoreCollector(clock, senders))
        self.inbox_lag.set_function(lambda: serving.inbox_lag(clock()))

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _StoreCollector(Collector):
    """Figures read from the database at each scrape."""

    def __init__(self, clock: Callable[[], dt.datetime], senders: Callable[[], Iterable[SenderCaps]]) -> None:
        self._clock = clock
        self._senders = senders

    def describe(self) -> Iterator[Metric]:
        return iter(())  # read at scrape time only: registering must not touch the database

    def collect(self) -> Iterator[Metric]:
        now = self._clock()
        actions = CounterMetricFamily("seqrun_actions", "Actions in the audit log, by kind and outcome",
                                      labels=["kind", "outcome"])
        for kind, status, n in serving.action_counts():
            actions.add_metric([kind, status], n)
        yield actions
        yield GaugeMetricFamily("seqrun_queue_depth", "Active leads due now (waiting for the engine)",
                                value=serving.due_count(now))
        leads = GaugeMetricFamily("seqrun_leads", "Leads by enrollment state", labels=["state"])
        for state, n in sorted(serving.enrollment_counts().items()):
            leads.add_metric([state], n)
        yield leads
        used = GaugeMetricFamily("seqrun_sender_usage", "What each sender used today (its own day) by action",
                                 labels=["sender", "action"])
        caps = GaugeMetricFamily("seqrun_sender_cap", "Each sender's daily cap by action", labels=["sender", "action"])
        for sender in self._senders():
            today = serving.usage_on(sender.sender_id, local_date(now, sender.zone))
            for action, cap in sorted(sender.caps.items()):
                used.add_metric([sender.name, action], today.get(action, 0))
                caps.add_metric([sender.name, action], cap)
        yield used
        yield caps
