"""The block list: profiles never to be contacted again, looked up before every action."""
from __future__ import annotations

from runner.store.models import db


def is_blocked(key: str) -> bool:
    """Whether the profile with this lead key is blocked (a plain query: it runs at every wake-up)."""
    return db.execute_sql("SELECT 1 FROM block WHERE key = ? LIMIT 1", (key,)).fetchone() is not None
