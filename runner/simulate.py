"""`seqrun simulate`: a whole campaign on a virtual clock against the sandbox provider.

The simulation uses the very code path of `seqrun run` — the same `Engine.tick`, store, limits and
calendar — with two differences: the clock is virtual (it jumps straight to the next moment anything
is due) and every sender acts through one shared `SandboxProvider` driven by that clock. Leads are
generated (deterministically from the seed) or read from a CSV. The report is computed from the
store afterwards: the funnel per step and outcome, actions per sender per day against the limits,
the time from acceptance to the first message, every pause of a sender (a `SimulatedHuman` renews
an expired session after a set delay, as a person would), and an audit of the ledger (`runner.audit`).
"""
from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import gc
import json
import random
import statistics
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from runner import audit
from runner.engine.limits import caps_for
from runner.engine.loop import Engine
from runner.engine.runtime import Runtime
from runner.holds import AUTH_EXPIRED, SENDER, Target, resume
from runner.language.diagnostics import UserError
from runner.language.model import ActionStep, Sequence
from runner.project.config import Config
from runner.project.discovery import apply_provider_limits, build_runtime, sync_senders
from runner.project.leadsfile import read_leads
from runner.providers import QUOTAS
from runner.providers.quotas import by_window
from runner.providers.sandbox import SandboxProvider
from runner.store import leadbook, reports
from runner.store import simulation as stored
from runner.store.auditlog import first_action_times
from runner.store.dashboard import variant_results
from runner.store.fields import read_json, to_db_time
from runner.store.quota_usage import performed_times
from runner.store.transactions import sole_writer, writing
from runner.versions import remember

_FIELDS_JSON = json.JSONEncoder(ensure_ascii=False, sort_keys=True, separators=(",", ":"))

FIRST = ["Anna", "Ben", "Chloé", "Daniel", "Elif", "Farid", "Grace", "Hiro", "Ines", "Jonas", "Kemi", "Lars",
         "Maya", "Nikolai", "Olga", "Pedro", "Quinn", "Rania", "Sven", "Tomás", "Uma", "Vikram", "Wen", "Yara"]
LAST = ["Meyer", "Okafor", "Dubois", "Rossi", "Tanaka", "Nowak", "García", "Andersen", "Kowalski", "Haddad",
        "Schmidt", "Lindqvist", "Moreau", "Ivanova", "Chen", "Silva", "O'Brien", "Novak", "Patel", "Kim"]
COMPANIES = ["Northwind Analytics", "Bluefin Robotics GmbH", "Acme Data Inc.", "Polar Ledger", "Kestrel Health",
             "Tidewater Logistics Ltd", "Juniper Security", "Orbital Foods", "Brightline Payments SA", "Quanta Labs"]
TITLES = ["Founder", "CTO", "Head of Growth", "VP Engineering", "CEO", "Head of Sales", "COO", "Product Lead"]
ZONES = [("Europe/Berlin", 30), ("America/New_York", 25), ("Europe/London", 15), ("America/Los_Angeles", 10),
         ("Asia/Singapore", 5), ("", 10), ("Mars/Olympus_Mons", 5)]


@dataclass
class SimOptions:
    leads: int = 1000
    leads_file: str | None = None
    days: int = 30
    seed: int = 0
    accept_rate: float | None = None
    reply_rate: float | None = None
    start: dt.datetime = dt.datetime(2026, 1, 5, tzinfo=dt.UTC)
    poll_every: dt.timedelta = dt.timedelta(minutes=30)
    wire: bool = False  # the senders' real drivers against their fake servers over HTTP
    provider: str | None = None  # with `wire`: every sender through this provider
    #: how long after seqrun paused a sender (its session expired) the simulated human has
    #: re-authenticated it and run `seqrun senders resume`; None: `sandbox.reauth_after_hours` (24 h)
    reauth_after: dt.timedelta | None = None


@dataclass
class SimReport:
    sequence: str
    leads: int
    days: int
    start: dt.datetime
    end: dt.datetime
    steps: list[dict[str, Any]] = field(default_factory=list)
    outcomes: dict[str, int] = field(default_factory=dict)
    states: dict[str, int] = field(default_factory=dict)
    usage: list[dict[str, Any]] = field(default_factory=list)
    accept_to_message_hours: dict[str, float | int | None] = field(default_factory=dict)
    variants: dict[str, dict[str, int]] = field(default_factory=dict)
    #: per message step: messages sent and the replies each brought
    replies: list[dict[str, Any]] = field(default_factory=list)
    #: per sender and action, leads holding a paced slot after the end, and the last day booked
    booked: list[dict[str, Any]] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    #: per sender, provider quota (runner.providers.QUOTAS) and window: actions performed in it
    quotas: list[dict[str, Any]] = field(default_factory=list)
    #: every time a sender was paused: who, why, from, until (None: still paused at the end), hours
    pauses: list[dict[str, Any]] = field(default_factory=list)
    reauth_after_hours: float = 0.0
    ticks: int = 0
    transitions: int = 0
    wire: dict[str, Any] | None = None  # with --wire: requests made, ledger against audit
    #: every simulated hour: leads holding a paced slot (waiting for their turn), per action
    queue: list[dict[str, Any]] = field(default_factory=list)
    #: hours from acceptance to the first message, per lead that got that far (for the HTML report)
    accept_hours: list[float] = field(default_factory=list)
    #: per A/B variant of a message step: leads assigned, messages sent, leads who replied after one
    ab: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "sequence": self.sequence, "leads": self.leads, "days": self.days,
            "start": self.start.isoformat(), "end": self.end.isoformat(), "steps": self.steps,
            "outcomes": self.outcomes, "states": self.states, "usage": self.usage,
            "accept_to_first_message_hours": self.accept_to_message_hours, "variants": self.variants,
            "replies_per_message": self.replies,
            "booked_after_end": self.booked, "provider_quotas": self.quotas,
            "violations": self.violations, "sender_pauses": self.pauses, "reauth_after_hours": self.reauth_after_hours,
            "ticks": self.ticks, "transitions": self.transitions, "ab_results": self.ab,
            **({"wire": self.wire} if self.wire is not None else {}),
        }


class VirtualClock:
    """A clock moved by hand: the simulation's (and the tests') `clock=` for the sandbox."""

    def __init__(self, start: dt.datetime) -> None:
        self.now = start

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, delta: dt.timedelta | None = None, **units: float) -> dt.datetime:
        self.now += delta if delta is not None else dt.timedelta(**units)
        return self.now


class SimulatedHuman:
    """The person behind the senders: when seqrun pauses a sender because its session expired, they
    re-authenticate it `delay` later and run `seqrun senders resume` (the same code). Every pause,
    of any reason, is recorded for the report; only expired sessions are renewed."""

    def __init__(self, runtime: Runtime, provider: SandboxProvider, delay: dt.timedelta) -> None:
        self.rt, self.provider, self.delay = runtime, provider, delay
        self.pauses: list[dict[str, Any]] = []
        self._open: dict[int, dict[str, Any]] = {}  # sender id -> its current pause
        self._renew_at: dict[int, dt.datetime] = {}

    def notice(self, now: dt.datetime) -> None:
        """After a tick: senders paused since the last look."""
        for sender_id, name, reason in stored.paused_senders():
            if sender_id in self._open:
                continue
            pause = {"sender": name, "reason": reason or "no reason recorded", "from": now.isoformat(),
                     "until": None, "hours": None}
            self._open[sender_id] = pause
            self.pauses.append(pause)
            if reason == AUTH_EXPIRED:
                self._renew_at[sender_id] = now + self.delay

    def act(self, now: dt.datetime) -> None:
        """Before a tick: renew the sessions whose time has come and resume their senders."""
        for sender_id, at in sorted(self._renew_at.items()):
            if at > now:
                continue
            del self._renew_at[sender_id]
            sender = self.rt.senders[sender_id]
            self.provider.restore_auth(sender.account.account_id)
            resume(Target(SENDER, sender_id, f"sender {sender.name}"), now)
            self._close(sender_id, now)

    def next_at(self) -> dt.datetime | None:
        return min(self._renew_at.values(), default=None)

    def finish(self, end: dt.datetime) -> None:
        """Pauses still open at the end count up to it (their `until` stays None)."""
        for pause in self._open.values():
            pause["hours"] = _hours_between(pause["from"], end)

    def _close(self, sender_id: int, now: dt.datetime) -> None:
        pause = self._open.pop(sender_id)
        pause["until"] = now.isoformat()
        pause["hours"] = _hours_between(pause["from"], now)


def _hours_between(start: str, end: dt.datetime) -> float:
    return round((end - dt.datetime.fromisoformat(start)).total_seconds() / 3600, 1)


def synthetic_leads(seq: Sequence, n: int, seed: int) -> list[dict[str, str]]:
    """`n` plausible leads with every field the sequence declares; required fields always filled."""
    rng = random.Random(seed)
    zones, weights = zip(*ZONES, strict=True)
    rows = []
    for i in range(n):
        first, last = rng.choice(FIRST), rng.choice(LAST)
        values = {
            "linkedin_profile_url": f"https://www.linkedin.com/in/sim-{i:06d}-{last.lower().replace(chr(39), '')}",
            "full_name": f"{first} {last}", "first_name": first, "last_name": last,
            "company_name": rng.choice(COMPANIES), "title": rng.choice(TITLES),
            "timezone": rng.choices(zones, weights)[0],
        }
        row = {"linkedin_profile_url": values["linkedin_profile_url"]}
        for spec in seq.fields:
            value = values.get(spec.name, f"{spec.name.replace('_', ' ').title()} {i}")
            if spec.required or rng.random() < 0.85:
                row[spec.name] = value
        if "timezone" not in row and values["timezone"]:
            row["timezone"] = values["timezone"]
        rows.append(row)
    return rows


def enroll(seq: Sequence, rows: Iterable[Mapping[str, str]], sender_ids: list[int], now: dt.datetime) -> int:
    """Bulk-create leads and their enrollments (new store only), senders assigned round-robin."""
    from runner.language.urls import normalize_profile_url

    stamp = to_db_time(now)
    leads = []
    for row in rows:
        key, url = normalize_profile_url(row["linkedin_profile_url"])
        fields = {k: v for k, v in row.items() if k != "linkedin_profile_url" and v}
        leads.append((key, url, _json(fields), fields.get("timezone"), stamp, stamp))
    with writing():
        leadbook.insert_new_leads(leads)
        count = leadbook.enroll(((lead_id, sender_ids[i % len(sender_ids)])
                                 for i, lead_id in enumerate(leadbook.all_lead_ids())),
                                sequence=seq.name, sequence_hash=seq.source_hash, step_id=seq.steps[0].id, now=now)
        remember(seq, now)
    return count


def _json(value: dict[str, Any]) -> str:
    """A lead's fields as the store keeps JSON (sorted keys, no spaces, characters as they are)."""
    return _FIELDS_JSON.encode(value)  # (one encoder: `json.dumps` builds one per call, for every lead)


def run_simulation(seq: Sequence, config: Config, options: SimOptions,
                   progress: Callable[[float], None] | None = None) -> SimReport:
    """Simulate `seq` in the already opened (empty) store. See the module docstring."""
    clock = VirtualClock(options.start)
    sandbox_options = dict(config.sandbox)
    # The simulated LinkedIn of a simulation lives and dies with it, on its own virtual clock: it
    # never reads or writes the state file that `seqrun run` shares between its processes, and it
    # never sleeps in real time (`sleep_ms` is for trying several runners against a slow provider).
    sandbox_options.pop("state_path", None)
    sandbox_options.pop("sleep_ms", None)
    sandbox_options["seed"] = options.seed
    reauth_after = options.reauth_after or dt.timedelta(hours=float(sandbox_options.get("reauth_after_hours", 24.0)))
    sandbox_options["reauth_after_hours"] = reauth_after.total_seconds() / 3600
    if options.accept_rate is not None:
        sandbox_options["accept_rate"] = options.accept_rate
    if options.reply_rate is not None:
        sandbox_options["reply_rate"] = options.reply_rate
    provider = SandboxProvider(clock=clock, **sandbox_options)
    # Simulated senders need no credentials: the sandbox and the fakes accept what seqrun generates.
    allowed = [dataclasses.replace(s, credentials_env={}) for s in config.senders
               if not seq.senders or s.name in seq.senders]
    if not allowed:
        raise UserError(_no_senders(seq, config))
    sim_config = Config(path=config.path, root=config.root, database=None, senders=tuple(allowed), sandbox={},
                        retry_budget_hours=config.retry_budget_hours)
    rows = sync_senders(sim_config, options.start)
    posted: list[str] = []
    with contextlib.ExitStack() as stack:
        stack.enter_context(_full_collections_rarely())
        if not options.wire:
            # The simulation's store is its own (with --wire, the webhook receiver's thread stores
            # deliveries through a connection of its own): see runner.store.transactions.
            stack.enter_context(sole_writer())
        wire = None
        provider_for: Callable[..., Any] = lambda sc, cred: provider  # noqa: E731
        if options.wire:
            from runner.wire import SIMULATED_KEY, WireSession

            wire = stack.enter_context(WireSession(clock, options.seed, sandbox_options, options.provider))
            wire.register(allowed)
            provider_for = lambda sc, cred: wire.driver(sc) if wire.is_wired(sc) else provider  # noqa: E731
        runtime = build_runtime(sim_config, {seq.name: seq}, rows, provider_for=provider_for,
                                notifier=lambda url, headers, payload: posted.append(url),
                                poll_every=options.poll_every, getenv=lambda name: "(simulated)",
                                calls_in_process=not options.wire, batch=500)  # one process: no one to share with
        if wire is not None:
            for sender in runtime.senders.values():
                if sender.name in wire.wired:
                    sender.account = dataclasses.replace(sender.account, credentials={"api_key": SIMULATED_KEY})
                    sender.account = wire.prepare(sim_config.sender(sender.name), sender.account)  # type: ignore[arg-type]
            apply_provider_limits(runtime)  # as `seqrun run` does: never above the provider's own limits
        introduce = None
        if wire is not None:
            account_ids = {sid: sender.account.account_id for sid, sender in runtime.senders.items()}
            introduce = lambda: wire.introduce_leads(account_ids)  # noqa: E731
        report = _simulate(seq, options, clock, runtime, rows, progress, introduce,
                           human=SimulatedHuman(runtime, provider, reauth_after),
                           before_tick=wire.before_tick if wire is not None else None)
        if wire is not None:
            compared = wire.compare(seq.name)
            report.wire = compared.to_json()
            report.violations += [f"wire: {m}" for m in compared.mismatches]
    return report


def _simulate(seq: Sequence, options: SimOptions, clock: VirtualClock, runtime: Runtime, rows: Mapping[str, Any],
              progress: Callable[[float], None] | None, before_start: Callable[[], None] | None = None, *,
              human: SimulatedHuman, before_tick: Callable[[dt.datetime], None] | None = None) -> SimReport:
    entered: Counter[str] = Counter()
    runtime.observer = lambda seq_name, step_id: entered.__setitem__(step_id, entered[step_id] + 1)
    if options.leads_file:
        lead_rows = _csv_rows(options.leads_file, seq)
    else:
        lead_rows = synthetic_leads(seq, options.leads, options.seed)
    count = enroll(seq, lead_rows, [r.id for r in rows.values()], options.start)
    entered[seq.steps[0].id] += count
    if before_start is not None:
        before_start()
    engine = Engine(runtime)
    end = options.start + dt.timedelta(days=options.days)
    report = SimReport(seq.name, count, options.days, options.start, end)
    now = options.start
    sample_at = options.start
    with _ticks_transaction(runtime) as commit_now:
        while now < end:
            if report.ticks % TICKS_PER_COMMIT == 0:
                commit_now()
            clock.now = now
            human.act(now)
            if before_tick is not None:
                before_tick(now)
            tick = engine.tick(now)
            human.notice(now)
            sample_at = _sample_queue(report, now, sample_at, end)
            report.ticks += 1
            report.transitions += tick.transitions
            if progress:
                progress((now - options.start) / (end - options.start))
            nxt = min((t for t in (engine.next_due(), human.next_at()) if t is not None), default=None)
            if nxt is None:
                break
            now = max(nxt, now + dt.timedelta(seconds=1))
    clock.now = end
    _sample_queue(report, end, sample_at, end + dt.timedelta(hours=1))
    human.finish(end)
    report.pauses, report.reauth_after_hours = human.pauses, round(human.delay.total_seconds() / 3600, 2)
    _fill_report(report, seq, runtime, entered, end)
    report.violations = audit.violations({seq.name: seq}, runtime)
    if progress:
        progress(1.0)
    return report


#: Collections of the young generations between two full ones during a simulation (Python's default: 10).
FULL_COLLECTION_EVERY = 1000


@contextlib.contextmanager
def _full_collections_rarely() -> Iterator[None]:
    """Python's cyclic garbage collector, for the simulation, walks everything alive only rarely.

    A simulation builds a large heap that lives until its end: the simulated LinkedIn's state of
    every lead, and the rows the store keeps (`runner.store.kept`). By default every full
    collection walks all of it again, and the heap's growth sets one off again and again (100k leads:
    9 of them, about 1 s of a 25 s run). What a lead's run leaves behind is short-lived and still
    collected, by the young generations, so memory stays the same. The thresholds are the
    process's own and are put back afterwards."""
    before = gc.get_threshold()
    gc.set_threshold(before[0], before[1], max(before[2], FULL_COLLECTION_EVERY))
    try:
        yield
    finally:
        gc.set_threshold(*before)


#: Ticks of an in-process simulation that share one transaction (see `_ticks_transaction`).
TICKS_PER_COMMIT = 256


@contextlib.contextmanager
def _ticks_transaction(runtime: Runtime) -> Iterator[Callable[[], None]]:
    """Around the ticks of an in-process simulation (`Runtime.calls_in_process`: the store is the
    simulation's own and no call leaves the process): one transaction for `TICKS_PER_COMMIT` ticks,
    everything the engine commits inside it a savepoint, so that the store writes its pages once
    for many ticks instead of at every tick (most ticks move one lead). What is stored is the
    same. Yields "commit now" (and go on in a new transaction). With --wire nothing is wrapped:
    the fakes' webhooks come in through the receiver's own connection, which must see each commit."""
    if not runtime.calls_in_process:
        yield lambda: None
        return
    with writing(immediate=True) as txn:
        yield txn.commit


def _sample_queue(report: SimReport, now: dt.datetime, sample_at: dt.datetime, end: dt.datetime) -> dt.datetime:
    """Record the queue at every whole hour up to `now` (it only changes at ticks); the next hour to sample."""
    if sample_at > now:
        return sample_at
    booked = stored.reserved_by_action()
    while sample_at <= now and sample_at < end:
        report.queue.append({"at": sample_at.isoformat(), "booked": booked})
        sample_at += dt.timedelta(hours=1)
    return sample_at


def _no_senders(seq: Sequence, config: Config) -> str:
    where = config.path or "the embedded default config"
    if not config.senders:
        return (f"{where} defines no senders, so nobody can send for sequence \"{seq.name}\"; add one under "
                "`senders:` (see docs/config.md), or simulate without a seqrun.yaml to use the built-in sandbox sender")
    return (f"sequence \"{seq.name}\" runs on senders {', '.join(seq.senders)}, but {where} defines only "
            f"{', '.join(s.name for s in config.senders)}")


def _reply_yield(seq: Sequence, replied_at: Mapping[int, dt.datetime]) -> list[dict[str, Any]]:
    """Per message step: messages sent, and replies it brought (a reply is credited to the last
    message the lead received before it), so each follow-up's yield shows."""
    sent: Counter[str] = Counter()
    last_before: dict[int, str] = {}
    for enrollment_id, step_id, performed in stored.messages_sent(seq.name):
        sent[step_id] += 1
        reply = replied_at.get(enrollment_id)
        if reply is not None and performed <= reply:  # type: ignore[operator]
            last_before[enrollment_id] = step_id
    replies = Counter(last_before.values())
    return [{"step": step.id, "sent": sent[step.id], "replies": replies[step.id]}
            for step in seq.steps if isinstance(step, ActionStep) and step.action == "message"]


def _csv_rows(path: str, seq: Sequence) -> list[dict[str, str]]:
    from runner.language.diagnostics import UserError, has_errors

    leads = read_leads(path, required_fields=[f.name for f in seq.fields if f.required])
    if has_errors(leads.diagnostics):
        raise UserError("the leads file has errors", leads.diagnostics)
    return [{**row.fields, "linkedin_profile_url": row.profile_url} for row in leads.rows if row.key and row.profile_url]


def _fill_report(report: SimReport, seq: Sequence, rt: Runtime, entered: Counter[str], end: dt.datetime) -> None:
    waiting = Counter(stored.active_by_step(seq.name))
    by_step: dict[str, Counter[str]] = defaultdict(Counter)
    for step_id, status, n in reports.actions_by_step(seq.name):
        by_step[step_id][status] = n
    for step in seq.steps:
        entry: dict[str, Any] = {"id": step.id, "kind": step.kind, "entered": entered.get(step.id, 0),
                                 "waiting": waiting.get(step.id, 0)}
        if isinstance(step, ActionStep):
            entry["action"] = step.action
            entry.update({k: by_step[step.id].get(k, 0) for k in ("done", "skipped", "failed", "in_flight")})
        report.steps.append(entry)
    report.outcomes = reports.outcomes_of(seq.name)
    report.states = reports.states_of(seq.name)
    first_action = first_action_times()
    for sender in rt.senders.values():
        caps = dataclasses.replace(sender.caps, first_action_at=first_action[sender.id])
        for day, action, used in stored.usage_by_day(sender.id):
            if not used:
                continue
            seq_cap, sender_cap = caps_for(seq, caps, action, dt.date.fromisoformat(day))
            report.usage.append({"sender": sender.name, "day": day, "action": action, "used": used, "limit": seq_cap})
        for action, day, booked in stored.bookings(sender.id):
            report.booked.append({"sender": sender.name, "action": action, "until": day, "leads": booked})
        provider = getattr(sender.provider, "name", "")
        for quota in QUOTAS.get(provider, ()):
            for start, used in by_window(quota, performed_times(sender.id, quota.action)).items():
                report.quotas.append({"sender": sender.name, "provider": provider, "action": quota.action,
                                      "period": quota.period, "window": start.date().isoformat(), "used": used,
                                      "limit": quota.limit})
    hours = []
    variants: dict[str, Counter[str]] = defaultdict(Counter)
    replied_at: dict[int, dt.datetime] = {}
    for enrollment_id, facts_json in stored.facts_of(seq.name):
        facts = read_json(facts_json)
        if facts.get("replied_at"):
            replied_at[enrollment_id] = dt.datetime.fromisoformat(facts["replied_at"])
        if facts.get("accepted_at") and facts.get("first_message_at"):
            delta = dt.datetime.fromisoformat(facts["first_message_at"]) - dt.datetime.fromisoformat(facts["accepted_at"])
            if delta.total_seconds() >= 0:
                hours.append(delta.total_seconds() / 3600)
        for step_id, name in (facts.get("variants") or {}).items():
            variants[step_id][name] += 1
    report.variants = {k: dict(v) for k, v in variants.items()}
    report.replies = _reply_yield(seq, replied_at)
    report.accept_hours = [round(h, 2) for h in hours]
    report.ab = [{"step": step_id, "variant": name, "assigned": variants.get(step_id, Counter()).get(name, 0), "sent": sent,
                  "replied": replied} for step_id, name, sent, replied in variant_results(seq.name)]
    if hours:
        hours.sort()
        report.accept_to_message_hours = {"count": len(hours), "median": round(statistics.median(hours), 1),
                                          "p90": round(hours[min(len(hours) - 1, int(len(hours) * 0.9))], 1)}
    else:
        report.accept_to_message_hours = {"count": 0, "median": None, "p90": None}


__all__ = ["SimOptions", "SimReport", "run_simulation", "synthetic_leads", "enroll"]
