"""`seqrun simulate --wire`: the senders' real drivers against their fakes over HTTP on 127.0.0.1.

`WireSession` starts one fake server per HTTP provider the simulated senders use (all of them with
`--provider NAME`), each over its own simulated LinkedIn on the simulation's virtual clock, and
builds the real driver for each sender with a client pointed at it. Credentials are not needed: the
fakes accept the key seqrun generates. Drivers run with their pagination spacing and request
budget off, because the virtual clock does not move inside a tick (a real run spaces them).

Providers that report by webhook (Salesflow) get a receiver: `runner.webhooks.WebhookReceiver`
on 127.0.0.1, to which their fake POSTs its webhooks with a secret generated for the session; the
receiver verifies each raw delivery with the driver's own verifier and stores the events in the
event inbox, which the engine applies (runner.engine.inbox). Before every tick `before_tick` lets each fake send what is due
on the virtual clock (Salesflow's late NEW_CONNECTION).

Afterwards `compare` checks the fake's ledger of performed actions against seqrun's audit log:
the same actions under the same idempotency keys, none performed twice. A provider that carries no
key on the wire (ConnectSafely, Salesflow's `members/Import`) is compared by (account, action,
lead): the same number of each. A
fake may add checks of its own (`wire_check(driver?, cursors?) -> (facts, problems)`), such as a
weekly quota kept (ConnectSafely) or where each first message went and that no inbox-sync marker
moved early (Salesflow: it takes the driver and the stored cursors).
"""
from __future__ import annotations

import collections
import contextlib
import dataclasses
import datetime as dt
import inspect
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from runner.language.diagnostics import UserError
from runner.project.config import SenderConfig
from runner.providers import PROVIDERS
from runner.providers.base import Account, Provider
from runner.providers.fakeserver import FakeClock, FakeHTTPServer
from runner.providers.http import make_client
from runner.store import simulation as stored
from runner.webhooks import PATH_PREFIX, WebhookInbox, WebhookReceiver

SIMULATED_KEY = "seqrun-simulated-key"
#: provider name -> the fake app's factory(clock, seed, sandbox options); one line per HTTP provider.
FAKES: dict[str, Callable[[FakeClock, int, Mapping[str, Any]], Any]] = {}


def _edges_fake(clock: FakeClock, seed: int, sandbox: Mapping[str, Any]) -> Any:
    from runner.providers.edges.fake import EdgesFake

    # Smart Limits off: the sequence's and senders' own limits are what the audit checks.
    return EdgesFake(clock=clock, seed=seed, smart_limits=None, sandbox=sandbox)


def _salesflow_fake(clock: FakeClock, seed: int, sandbox: Mapping[str, Any]) -> Any:
    from runner.providers.salesflow.fake import SalesflowFake

    # Salesflow's own daily limits: seqrun's caps are lowered to them at start, and they count per
    # sender-local day where the fake counts UTC days, so the fake does not enforce them here.
    # NEW_CONNECTION goes out when `before_tick` pumps it, on the virtual clock.
    return SalesflowFake(clock=clock, seed=seed, enforce_limits=False, auto_pump=False, sandbox=sandbox)


def _connectsafely_fake(clock: FakeClock, seed: int, sandbox: Mapping[str, Any]) -> Any:
    from runner.providers.connectsafely.fake import ConnectSafelyFake

    # Per-minute budgets off (the virtual clock stands still inside a tick); quotas on: keeping the
    # weekly invitation quota is what the simulation checks.
    return ConnectSafelyFake(clock=clock, seed=seed, budgets=None, sandbox=sandbox)


def _campaign_fake(clock: FakeClock, seed: int, sandbox: Mapping[str, Any]) -> Any:
    from runner.providers.salesflow_campaign.fake import CampaignFake, Pace

    # The campaign keeps up with the sequence's own connect limit (which the audit checks) and, as
    # Salesflow's campaigns do, messages an hour after an acceptance and withdraws after three weeks.
    # A fifth of its webhooks get lost on the way, so that polling, the safety net, shows it works.
    return CampaignFake(clock=clock, seed=seed, sandbox=sandbox, lose_share=0.2,
                        pace=Pace(invite_every=dt.timedelta(minutes=5), invites_per_day=None))


FAKES["edges"] = _edges_fake
FAKES["salesflow"] = _salesflow_fake
FAKES["connectsafely"] = _connectsafely_fake
FAKES["salesflow-campaign"] = _campaign_fake
#: where each provider's API lives on its fake server
PATHS = {"edges": "/v1", "salesflow": "", "connectsafely": "/linkedin", "salesflow-campaign": "/api"}


@dataclass
class WireReport:
    providers: list[str] = field(default_factory=list)
    requests: int = 0  # HTTP requests the drivers made
    ledger_actions: int = 0  # actions the fakes performed
    audit_actions: int = 0  # actions seqrun recorded as done at a provider
    mismatches: list[str] = field(default_factory=list)
    webhooks: dict[str, int] = field(default_factory=dict)  # the webhook receiver's counts, when it ran
    checks: dict[str, Any] = field(default_factory=dict)  # provider name -> what its fake's wire_check found
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
        self._secret = secrets.token_urlsafe(24)  # the session's webhook secret, fake and receiver alike
        self.inbox = WebhookInbox({}, clock=clock)
        self._receiver: FakeHTTPServer | None = None

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
            driver = self.drivers[name] = PROVIDERS[name](client=client, clock=self._clock, sleep=lambda s: None,
                                                          page_delay=0.0)
            if callable(getattr(driver, "verify_and_parse", None)) and hasattr(fake, "webhook_url"):
                self._receive(name, driver, fake)
            if callable(getattr(fake, "close", None)):
                self._stack.callback(fake.close)  # its webhook sender stops before the receiver (LIFO)
        return self.drivers[name]

    def _receive(self, name: str, driver: Provider, fake: Any) -> None:
        """The fake POSTs its webhooks to a real receiver that verifies them with the driver."""
        fake.webhook_url = self._receiver_url(name, driver)
        fake.webhook_secret = self._secret

    def _receiver_url(self, name: str, driver: Provider) -> str:
        """Where the provider's webhooks go: the session's receiver, verifying with the driver."""
        if self._receiver is None:
            self._receiver = FakeHTTPServer(WebhookReceiver(self.inbox))
            self._stack.enter_context(self._receiver)
        self.inbox.set_secrets(name, [self._secret])
        self.inbox.mount(name, driver)
        return f"{self._receiver.url}{PATH_PREFIX}{name}"

    def before_tick(self, now: dt.datetime) -> None:
        """Each fake sends what is due by now on the virtual clock (webhooks that come late)."""
        for fake in self.fakes.values():
            pump = getattr(fake, "pump", None)
            if callable(pump):
                pump()

    def prepare(self, sc: SenderConfig, account: Account) -> Account:
        """The account as the sender's fake needs it: a simulated sender of a provider that works
        through a campaign (Salesflow's v1 API) gets a running campaign of its own in the fake, and
        the campaign's webhooks, set up through the driver as `seqrun senders webhooks` does, point at
        the session's receiver."""
        name = self.provider_name(sc)
        fake, driver = self.fakes.get(name), self.drivers.get(name)
        add_campaign = getattr(fake, "add_campaign", None)
        if add_campaign is None:
            return account
        if not account.settings.get("campaign_id"):
            settings = {**account.settings, "campaign_id": str(add_campaign(account.account_id))}
            account = dataclasses.replace(account, settings=settings)
        setup = getattr(driver, "setup_webhook", None)
        if callable(setup) and callable(getattr(driver, "verify_and_parse", None)):
            from runner.providers.salesflow_campaign.webhook import webhook_url

            assert driver is not None
            self._receiver_url(name, driver)  # the receiver runs and verifies with this driver
            assert self._receiver is not None
            setup(account, webhook_url(self._receiver.url, sc.name, self._secret))
        return account

    def introduce_leads(self, account_ids: Mapping[int, str]) -> None:
        """Every enrolled lead exists in its sender's fake from the start (see `EdgesFake.introduce`)."""
        by_sender: dict[int, list[str]] = collections.defaultdict(list)
        for sender_id, url in stored.profiles_by_sender():
            by_sender[sender_id].append(url)
        names = stored.sender_names()
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
        senders = {sid: (self.provider or self._providers.get(name, ""), account) for sid, name, account in
                   stored.senders_named(self.wired)}
        rows = [row for row in stored.done_at_linkedin(sequence) if row[2] in senders]
        audit = {key: action for key, action, sender_id, _ in rows if senders[sender_id][0] in keyed}
        report.audit_actions = len(rows)
        for source, kind, count in stored.event_counts(senders):
            report.events.setdefault(source, {})[kind] = count
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
        cursors = stored.sync_cursors_by_account()
        for name, fake in sorted(self.fakes.items()):
            check = getattr(fake, "wire_check", None)
            if callable(check):
                context = {"driver": self.drivers[name], "cursors": cursors}
                wanted = inspect.signature(check).parameters
                facts, problems = check(**{k: v for k, v in context.items() if k in wanted})
                report.checks[name] = facts
                report.mismatches += problems
        if self.inbox.providers:  # after the checks, which wait for the fakes' last deliveries
            report.webhooks = dict(sorted(self.inbox.stats.items()))
        return report

    @staticmethod
    def _compare_unkeyed(report: WireReport, ledger: collections.Counter[tuple[str, str, str]],
                         audit_rows: list[tuple[str, str, str]]) -> None:
        """The same actions per (account, action, lead) in the fake's ledger and the audit log."""
        audit = collections.Counter(audit_rows)
        for (account, action, lead), _times in sorted((ledger + audit).items()):
            done, logged = ledger.get((account, action, lead), 0), audit.get((account, action, lead), 0)
            if done != logged:
                report.mismatches.append(f"the fake performed {action} for {lead} (account {account}) {done} time(s); "
                                         f"the audit log shows it done {logged} time(s)")
