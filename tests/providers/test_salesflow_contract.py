"""The shared provider contract, run against the Salesflow driver talking to its fake over HTTP,
with inbox syncs arriving as webhooks at a real receiver."""
from __future__ import annotations

from collections.abc import Iterator

import pytest

from .contract import ProviderContract
from .salesflow_harness import SalesflowHarness


class TestSalesflowContract(ProviderContract):
    @pytest.fixture
    def harness(self) -> Iterator[SalesflowHarness]:
        h = SalesflowHarness()
        yield h
        h.close()
