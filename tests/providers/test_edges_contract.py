"""The shared provider contract, run against the Edges driver talking to its fake over HTTP."""
from __future__ import annotations

from collections.abc import Iterator

import pytest

from .contract import ProviderContract
from .edges_harness import EdgesHarness


class TestEdgesContract(ProviderContract):
    @pytest.fixture
    def harness(self) -> Iterator[EdgesHarness]:
        h = EdgesHarness(smart_limits=None)  # the contract's 45 invitations exceed a day's Smart Limit
        yield h
        h.close()
