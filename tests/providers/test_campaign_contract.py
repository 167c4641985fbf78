"""The shared provider contract, run against the salesflow-campaign driver talking to its fake over
HTTP. Cases for actions a campaign performs by itself (messages, withdrawals) skip, saying so."""
from __future__ import annotations

from collections.abc import Iterator

import pytest

from .campaign_harness import CampaignHarness
from .contract import ProviderContract


class TestCampaignContract(ProviderContract):
    @pytest.fixture
    def harness(self) -> Iterator[CampaignHarness]:
        h = CampaignHarness()
        yield h
        h.close()
