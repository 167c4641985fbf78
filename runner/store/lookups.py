"""Finding a lead: by its key (a profile named on the command line), or by what a provider calls
it, for webhooks that name a member only by the provider's own id (a Salesflow MemberId learnt
when the lead was imported into a campaign)."""
from __future__ import annotations

import re

from runner.store.backends import current
from runner.store.models import db

_NAME = re.compile(r"[a-z][a-z0-9_]*")


def lead_id_by_key(key: str) -> int | None:
    row = db.execute_sql("SELECT id FROM lead WHERE key = ?", (key,)).fetchone()
    return row[0] if row else None


def lead_key_by_provider_id(name: str, value: str) -> str | None:
    """The key of a lead whose `provider_ids` hold `name: value`, or None."""
    if not _NAME.fullmatch(name):
        raise ValueError(f"not a provider id name: {name!r}")
    backend = current()
    row = db.execute_sql(f"SELECT key FROM lead WHERE {backend.json_text('provider_ids')} = ? ORDER BY id LIMIT 1",
                         (backend.json_path(name), value)).fetchone()
    return row[0] if row else None
