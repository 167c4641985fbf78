"""`seqrun simulate --wire`: the senders' real drivers against their fakes over HTTP on 127.0.0.1.

`WireSession` starts one fake server per HTTP provider the simulated senders use (all of them with
`--provider NAME`), each over its own simulated LinkedIn on the simulation's virtual clock, and
builds the real driver for each sender with a client pointed at it. Credentials are not needed: the
fakes accept the key seqrun generates. Drivers run with their pagination spacing and request
budget off, because the virtual clock does not move inside a tick (a real run spaces them).

Afterwards `compare` checks the fake's ledger of performed actions against seqrun's audit log:
the same actions under the same idempotency keys, none performed twice. A provider that carries no
key on the wire (ConnectSafely) is compared by (account, action, lead): the same number of each. A
fake may add checks of its own (`wire_check() -> (facts, problems)`), such as a weekly quota kept.
"""
from __future__ import annotations

import collections
import contextlib
import dataclasses
import datetime as dt
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from .config import SenderConfig
from .diagnostics import UserError
from .providers import PROVIDERS
from .providers.base import Provider
from .providers.fakeserver import FakeClock, FakeHTTPServer
from .providers.http import make_client
from .store import db

SIMULATED_KEY = "seqrun-simulated-key"
#: provider name -> the fake app's factory(clock, seed, sandbox options); one line per HTTP provider.
FAKES: dict[str, Callable[[FakeClock, int, Mapping[str, Any]], Any]] = {}


def _edges_fake(clock: FakeClock, seed: int, sandbox: Mapping[str, Any]) -> Any:
    from .providers.edges.fake import EdgesFake

    # Smart Limits off: the sequence's and senders' own limits are what the audit checks.
    return EdgesFake(clock=clock, seed=seed, smart_limits=None, sandbox=sandbox)


def _connectsafely_fake(clock: FakeClock, seed: int, sandbox: Mapping[str, Any]) -> Any:
    from .providers.connectsafely.fake import ConnectSafelyFake

    # Per-minute budgets off (the virtual clock stands still inside a tick); quotas on: keeping the
    # weekly invitation quota is what the simulation checks.
    return ConnectSafelyFake(clock=clock, seed=seed, budgets=None, sandbox=sandbox)


FAKES["edges"] = _edges_fake
FAKES["connectsafely"] = _connectsafely_fake
#: where each provider's API lives on its fake server
PATHS = {"edges": "/v1", "connectsafely": "/linkedin"}


@dataclass
class WireReport:
    providers: list[str] = field(default_factory=list)
    requests: int = 0  # HTTP requests the drivers made
    ledger_actions: int = 0  # actions the fakes performed
    audit_actions: int = 0  # actions seqrun recorded as done at a provider
    mismatches: list[str] = field(default_factory=list)
    checks: dict[str, Any] = field(default_factory=dict)  # provider name -> what its fake's wire_check found

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class WireSession:
    """Fakes and drivers for one simulation; use as a context manager."""

    def __init__(self, clock: Callable[[], dt.datetime], seed: int, sandbox: Mapping[str, Any],
                 provider: str | None = None) -> None:
        if provider is not None and provider != "sandbox" and provider not in FAKES:
            raise UserError(f"--provider {provider}: no fake server for it in this version "
                            f"(available: {', '.join(sorted(FAKES))})")
        self.provider = provider
        self._clock, self._seed, self._sandbox = clock, seed, dict(sandbox)
        self._stack = contextlib.ExitStack()
        self.fakes: dict[str, Any] = {}
        self.drivers: dict[str, Provider] = {}
        self.wired: set[str] = set()  # names of the senders acting through a fake
        self._providers: dict[str, str] = {}  # sender name -> provider name

    def __enter__(self) -> WireSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    def provider_name(self, sc: SenderConfig) -> str:
        return self.provider or sc.provider

    def is_wired(self, sc: SenderConfig) -> bool:
        return self.provider_name(sc) in FAKES

    def register(self, senders: list[SenderConfig]) -> None:
        """Note which senders act through a fake (drivers are shared, so not all of them ask for one)."""
        for sc in senders:
            if self.is_wired(sc):
                self.wired.add(sc.name)
                self._providers[sc.name] = self.provider_name(sc)

    def driver(self, sc: SenderConfig) -> Provider:
        """The real driver of the sender's provider, talking to that provider's fake."""
        name = self.provider_name(sc)
        self.wired.add(sc.name)
        self._providers[sc.name] = name
        if name not in self.drivers:
            options = {k: v for k, v in self._sandbox.items() if k not in ("seed", "state_path")}
            fake = FAKES[name](FakeClock(self._clock), self._seed, options)
            server = self._stack.enter_context(FakeHTTPServer(fake))
            client = self._stack.enter_context(make_client(server.url + PATHS[name]))
            self.fakes[name] = fake
            self.drivers[name] = PROVIDERS[name](client=client, clock=self._clock, sleep=lambda s: None,
                                                 page_delay=0.0)
        return self.drivers[name]

    def introduce_leads(self, account_ids: Mapping[int, str]) -> None:
        """Every enrolled lead exists in its sender's fake from the start (see `EdgesFake.introduce`)."""
        by_sender: dict[int, list[str]] = collections.defaultdict(list)
        for sender_id, url in db.execute_sql(
                "SELECT e.sender_id, l.profile_url FROM enrollment e JOIN lead l ON l.id = e.lead_id").fetchall():
            by_sender[sender_id].append(url)
        names = dict(db.execute_sql("SELECT id, name FROM sender").fetchall())
        for sender_id, urls in by_sender.items():
            sender = names.get(sender_id)
            if sender in self.wired and sender_id in account_ids:
                name = self.provider or self._providers[sender]
                self.fakes[name].introduce(account_ids[sender_id], urls)

    def compare(self, sequence: str) -> WireReport:
        """The fakes' ledgers against the audit log (actions done at a provider)."""
        report = WireReport(providers=sorted(self.fakes))
        report.requests = sum(getattr(d, "requests", 0) for d in self.drivers.values())
        keyed = {name for name, fake in self.fakes.items() if getattr(fake, "keyed_ledger", True)}
        ledger: collections.Counter[str] = collections.Counter()
        unkeyed: collections.Counter[tuple[str, str, str]] = collections.Counter()
        for name, fake in self.fakes.items():
            for entry in fake.ledger:
                if name in keyed:
                    ledger[str(entry.get("seqrun_key"))] += 1
                else:  # no key on the wire: (account, action, lead)
                    unkeyed[(str(entry["account_id"]), str(entry["action"]), str(entry["lead"]))] += 1
        report.ledger_actions = sum(ledger.values()) + sum(unkeyed.values())
        marks = ", ".join("?" * len(self.wired)) or "NULL"
        senders = {sid: (self.provider or self._providers.get(name, ""), account) for sid, name, account in
                   db.execute_sql(f"SELECT id, name, account_id FROM sender WHERE name IN ({marks})",
                                  sorted(self.wired)).fetchall()}
        rows = db.execute_sql(
            "SELECT a.key, a.action, a.sender_id, l.key FROM action a JOIN lead l ON l.id = a.lead_id "
            "WHERE a.sequence = ? AND a.status = 'done' "
            "AND a.action IN ('visit', 'connect', 'message', 'inmail', 'withdraw')", (sequence,)).fetchall()
        rows = [row for row in rows if row[2] in senders]
        audit = {key: action for key, action, sender_id, _ in rows if senders[sender_id][0] in keyed}
        report.audit_actions = len(rows)
        self._compare_unkeyed(report, unkeyed, [(senders[sid][1], action, lead) for _, action, sid, lead in rows
                                                if senders[sid][0] not in keyed])
        for key, times in sorted(ledger.items()):
            if times > 1:
                report.mismatches.append(f"the fake performed {key} {times} times")
            if key not in audit:
                report.mismatches.append(f"the fake performed {key}, which the audit log does not show as done")
        for key, action in sorted(audit.items()):
            if key not in ledger:
                report.mismatches.append(f"the audit log shows {action} {key} done, which the fake never performed")
        for name, fake in sorted(self.fakes.items()):
            check = getattr(fake, "wire_check", None)
            if callable(check):
                facts, problems = check()
                report.checks[name] = facts
                report.mismatches += problems
        return report

    @staticmethod
    def _compare_unkeyed(report: WireReport, ledger: collections.Counter[tuple[str, str, str]],
                         audit_rows: list[tuple[str, str, str]]) -> None:
        """The same actions per (account, action, lead) in the fake's ledger and the audit log."""
        audit = collections.Counter(audit_rows)
        for (account, action, lead), times in sorted((ledger + audit).items()):
            done, logged = ledger.get((account, action, lead), 0), audit.get((account, action, lead), 0)
            if done != logged:
                report.mismatches.append(f"the fake performed {action} for {lead} (account {account}) {done} time(s); "
                                         f"the audit log shows it done {logged} time(s)")
