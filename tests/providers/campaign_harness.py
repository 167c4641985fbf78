"""The salesflow-campaign driver against its fake over real HTTP on 127.0.0.1, as a contract harness."""
from __future__ import annotations

import datetime as dt
import itertools
from typing import Any

import httpx

from runner.providers.base import Account, LeadRef
from runner.providers.fakeserver import FakeClock, FakeHTTPServer
from runner.providers.http import make_client
from runner.providers.salesflow_campaign.driver import CampaignProvider
from runner.providers.salesflow_campaign.fake import CampaignFake, Pace
from runner.simulate import VirtualClock

UTC = dt.UTC
START = dt.datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
TOKEN = "sfl_tok_5c1d9a7e3b2f4a6c8e0d1b3f5a7c9e2d"
ACCOUNT, CAMPAIGN = "321", 456
CERTAIN: dict[str, Any] = dict(accept_rate=1.0, accept_delay_hours=(2, 2), reply_rate=1.0, reply_delay_hours=(3, 3),
                               connected_rate=0.0, pending_rate=0.0, messaged_first_rate=0.0,
                               recent_conversation_rate=0.0, inaccessible_rate=0.0)
#: The campaign invites a minute after each import and never waits for the next day.
QUICK = Pace(invite_every=dt.timedelta(minutes=1), invites_per_day=None, message_delay=dt.timedelta(hours=1),
             withdraw_after=dt.timedelta(days=21))


class CampaignHarness:
    def __init__(self, *, sandbox: dict[str, Any] | None = None, pace: Pace | None = None, **fake_options: Any) -> None:
        self.virtual = VirtualClock(START)
        self.clock = FakeClock(self.virtual)
        self.fake = CampaignFake(clock=self.clock, seed=3, tokens={TOKEN}, accounts={ACCOUNT: [CAMPAIGN]},
                                 sandbox=CERTAIN if sandbox is None else sandbox, pace=pace or QUICK, **fake_options)
        self.server = FakeHTTPServer(self.fake).start()
        self.client = make_client(self.server.url + "/api")
        self.provider = CampaignProvider(self.client, clock=self.clock)
        self.account = Account(sender="carol", account_id=ACCOUNT, credentials={"api_key": TOKEN},
                               settings={"campaign_id": str(CAMPAIGN)})
        self._numbers = itertools.count(1)

    def close(self) -> None:
        self.client.close()
        self.server.stop()

    def now(self) -> dt.datetime:
        return self.clock()

    def advance(self, delta: dt.timedelta) -> None:
        self.virtual.advance(delta)

    def fresh_lead(self) -> LeadRef:
        name = f"lead-{next(self._numbers)}"
        return LeadRef(key=name, profile_url=f"https://www.linkedin.com/in/{name}")

    def make_accept(self, lead: LeadRef) -> None:
        """The campaign invites within minutes and the lead accepts two hours later."""
        self.virtual.advance(hours=3)

    def make_reply(self, lead: LeadRef) -> None:
        """The campaign's first message goes an hour after the acceptance; the reply three hours later."""
        self.virtual.advance(hours=5)

    def control(self, method: str, name: str, **body: Any) -> Any:
        response = httpx.request(method, f"{self.server.url}/_fake/{name}", json=body or None)
        response.raise_for_status()
        return response.json()
