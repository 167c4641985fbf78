"""The Edges driver against its fake over real HTTP on 127.0.0.1, as a contract harness."""
from __future__ import annotations

import datetime as dt
import itertools
from typing import Any

import httpx

from runner.providers.base import Account, LeadRef
from runner.providers.edges.driver import EdgesProvider
from runner.providers.edges.fake import EdgesFake
from runner.providers.fakeserver import FakeClock, FakeHTTPServer
from runner.providers.http import make_client
from runner.simulate import VirtualClock

UTC = dt.UTC
START = dt.datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
SECRET = "edg_live_9f8e7d6c5b4a39281706f5e4d3c2b1a0"
CERTAIN: dict[str, Any] = dict(accept_rate=1.0, accept_delay_hours=(2, 2), reply_rate=1.0, reply_delay_hours=(3, 3),
                               connected_rate=0.0, pending_rate=0.0, messaged_first_rate=0.0,
                               recent_conversation_rate=0.0, inaccessible_rate=0.0)


class EdgesHarness:
    def __init__(self, *, sandbox: dict[str, Any] | None = None, **fake_options: Any) -> None:
        self.virtual = VirtualClock(START)
        self.clock = FakeClock(self.virtual)
        self.fake = EdgesFake(clock=self.clock, seed=3, api_keys={SECRET},
                              sandbox=CERTAIN if sandbox is None else sandbox, **fake_options)
        self.server = FakeHTTPServer(self.fake).start()
        self.client = make_client(self.server.url + "/v1")
        self.slept: list[float] = []
        self.provider = EdgesProvider(self.client, clock=self.clock, sleep=self.slept.append, page_delay=2.0)
        self.account = Account(sender="alice", account_id="identity-alice", credentials={"api_key": SECRET})
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
        self.virtual.advance(hours=2)

    def make_reply(self, lead: LeadRef) -> None:
        self.virtual.advance(hours=3)

    def control(self, method: str, name: str, **body: Any) -> Any:
        response = httpx.request(method, f"{self.server.url}/_fake/{name}", json=body or None)
        response.raise_for_status()
        return response.json()
