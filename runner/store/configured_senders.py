"""The SQL of the senders seqrun.yaml configures: writing each one's row as configured (status,
pause reason and warm-up start are the store's own and are kept)."""
from __future__ import annotations

import datetime as dt

from runner.store.models import Sender


def save_configured_sender(name: str, now: dt.datetime, *, provider: str, account_id: str, account_type: str,
                           timezone: str, profile_id: str | None, full_name: str | None) -> Sender:
    """The sender's row, created at `now` or updated where the configuration changed. A profile id
    learnt by `seqrun senders check` stays until seqrun.yaml names one."""
    row = Sender.get_or_none(Sender.name == name)
    values = dict(provider=provider, account_id=account_id, account_type=account_type, timezone=timezone,
                  profile_id=profile_id or (row.profile_id if row else None), full_name=full_name)
    if row is None:
        # Several commands starting at once on a new database all find no row: the first insert
        # wins, the others take its row and bring it to this configuration.
        Sender.insert(name=name, created_at=now, **values).on_conflict_ignore().execute()
        row = Sender.get(Sender.name == name)
    if any(getattr(row, k) != v for k, v in values.items()):
        for k, v in values.items():
            setattr(row, k, v)
        row.save()
    return row
