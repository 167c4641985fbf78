"""Edges (edges.run): the driver, the integration-webhook parser and the fake server, side by side."""
from __future__ import annotations

from runner.providers.edges.driver import EdgesProvider

__all__ = ["EdgesProvider"]
