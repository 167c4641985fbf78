"""Salesflow (new API): the driver, the webhook parser, the sync book and the fake server, side by side."""
from __future__ import annotations

from runner.providers.salesflow.driver import SalesflowProvider

__all__ = ["SalesflowProvider"]
