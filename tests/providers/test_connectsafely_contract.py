"""The shared provider contract, run against the ConnectSafely driver talking to its fake over HTTP."""
from __future__ import annotations

from collections.abc import Iterator

import pytest

from .connectsafely_harness import ConnectSafelyHarness
from .contract import ProviderContract


class TestConnectSafelyContract(ProviderContract):
    @pytest.fixture
    def harness(self) -> Iterator[ConnectSafelyHarness]:
        h = ConnectSafelyHarness(budgets=None)  # the virtual clock stands still: 45 invitations in one minute
        yield h
        h.close()
