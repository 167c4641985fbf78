"""Durable state: a peewee store (SQLite today) with numbered migrations.

`open_store(url)` binds the models to a database and applies pending migrations. The models live in
`models.py`; the SQL that creates them lives in `migrations.py` so that an old migration never
depends on today's model classes.
"""
from __future__ import annotations

from runner.store.db import DEFAULT_DB, open_store, resolve_db_url
from runner.store.models import (
           MODELS,
           Action,
           Block,
           Enrollment,
           Event,
           Lead,
           Pace,
           Sender,
           SequenceVersion,
           SyncCursor,
           Transition,
           Usage,
           db,
)

__all__ = ["DEFAULT_DB", "MODELS", "Action", "Block", "Enrollment", "Event", "Lead", "Pace", "Sender", "SequenceVersion",
           "SyncCursor", "Transition", "Usage", "db", "open_store", "resolve_db_url"]
