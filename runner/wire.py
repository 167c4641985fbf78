"""`seqrun simulate --wire`: the senders' real drivers against their fakes over HTTP on 127.0.0.1.

`WireSession` starts one fake server per HTTP provider the simulated senders use (all of them with
`--provider NAME`), each over its own simulated LinkedIn on the simulation's virtual clock, and
builds the real driver for each sender with a client pointed at it. Credentials are not needed: the
fakes accept the key seqrun generates. Drivers run with their pagination spacing and request
budget off, because the virtual clock does not move inside a tick (a real run spaces them).

Afterwards `compare` checks the fake's ledger of performed actions against seqrun's audit log:
the same actions under the same idempotency keys, none performed twice. A provider whose API takes
no key of ours (Salesflow's `members/Import`) leaves `seqrun_key` empty in its ledger: its actions
are matched by action and lead instead.
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
from .providers.base import Account, Provider
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


def _campaign_fake(clock: FakeClock, seed: int, sandbox: Mapping[str, Any]) -> Any:
    import datetime as dt_

    from .providers.salesflow_campaign.fake import CampaignFake, Pace

    # The campaign keeps up with the sequence's own connect limit (which the audit checks) and, as
    # Salesflow's campaigns do, messages an hour after an acceptance and withdraws after three weeks.
    pace = Pace(invite_every=dt_.timedelta(minutes=5), invites_per_day=None)
    return CampaignFake(clock=clock, seed=seed, sandbox=sandbox, pace=pace)


FAKES["edges"] = _edges_fake
FAKES["salesflow-campaign"] = _campaign_fake
#: where each provider's API lives on its fake server
PATHS = {"edges": "/v1", "salesflow-campaign": "/api"}
#: the actions the audit log records as done at a provider
AUDITED = ("visit", "connect", "message", "inmail", "withdraw")


@dataclass
class WireReport:
    providers: list[str] = field(default_factory=list)
    requests: int = 0  # HTTP requests the drivers made
    ledger_actions: int = 0  # actions the fakes performed
    audit_actions: int = 0  # actions seqrun recorded as done at a provider
    mismatches: list[str] = field(default_factory=list)
    events: dict[str, dict[str, int]] = field(default_factory=dict)  # source (poll, webhook) -> kind -> count

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

    def prepare(self, sc: SenderConfig, account: Account) -> Account:
        """The account as the sender's fake needs it: a simulated sender of a provider that works
        through a campaign (Salesflow) gets a running campaign of its own in the fake."""
        fake = self.fakes.get(self.provider_name(sc))
        add_campaign = getattr(fake, "add_campaign", None)
        if add_campaign is None or account.settings.get("campaign_id"):
            return account
        settings = {**account.settings, "campaign_id": str(add_campaign(account.account_id))}
        return dataclasses.replace(account, settings=settings)

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
        ledger: collections.Counter[str] = collections.Counter()
        for fake in self.fakes.values():
            for entry in fake.ledger:
                if entry.get("action", "connect") in AUDITED:
                    ledger[str(entry.get("seqrun_key") or f"{entry.get('action')} of {entry.get('lead')}")] += 1
        report.ledger_actions = sum(ledger.values())
        marks = ", ".join("?" * len(self.wired)) or "NULL"
        wired = {sid for sid, in db.execute_sql(f"SELECT id FROM sender WHERE name IN ({marks})",
                                                sorted(self.wired)).fetchall()}
        rows = db.execute_sql(
            "SELECT a.key, a.action, a.sender_id, l.key FROM action a JOIN lead l ON l.id = a.lead_id "
            "WHERE a.sequence = ? AND a.status = 'done' "
            "AND a.action IN ('visit', 'connect', 'message', 'inmail', 'withdraw')", (sequence,)).fetchall()
        keyless = {name for name, fake in self.fakes.items() if any(not e.get("seqrun_key") for e in fake.ledger)}
        names = dict(db.execute_sql("SELECT id, name FROM sender").fetchall())
        by_lead = {sid for sid in wired if (self.provider or self._providers.get(names.get(sid, ""))) in keyless}
        audit: dict[str, str] = {}
        for key, action, sender_id, lead in rows:
            if sender_id in wired:
                # A provider that takes no key of ours is matched by action and lead.
                audit[f"{action} of {lead}" if sender_id in by_lead else key] = action
        report.audit_actions = len(audit)
        for source, kind, count in db.execute_sql(
                f"SELECT source, kind, COUNT(*) FROM event WHERE sender_id IN ({marks}) GROUP BY source, kind "
                "ORDER BY source, kind", sorted(wired)).fetchall() if wired else ():
            report.events.setdefault(source, {})[kind] = count
        for key, times in sorted(ledger.items()):
            if times > 1:
                report.mismatches.append(f"the fake performed {key} {times} times")
            if key not in audit:
                report.mismatches.append(f"the fake performed {key}, which the audit log does not show as done")
        for key, action in sorted(audit.items()):
            if key not in ledger:
                report.mismatches.append(f"the audit log shows {action} {key} done, which the fake never performed")
        return report

