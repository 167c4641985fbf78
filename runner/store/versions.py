"""The SQL behind sequence versions: storing a version's text, counting the leads on each version,
and moving leads from one version to another (`runner.versions` and `runner.migrate` use these)."""
from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from runner.store.fields import to_db_time
from runner.store.models import Enrollment, SequenceVersion, db

RUNNING = ("active", "paused")


@dataclass(frozen=True)
class StoredVersion:
    hash: str
    sequence: str
    path: str
    source: str
    templates: dict[str, str]
    templates_dir: str
    created_at: dt.datetime


def save_version(*, hash: str, sequence: str, path: str, source: str, templates: Mapping[str, str],
                 templates_dir: str, now: dt.datetime) -> None:
    """Store a version once (by hash); storing it again changes nothing."""
    db.execute_sql(
        "INSERT INTO sequence_version (hash, sequence, path, source, templates, templates_dir, created_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (hash) DO NOTHING",
        (hash, sequence, path, source, SequenceVersion.templates.db_value(dict(templates)), templates_dir,
         to_db_time(now)))


def stored_version(version_hash: str) -> StoredVersion | None:
    row = SequenceVersion.get_or_none(SequenceVersion.hash == version_hash)
    if row is None:
        return None
    return StoredVersion(row.hash, row.sequence, row.path, row.source, dict(row.templates or {}), row.templates_dir,
                         row.created_at)


def version_dates(hashes: Iterable[str]) -> dict[str, dt.datetime]:
    """When each stored version among `hashes` was first stored (versions not stored are absent)."""
    wanted = list(hashes)
    if not wanted:
        return {}
    query = SequenceVersion.select(SequenceVersion.hash, SequenceVersion.created_at).where(
        SequenceVersion.hash.in_(wanted))
    return {row.hash: row.created_at for row in query}


def running_by_version(sequence: str | None = None) -> list[tuple[str, str, str | None, int]]:
    """(sequence, version hash, step id, leads) for every running (active or paused) lead group."""
    where = ""
    args: tuple[str, ...] = ()
    if sequence is not None:
        where, args = " AND sequence = ?", (sequence,)
    return [tuple(r) for r in db.execute_sql(
        f"SELECT sequence, sequence_hash, step_id, COUNT(*) FROM enrollment WHERE state IN ('active', 'paused'){where} "
        "GROUP BY sequence, sequence_hash, step_id ORDER BY sequence, sequence_hash, step_id", args).fetchall()]


def running_versions() -> list[tuple[str, str, int]]:
    """(sequence, version hash, running leads) for every version leads run: read from the index
    `enrollment_version` alone, so that `run` can check at every start even with millions of leads."""
    return [tuple(r) for r in db.execute_sql(
        "SELECT sequence, sequence_hash, COUNT(*) FROM enrollment WHERE state IN ('active', 'paused') "
        "GROUP BY sequence, sequence_hash ORDER BY sequence, sequence_hash").fetchall()]


def running_steps(sequence: str, version_hash: str) -> dict[str | None, int]:
    """Running leads per step of one version of a sequence."""
    return dict(db.execute_sql(
        "SELECT step_id, COUNT(*) FROM enrollment WHERE sequence = ? AND sequence_hash = ? "
        "AND state IN ('active', 'paused') GROUP BY step_id", (sequence, version_hash)).fetchall())


@dataclass(frozen=True)
class RunningLead:
    enrollment_id: int
    version: str
    step_id: str | None
    state: str
    facts: dict[str, Any]


def running_leads_not_on(sequence: str, version_hash: str) -> list[RunningLead]:
    """The running leads of `sequence` whose version is not `version_hash`, oldest first."""
    rows = db.execute_sql(
        "SELECT id, sequence_hash, step_id, state, facts FROM enrollment WHERE sequence = ? AND sequence_hash != ? "
        "AND state IN ('active', 'paused') ORDER BY id", (sequence, version_hash)).fetchall()
    return [RunningLead(i, h, step, st, Enrollment.facts.python_value(facts) or {}) for i, h, step, st, facts in rows]


def performed_actions(enrollment_ids: list[int]) -> dict[int, list[tuple[str, str, str | None, str]]]:
    """Per enrollment, its actions that happened or may have (done or in flight): (step id, action,
    template, status), oldest first."""
    out: dict[int, list[tuple[str, str, str | None, str]]] = {i: [] for i in enrollment_ids}
    for start in range(0, len(enrollment_ids), 500):
        chunk = enrollment_ids[start:start + 500]
        rows = db.execute_sql(
            f"SELECT enrollment_id, step_id, action, template, status FROM action WHERE enrollment_id IN "
            f"({', '.join('?' * len(chunk))}) AND status IN ('done', 'in_flight') ORDER BY id", chunk).fetchall()
        for enrollment_id, step_id, action, template, status in rows:
            out[enrollment_id].append((step_id, action, template, status))
    return out


def move_enrollment(enrollment_id: int, *, expected_version: str, version_hash: str, step_id: str | None,
                    new_step: bool, facts: Mapping[str, Any], now: dt.datetime) -> bool:
    """Put a running lead on another version (and step), due now so that it plans again. A lead that
    changes step starts it with attempt 0 but keeps the time it entered its step: a wait it is moved
    to counts from when it began waiting. False when the row changed meanwhile."""
    stamp = to_db_time(now)
    fresh = ", attempt = 0" if new_step else ""
    args: tuple[Any, ...] = (version_hash, step_id, Enrollment.facts.db_value(dict(facts)), stamp, stamp)
    # A paused lead stays paused (its due time is set again when it is resumed); an active one is due now.
    cursor = db.execute_sql(
        f"UPDATE enrollment SET sequence_hash = ?, step_id = ?, facts = ?, updated_at = ?, "
        f"due_at = CASE WHEN state = 'active' THEN ? ELSE due_at END, lease_owner = NULL, version = version + 1{fresh} "
        "WHERE id = ? AND sequence_hash = ? AND state IN ('active', 'paused')",
        (*args, enrollment_id, expected_version))
    return cursor.rowcount == 1
