"""What differs between the two backends, side by side: `sqlite.py` and `postgres.py` expose the
same few functions (claims, the lock around a limit charge, DDL translation, small SQL expressions),
and `current()` picks the module for the database the models are bound to."""
from __future__ import annotations

from types import ModuleType

from runner.store.backends import postgres, sqlite
from runner.store.models import db


def current() -> ModuleType:
    return postgres if postgres.is_postgres(db) else sqlite


def is_postgres_url(url: str) -> bool:
    return url.startswith(postgres.SCHEMES)


__all__ = ["current", "is_postgres_url", "postgres", "sqlite"]
