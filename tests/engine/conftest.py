"""Fixtures for the interpreter tests: a real SQLite store in tmp_path, a project the test writes, a
clock the test moves, and `EngineHarness`, which wires Config -> Runtime -> Engine around a sandbox.

Every harness starts at a fixed UTC instant and moves only when a test says so (`tick(at)`) or when
`run` jumps the clock to `engine.next_due()`. Nothing sleeps, nothing reads the wall clock.

Between the engine and the sandbox sits a `ScriptedProvider`: it records every call with its
arguments and fails calls the way a test scripts it (before the inner provider acts, or after it
acted: a lost response), so error reactions can be asserted exactly.
"""
from __future__ import annotations

import datetime as dt
import pathlib
from collections import defaultdict, deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import pytest

from runner.engine.loop import Engine, TickReport
from runner.language.model import Sequence
from runner.project.config import Config, SenderConfig
from runner.project.discovery import build_runtime, load_sequences, sync_senders
from runner.providers.base import Account, ActionResult, Conversation, LeadRef, PollResult, Provider, Relationship
from runner.providers.sandbox import SandboxProvider
from runner.simulate import VirtualClock, enroll
from runner.store import Action, Enrollment, Lead, Sender, Usage, db, open_store

UTC = dt.UTC
#: Monday 2 March 2026, 07:00 UTC = 08:00 in Berlin: an hour before a 09:00 window opens.
MONDAY = dt.datetime(2026, 3, 2, 7, 0, tzinfo=UTC)
BERLIN_10AM = dt.datetime(2026, 3, 2, 9, 0, tzinfo=UTC)

#: Every lead is a stranger on first sight: no connection, invite, thread or hidden profile.
NO_HISTORY: dict[str, Any] = dict(connected_rate=0.0, pending_rate=0.0, messaged_first_rate=0.0,
                                  recent_conversation_rate=0.0, inaccessible_rate=0.0)
#: Strangers who accept every invite after exactly 2 hours and never reply.
ACCEPTING: dict[str, Any] = dict(accept_rate=1.0, accept_delay_hours=(2, 2), reply_rate=0.0, **NO_HISTORY)

ALICE = SenderConfig(name="alice", provider="sandbox", account_id="acc-alice", timezone="Europe/Berlin",
                     full_name="Alice Example")

TEMPLATES: dict[str, str] = {
    "note.j2": "Hi {{ lead.full_name | first_name | fallback('there') }}, let's connect.",
    "thanks.j2": "Thanks for accepting, {{ lead.full_name | first_name | fallback('there') }}!",
    "intro.j2": "Hi {{ lead.full_name | first_name | fallback('there') }}, I'm {{ sender.full_name }}.",
    "follow_up.j2": "Any thoughts, {{ lead.full_name | first_name | fallback('there') }}?",
}

CALENDAR = """\
calendar:
  timezone: lead
  fallback: Europe/Berlin
  days: [mon, tue, wed, thu, fri]
  hours: ["09:00-17:00"]
"""


def sequence_yaml(name: str, steps: str, *, calendar: str = CALENDAR, limits: str = "",
                  exits: str = "exit_when: [replied, blocked]\n") -> str:
    """A sequence file with the fields every test template uses; `steps` is the YAML list body."""
    return (f"version: 1\nname: {name}\nfields:\n  full_name: optional\n  timezone: optional\n"
            f"{calendar}{limits}{exits}steps:\n{steps}")


def lead_row(name: str, **fields: str) -> dict[str, str]:
    return {"linkedin_profile_url": f"https://www.linkedin.com/in/{name}",
            "full_name": f"{name.title()} Example", **fields}


FakeClock = VirtualClock  # a clock tests move by hand


class Crash(BaseException):
    """The process dying in the middle of a provider call (not an Exception: nothing catches it)."""


@dataclass(frozen=True)
class Call:
    method: str
    kwargs: dict[str, Any]


class ScriptedProvider:
    """A `Provider` that delegates to `inner`, records every call and fails calls as scripted.

    `fail(method, error)` makes the next call of `method` raise `error` before `inner` is asked;
    with `after=True` the inner provider acts first and the error is raised afterwards (the action
    happened but its response was lost). Errors queue per method, in order.
    """

    def __init__(self, inner: Provider) -> None:
        self.inner = inner
        self.name = inner.name
        self.capabilities = inner.capabilities
        self.calls: list[Call] = []
        self._script: dict[str, deque[tuple[BaseException, bool]]] = defaultdict(deque)

    def fail(self, method: str, error: BaseException, *, times: int = 1, after: bool = False) -> None:
        for _ in range(times):
            self._script[method].append((error, after))

    def called(self, method: str) -> list[dict[str, Any]]:
        return [c.kwargs for c in self.calls if c.method == method]

    def _do(self, method: str, **kwargs: Any) -> Any:
        self.calls.append(Call(method, {k: v for k, v in kwargs.items() if k != "account"}))
        error, after = self._script[method].popleft() if self._script[method] else (None, False)
        if error is not None and not after:
            raise error
        result = getattr(self.inner, method)(**kwargs)
        if error is not None:
            raise error
        return result

    def relationship(self, account: Account, lead: LeadRef) -> Relationship:
        return self._do("relationship", account=account, lead=lead)

    def conversation(self, account: Account, lead: LeadRef) -> Conversation:
        return self._do("conversation", account=account, lead=lead)

    def visit(self, account: Account, lead: LeadRef, *, key: str) -> ActionResult:
        return self._do("visit", account=account, lead=lead, key=key)

    def connect(self, account: Account, lead: LeadRef, *, note: str | None, key: str) -> ActionResult:
        return self._do("connect", account=account, lead=lead, note=note, key=key)

    def send_message(self, account: Account, lead: LeadRef, *, text: str, conversation_id: str | None,
                     subject: str | None, inmail: bool, key: str) -> ActionResult:
        return self._do("send_message", account=account, lead=lead, text=text, conversation_id=conversation_id,
                        subject=subject, inmail=inmail, key=key)

    def withdraw(self, account: Account, lead: LeadRef, *, invitation_id: str | None, key: str) -> ActionResult:
        return self._do("withdraw", account=account, lead=lead, invitation_id=invitation_id, key=key)

    def find_action(self, account: Account, lead: LeadRef, *, action: str, key: str,
                    since: dt.datetime) -> ActionResult | None:
        return self._do("find_action", account=account, lead=lead, action=action, key=key, since=since)

    def poll_events(self, account: Account, *, since: dt.datetime | None) -> PollResult:
        return self._do("poll_events", account=account, since=since)


class EngineHarness:
    """One project, one store, one simulated LinkedIn; `engine` is rebuilt by `restart()`."""

    def __init__(self, root: pathlib.Path, *, start: dt.datetime, sandbox: Mapping[str, Any],
                 senders: tuple[SenderConfig, ...], knobs: Mapping[str, Any]) -> None:
        self.root = root
        self.db_url = ""  # set by make_harness
        self.sequences: dict[str, Sequence] = load_sequences([str(root / "sequences")])
        self.config = Config(path=None, root=str(root), database=None, senders=senders)
        self.clock = FakeClock(start)
        self.sandbox = SandboxProvider(clock=self.clock, **sandbox)
        self.provider = ScriptedProvider(self.sandbox)
        self.knobs = dict(knobs)
        self.notified: list[tuple[str, dict[str, Any]]] = []
        self.rows = sync_senders(self.config, start)
        self.engine = self.restart()

    @property
    def now(self) -> dt.datetime:
        return self.clock.now

    @property
    def seq(self) -> Sequence:
        (only,) = self.sequences.values()
        return only

    def restart(self, provider: Provider | None = None) -> Engine:
        """A new process: a new runtime and engine over the same store and simulated LinkedIn."""
        runtime = build_runtime(self.config, self.sequences, self.rows,
                                provider_for=lambda sc, cred: provider or self.provider,
                                notifier=lambda url, headers, payload: self.notified.append((url, dict(payload))),
                                **self.knobs)
        self.engine = Engine(runtime)
        return self.engine

    def sender_id(self, name: str = "alice") -> int:
        return self.rows[name].id

    def enroll(self, *rows: Mapping[str, str], sequence: str | None = None) -> int:
        """Enroll leads (a new store only: `simulate.enroll` enrolls every lead in the table)."""
        seq = self.sequences[sequence] if sequence else self.seq
        return enroll(seq, rows, [r.id for r in self.rows.values()], self.now)

    def tick(self, at: dt.datetime | None = None) -> TickReport:
        if at is not None:
            self.clock.now = at
        return self.engine.tick(self.now)

    def run(self, until: dt.datetime | None = None, *, days: float | None = None,
            stop: Callable[[], bool] | None = None) -> list[TickReport]:
        """Tick, jump the clock to the next moment anything is due, repeat until `until` (exclusive)."""
        end = until if until is not None else self.now + dt.timedelta(days=days or 0)
        reports = []
        while self.now < end:
            report = self.engine.tick(self.now)
            reports.append(report)
            if stop is not None and stop():
                break
            nxt = self.engine.next_due()
            if nxt is None:
                break
            self.clock.now = max(nxt, self.now + dt.timedelta(seconds=1))
        return reports

    # --- reading the store -------------------------------------------------------------------

    def enrollment(self, name: str) -> Enrollment:
        return (Enrollment.select().join(Lead).where(Lead.key == name).get())

    def lead(self, name: str) -> Lead:
        return Lead.get(Lead.key == name)

    def actions(self, name: str | None = None, *, action: str | None = None) -> list[Action]:
        query = Action.select().join(Lead, on=(Action.lead == Lead.id)).order_by(Action.id)
        if name is not None:
            query = query.where(Lead.key == name)
        if action is not None:
            query = query.where(Action.action == action)
        return list(query)

    def used(self, action: str, day: str, sender: str = "alice") -> int:
        return sum(u.used for u in Usage.select().where(Usage.sender == self.sender_id(sender), Usage.action == action,
                                                       Usage.day == day))

    def sender_row(self, name: str = "alice") -> Sender:
        return Sender.get_by_id(self.sender_id(name))


HarnessFactory = Callable[..., EngineHarness]


def write_project(root: pathlib.Path, sequences: Mapping[str, str] | str,
                  templates: Mapping[str, str] | None = None) -> pathlib.Path:
    """sequences/<name>.yaml and templates/*.j2 under `root` (a bare string is sequence "s")."""
    (root / "sequences").mkdir(parents=True, exist_ok=True)
    (root / "templates").mkdir(exist_ok=True)
    files = {"s": sequences} if isinstance(sequences, str) else dict(sequences)
    for name, text in files.items():
        (root / "sequences" / f"{name}.yaml").write_text(text, encoding="utf-8")
    for name, text in {**TEMPLATES, **(templates or {})}.items():
        (root / "templates" / name).write_text(text + "\n", encoding="utf-8")
    return root


@pytest.fixture
def make_harness(tmp_path: pathlib.Path, store_url: str) -> Iterator[HarnessFactory]:
    """make_harness(sequences, templates=..., sandbox=..., senders=..., start=..., **runtime knobs)."""

    def make(sequences: Mapping[str, str] | str, *, templates: Mapping[str, str] | None = None,
             sandbox: Mapping[str, Any] | None = None, senders: tuple[SenderConfig, ...] = (ALICE,),
             start: dt.datetime = MONDAY, **knobs: Any) -> EngineHarness:
        write_project(tmp_path / "project", sequences, templates)
        open_store(store_url, durable=False)
        options = {"seed": 1, **ACCEPTING, **(sandbox or {})}
        harness = EngineHarness(tmp_path / "project", start=start, sandbox=options, senders=senders, knobs=knobs)
        harness.db_url = store_url  # for commands the test runs on the same store
        return harness

    yield make
    if not db.is_closed():
        db.close()
