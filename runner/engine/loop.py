"""The interpreter: `Engine.tick(now)` moves every due lead through its sequence.

One tick:
1. polls each sender's provider for acceptances and replies when its poll is due (per-sender cursor,
   re-read with an overlap, cursor saved only after the sync finished), appends the events to the
   inbox, and applies every pending inbox event, the webhooks' included (runner.engine.inbox);
2. claims due enrollments through the partial index on `due_at` (cost grows with the number due,
   not the number enrolled), a few at a time (`claims.share`: runners sharing the database share
   its backlog), with one guarded UPDATE each (a lease: `due_at` moves to now + lease, so a crashed
   run's leads come back by themselves);
3. runs each claimed lead's steps (`runner.engine.steps`) until it must wait, act later, or end, committing
   every transition before the next external action.

Errors in one lead never stop the loop: the error is recorded on the enrollment and the retry policy
applied. Configuration errors are raised before the first tick by whoever builds the `Runtime`.
Time is always a parameter; the engine never reads the clock.

A run asked to stop (`Runtime.stop_requested`) finishes the external call in flight, commits it,
makes no new one, and hands the leads it claimed and did not get to back (due at once, no owner);
at start-up `take_back_leases` does the same for the leases of runners that are gone (a kill -9).
"""
from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from runner import logfields
from runner.engine import flow, inbox, limits, presence, steps
from runner.engine.runtime import Runtime, SenderRuntime
from runner.language.urls import redact_secrets
from runner.providers.base import ErrorKind, ProviderError, ProviderEvent
from runner.store import Enrollment, claims, enrollments, health, sender_calls, sender_state, senders
from runner.store import inbox as store_inbox
from runner.store.inbox import Received
from runner.store.leases import in_flight_holders, release_claims, release_in_flight_of
from runner.store.transactions import in_transaction, writing

log = logging.getLogger(__name__)


@dataclass
class TickReport:
    processed: int = 0
    transitions: int = 0
    events: int = 0
    errors: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    stopped: bool = False  # the pass ended early because the run was asked to stop


class Engine:
    def __init__(self, runtime: Runtime) -> None:
        self.rt = runtime
        #: the earliest poll of this runtime's senders as the store said at the last sync (saves
        #: `next_due` a query per tick); None until then
        self._first_poll: tuple[dt.datetime | None] | None = None

    # --- the loop ----------------------------------------------------------------------------------

    def tick(self, now: dt.datetime, *, limit: int | None = None,
             clock: Callable[[], dt.datetime] | None = None) -> TickReport:
        """Process everything due at `now` (at most `limit` leads). Safe to call as often as you like.

        With a `clock`, each lead is processed at the time the clock says when its turn comes (real
        runs: provider calls take time, and a window may close during a long pass); without one,
        every lead is processed at `now` (simulations and tests, whose clock moves only between ticks).
        """
        report = TickReport()
        # What the providers refuse, as every runner sharing the store learnt it (read once a pass;
        # a hold learnt during the pass is added to it by the step that learnt it).
        self.rt.provider_holds = {(sender_id, action): until
                                  for sender_id, action, until, _ in sender_state.provider_holds(now)}
        self.sync(now, report)
        share = self.rt.batch or claims.share()
        while (limit is None or report.processed < limit) and not self._stopping(report):
            batch = share if limit is None else min(share, limit - report.processed)
            with self._batch_transaction():
                claimed = claims.claim_due(now, batch, self.rt.owner, now + self.rt.lease)
                for index, enrollment_id in enumerate(claimed):
                    if self._stopping(report):
                        # Hand back what this pass claimed and did not start: due at once for the next run.
                        release_claims(claimed[index:], self.rt.owner, now)
                        return report
                    at = max(now, clock()) if clock is not None else now
                    if self._run(enrollment_id, at, report):
                        report.processed += 1
            if len(claimed) < batch:
                break
        limits.fill_gaps(self.rt, now)  # capacity given back during the pass goes to waiting leads
        self._want_polls(now)
        return report

    def _batch_transaction(self) -> contextlib.AbstractContextManager[object]:
        """Around a batch's claim and its leads: in the simulator (`Runtime.calls_in_process`: no
        other process sees the store, no call leaves it) one transaction, the claim's and each lead's
        own transaction a savepoint in it, so the store writes its pages once per batch instead of
        once per lead; elsewhere nothing (each lead commits before its external calls)."""
        if self.rt.calls_in_process and not in_transaction():
            return writing(immediate=True)
        # (inside the simulation's transaction of many ticks, `runner.simulate._ticks_transaction`,
        # a savepoint per batch would only add a level under each lead's own: measurably slower)
        return contextlib.nullcontext()

    def _stopping(self, report: TickReport) -> bool:
        if self.rt.stop_requested():
            report.stopped = True
        return report.stopped

    def due_ids(self, now: dt.datetime, limit: int) -> list[int]:
        return enrollments.due_ids(now, limit)

    def claim_many(self, ids: list[int], now: dt.datetime) -> list[int]:
        """Claim a batch with one guarded write (one transaction instead of one per lead); returns the
        ids this runner got, in the order given (due order). A row another runner claimed first, or
        that stopped being due, is not returned."""
        return claims.claim_ids(ids, now, self.rt.owner, now + self.rt.lease)

    def next_due(self) -> dt.datetime | None:
        """The earliest moment anything will be due: a lead's `due_at` or a sender's next poll."""
        if self._first_poll is None:
            self._first_poll = (sender_state.next_poll(list(self.rt.senders)),)
        poll = self._first_poll[0]
        candidates = [poll] if poll is not None else []
        due = enrollments.earliest_due()
        if due is not None:
            candidates.append(due)
        return min(candidates) if candidates else None

    def _run(self, enrollment_id: int, now: dt.datetime, report: TickReport) -> bool:
        enr = enrollments.load_enrollment(enrollment_id)
        if enr.state != "active" or enr.lease_owner != self.rt.owner:
            return False  # paused (e.g. its sender's auth expired) since the batch was claimed
        try:
            outcome = steps.advance(self.rt, enr, now)
            report.transitions += outcome.transitions
            if outcome.final == steps.STOPPED:
                release_claims([enr.id], self.rt.owner, now)  # the rest of its work is the next run's
                return False
            if outcome.final:
                report.outcomes[outcome.final] += 1
        except Exception as exc:  # noqa: BLE001 - one bad lead must not stop the others
            if _interrupted(exc):
                # A Ctrl-C that surfaced as another error (a rollback failing while it unwound) is
                # still a Ctrl-C: the process stops; it is not this lead's failure.
                raise KeyboardInterrupt from exc
            if health.damaged(exc):
                raise  # the database file, not this lead: stop; the user repairs the file
            report.errors += 1
            sender = self.rt.senders.get(enr.sender_id) if enr.sender_id is not None else None
            log.exception("lead %s (enrollment %s) step %s failed unexpectedly", enr.lead.key, enr.id, enr.step_id,
                          extra=logfields.ids(lead=enr.lead.key, enrollment=enr.id, step=enr.step_id,
                                              sender=sender.name if sender is not None else None))
            self._record_crash(enr, now, exc)
        return True

    def _record_crash(self, enr: Enrollment, now: dt.datetime, exc: Exception) -> None:
        """An unexpected error in our own code: retry with backoff, then fail the lead with the error kept."""
        with writing():
            attempt = enrollments.attempt_of(enr.id) + 1
            retry_at = (None if attempt > self.rt.max_attempts
                        else now + flow.backoff(self.rt, attempt, key=str(enr.id)))
            enrollments.note_crash(enr.id, attempt, redact_secrets(f"{type(exc).__name__}: {exc}"), now,
                                   retry_at=retry_at)
            # A call that raised is over, whatever it did: its action stays in flight and is
            # reconciled with the provider when the lead runs again.
            sender_calls.end_calls_of_enrollment(enr.id, self.rt.owner)

    # --- events ------------------------------------------------------------------------------------

    def sync(self, now: dt.datetime, report: TickReport | None = None) -> int:
        """Poll every active sender whose poll is due (its events go to the inbox), then apply every
        pending inbox event, the webhooks' included (runner.engine.inbox); returns the number applied."""
        schedule = sender_state.poll_schedule()  # shared by every runner: a poll is claimed by one
        raced = False
        for sender in self.rt.senders.values():
            if self.rt.stop_requested():
                break
            due = schedule.get(sender.id)
            if due is not None and due > now:
                continue
            if not sender_state.claim_poll(sender.id, now, now + self.rt.poll_every):
                raced = True  # another runner polled it: `next_due` reads its schedule again
                continue
            schedule[sender.id] = now + self.rt.poll_every
            if senders.status_of(sender.id) != "active":
                continue
            self._sync_sender(sender, now)
        self._first_poll = None if raced else self._earliest(schedule)
        total = inbox.process(self.rt, now)
        if report is not None:
            report.events += total
        return total

    def _earliest(self, schedule: dict[int, dt.datetime]) -> tuple[dt.datetime | None]:
        return (min((at for sender_id, at in schedule.items() if sender_id in self.rt.senders), default=None),)

    def _want_polls(self, now: dt.datetime) -> None:
        """Senders whose provider wants a poll sooner than the schedule (Salesflow: the inbox sync
        5-10 minutes after a message, seed 000) get it then."""
        schedule: dict[int, dt.datetime] | None = None
        for sender in self.rt.senders.values():
            poll_due = getattr(sender.provider, "poll_due", None)
            wanted = poll_due(sender.account) if callable(poll_due) else None
            if wanted is not None and wanted > now:
                schedule = sender_state.poll_schedule() if schedule is None else schedule
                current = schedule.get(sender.id)
                if current is None or wanted < current:
                    sender_state.want_poll_by(sender.id, wanted)
                    schedule[sender.id] = wanted
                    self._first_poll = self._earliest(schedule)

    def _sync_sender(self, sender: SenderRuntime, now: dt.datetime) -> int:
        """One poll: its events appended to the inbox and, in the same transaction, the cursor moved
        (seed 000: only after the sync finished). The cursor moves once the events are stored, not
        once applied: an event that cannot be applied goes dead in the inbox and holds nothing up.
        Returns the number of new events."""
        synced = store_inbox.synced_until(sender.id)
        since = synced - self.rt.sync_overlap if synced else None
        try:
            result = sender.provider.poll_events(sender.account, since=since)
        except ProviderError as err:
            if err.kind is ErrorKind.AUTH_EXPIRED:
                steps.pause_sender(sender.id, "auth expired", now)
            elif err.kind is ErrorKind.API_KEY_REJECTED:
                steps.pause_sender(sender.id, flow.API_KEY_REJECTED, now)
            log.warning("sender %s: polling failed: %s", sender.name, err, extra=logfields.ids(sender=sender.name))
            return 0
        received = [Received(ev, json.dumps(_event_json(ev), default=str)) for ev in result.events]
        with writing():
            new = store_inbox.append(received, source="poll", provider=sender.provider.name, received_at=now,
                                     sender_id=sender.id)
            if result.synced_until is not None:
                store_inbox.move_cursor(sender.id, result.synced_until, now)
        return len(new)

    def apply_event(self, event: ProviderEvent, now: dt.datetime, *, source: str,
                    sender: SenderRuntime | None = None) -> bool:
        """Deliver one event (a webhook's, a callback's): appended to the inbox, then applied with
        everything else pending (runner.engine.inbox). Safe from any thread. Whether the event was new."""
        return inbox.deliver(self.rt, event, now, source=source, sender=sender)

    # --- recovery ----------------------------------------------------------------------------------

    def recover(self, now: dt.datetime) -> int:
        """At start-up: make every lead that a runner now gone left with an action in flight due now.

        Its step handler reconciles the action with the provider (`find_action`) before anything is
        retried, so a crash between "recorded" and "marked done" never sends twice. A live runner's
        lead in the middle of its call is left to it; a lead that sleeps in a backoff after a
        timeout (its action in flight on purpose, no lease) keeps its backoff.
        """
        holders = set(in_flight_holders()) | set(sender_calls.call_holders())
        gone = [owner for owner in sorted(holders) if presence.gone_now(owner, now, me=self.rt.owner)]
        if not gone:
            return 0
        with writing():
            sender_calls.end_calls_of(gone)  # their leads' actions stay in flight, reconciled first
            return release_in_flight_of(gone, now)

    def take_back_leases(self, now: dt.datetime) -> dict[str, int]:
        """Leads leased by runners that are gone (killed, stopped without handing them back, or
        without a heartbeat for `presence.STALE_AFTER`) are due at `now` instead of when their lease
        runs out; their step reconciles an action left in flight before anything is retried.
        Returns, per gone runner, how many leads came back. Leases of live runners are left alone."""
        return presence.take_back(now, me=self.rt.owner)


def _event_json(event: ProviderEvent) -> dict[str, object]:
    """A polled event as the inbox keeps it (`payload`: what the provider's answer said)."""
    values = {f.name: getattr(event, f.name) for f in dataclasses.fields(event)}
    values["data"] = dict(event.data)
    return values


def _interrupted(exc: BaseException) -> bool:
    """Whether a KeyboardInterrupt is among the causes of `exc`."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, KeyboardInterrupt):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False
