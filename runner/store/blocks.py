"""The block list: profiles never to be contacted again, looked up before every action."""
from __future__ import annotations

from runner.store.models import db
from runner.store.transactions import KeptRead

_ANY_BLOCK: KeptRead[bool] = KeptRead("block")  # a simulation that blocked no one knows it without asking


def is_blocked(key: str) -> bool:
    """Whether the profile with this lead key is blocked (a plain query: it runs at every wake-up)."""
    if _ANY_BLOCK.kept(lambda: db.execute_sql("SELECT 1 FROM block LIMIT 1").fetchone() is not None) is False:
        return False  # (outside a simulation nothing is kept: one query, as before)
    return db.execute_sql("SELECT 1 FROM block WHERE key = ? LIMIT 1", (key,)).fetchone() is not None
