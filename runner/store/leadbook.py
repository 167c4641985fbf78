"""The SQL of the lead book: leads imported into a sequence (with their enrollments and first step),
what the store knows of a profile before an import, the block list, and listing leads
(`runner.leads`; the simulator enrolls its generated leads here too).

The bulk statements are plain SQL run with `executemany` in the caller's transaction: peewee's
query building costs more than SQLite's work at 100k rows.
"""
from __future__ import annotations

from .models import Enrollment


def enrolled_sequences(only: str | None = None) -> list[str]:
    """Sequences that have enrollments in the store (just `only`, when given and it has), by name."""
    query = Enrollment.select(Enrollment.sequence).distinct().order_by(Enrollment.sequence)
    if only is not None:
        query = query.where(Enrollment.sequence == only)
    return [name for (name,) in query.tuples()]
