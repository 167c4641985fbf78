"""The ConnectSafely driver against its fake over real HTTP on 127.0.0.1, as a contract harness."""
from __future__ import annotations

import datetime as dt
import itertools
from typing import Any

import httpx

from runner.providers.base import Account, LeadRef
from runner.providers.connectsafely.driver import ConnectSafelyProvider
from runner.providers.connectsafely.fake import ConnectSafelyFake
from runner.providers.fakeserver import FakeClock, FakeHTTPServer
from runner.providers.http import make_client
from runner.simulate import VirtualClock

UTC = dt.UTC
START = dt.datetime(2026, 3, 2, 9, 0, tzinfo=UTC)  # a Monday
SECRET = "cs_live_4b1f9e8d7c6a5b4c3d2e1f0a9b8c7d6e"
ACCOUNT = "65fa1c2b3d4e5f6a7b8c9d0e"
CERTAIN: dict[str, Any] = dict(accept_rate=1.0, accept_delay_hours=(2, 2), reply_rate=1.0, reply_delay_hours=(3, 3),
                               connected_rate=0.0, pending_rate=0.0, messaged_first_rate=0.0,
                               recent_conversation_rate=0.0, inaccessible_rate=0.0)


class ConnectSafelyHarness:
    #: connections carry only a date ("Connected on Mar 2, 2026"): acceptances are told apart by day
    event_resolution = dt.timedelta(days=1)

    def __init__(self, *, sandbox: dict[str, Any] | None = None, **fake_options: Any) -> None:
        self.virtual = VirtualClock(START)
        self.clock = FakeClock(self.virtual)
        self.slept: list[float] = []
        fake_options.setdefault("sleep", self.slept.append)
        self.fake = ConnectSafelyFake(clock=self.clock, seed=3, api_keys={SECRET}, accounts={ACCOUNT},
                                      sandbox=CERTAIN if sandbox is None else sandbox, **fake_options)
        self.server = FakeHTTPServer(self.fake).start()
        self.client = make_client(self.server.url + "/linkedin")
        self.provider = ConnectSafelyProvider(self.client, clock=self.clock, sleep=self.slept.append)
        self.account = Account(sender="alice", account_id=ACCOUNT, credentials={"api_key": SECRET})
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
