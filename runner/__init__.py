"""seqrun: LinkedIn outreach sequences written as YAML, validated, simulated and run durably."""
from __future__ import annotations

__version__ = "0.1.0"
