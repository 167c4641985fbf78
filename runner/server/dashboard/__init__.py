"""The web dashboard `seqrun serve` shows at `/`: overview, the leads that need a human, the
sequence flowchart and the webhook log. See app.py."""
from __future__ import annotations

from runner.server.dashboard.app import create_dashboard
from runner.server.dashboard.views import Project

__all__ = ["Project", "create_dashboard"]
