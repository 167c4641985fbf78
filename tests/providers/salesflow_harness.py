"""The Salesflow driver against its fake over real HTTP on 127.0.0.1, with a webhook receiver.

The fake answers every inbox sync with 202 and POSTs the pages to a real receiver
(`runner.webhooks.WebhookReceiver` on 127.0.0.1), which verifies `X-Webhook-Secret` with the
driver's verifier and folds the pages into the driver's sync book, as `simulate --wire` does.
"""
from __future__ import annotations

import datetime as dt
import itertools
from typing import Any

import httpx

from runner.providers.base import Account, LeadRef
from runner.providers.fakeserver import FakeClock, FakeHTTPServer
from runner.providers.http import make_client
from runner.providers.salesflow.driver import SalesflowProvider
from runner.providers.salesflow.fake import SalesflowFake
from runner.simulate import VirtualClock
from runner.webhooks import WebhookInbox, WebhookReceiver

from .stored_inbox import StoredInbox

UTC = dt.timezone.utc
START = dt.datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
SECRET = "sfk_live_5b4a39281706f5e4d3c2b1a09f8e7d6c"
HOOK_SECRET = "whsec-salesflow-0f1e2d3c4b5a"
CERTAIN: dict[str, Any] = dict(accept_rate=1.0, accept_delay_hours=(2, 2), reply_rate=1.0, reply_delay_hours=(3, 3),
                               connected_rate=0.0, pending_rate=0.0, messaged_first_rate=0.0,
                               recent_conversation_rate=0.0, inaccessible_rate=0.0)


class SalesflowHarness:
    def __init__(self, *, sandbox: dict[str, Any] | None = None, mount: bool = True, sync_wait: float = 10.0,
                 **fake_options: Any) -> None:
        self.virtual = VirtualClock(START)
        self.clock = FakeClock(self.virtual)
        fake_options.setdefault("auto_pump", False)
        fake_options.setdefault("enforce_limits", False)
        self.fake = SalesflowFake(clock=self.clock, seed=3, api_keys={SECRET},
                                  sandbox=CERTAIN if sandbox is None else sandbox, **fake_options)
        self.server = FakeHTTPServer(self.fake).start()
        self.client = make_client(self.server.url)
        self.provider = SalesflowProvider(self.client, clock=self.clock, sync_wait=sync_wait)
        self.inbox = StoredInbox({"salesflow": [HOOK_SECRET]}, clock=self.clock)
        self.receiver = FakeHTTPServer(WebhookReceiver(self.inbox)).start()
        self.fake.webhook_url = self.receiver.url + "/webhooks/salesflow"
        self.fake.webhook_secret = HOOK_SECRET
        if mount:
            self.inbox.mount("salesflow", self.provider)
        self.account = Account(sender="alice", account_id="1001", credentials={"api_key": SECRET})
        self._numbers = itertools.count(1)

    def close(self) -> None:
        self.fake.close()
        self.client.close()
        self.server.stop()
        self.receiver.stop()
        self.inbox.close()

    def now(self) -> dt.datetime:
        return self.clock()

    def advance(self, delta: dt.timedelta) -> None:
        self.virtual.advance(delta)

    def fresh_lead(self) -> LeadRef:
        name = f"lead-{next(self._numbers)}"
        return LeadRef(key=name, profile_url=f"https://www.linkedin.com/in/{name}")

    def make_accept(self, lead: LeadRef) -> None:
        self.virtual.advance(hours=2)

    def make_reply(self, lead: LeadRef) -> None:
        self.virtual.advance(hours=3)

    def control(self, method: str, name: str, **body: Any) -> Any:
        response = httpx.request(method, f"{self.server.url}/_fake/{name}", json=body or None)
        response.raise_for_status()
        return response.json()
