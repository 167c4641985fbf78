"""What the pacing store modules keep in memory during a simulation (`runner.store.kept`, issue 6):
the same answers as the database after any mix of writes, nothing kept past a rollback, and nothing
kept at all outside a `sole_writer` block."""
from __future__ import annotations

import datetime as dt
import pathlib
import random
import sqlite3
from collections.abc import Callable, Iterator

import pytest

from runner.store import Sender, charges, db, open_store, pace, usage
from runner.store import pace_hints as hints
from runner.store.fields import from_db_time
from runner.store.transactions import sole_writer, writing

NOW = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)
DAYS = ["2026-03-02", "2026-03-03"]
SEQUENCES = ["intro", "other"]
ACTIONS = ["connect", "message"]
ZONES = ["Europe/Berlin", "America/New_York"]


@pytest.fixture
def senders(tmp_path: pathlib.Path) -> Iterator[list[int]]:
    open_store(str(tmp_path / "s.db"), durable=False)
    yield [Sender.create(name=name, provider="sandbox", account_id=name, created_at=NOW).id for name in ("a", "b")]
    db.close()


def _moment(rng: random.Random) -> dt.datetime:
    # Few distinct moments, so that points share them; some given in another zone than UTC.
    at = NOW + dt.timedelta(minutes=15 * rng.randrange(12))
    return at.astimezone(dt.timezone(dt.timedelta(hours=1))) if rng.random() < 0.3 else at


def _write(rng: random.Random, senders: list[int]) -> None:
    sender, day, seq, action = rng.choice(senders), rng.choice(DAYS), rng.choice(SEQUENCES), rng.choice(ACTIONS)
    match rng.randrange(12):
        case 0 | 1:
            usage.add_usage(sender, day, action, seq, used=rng.randrange(2), reserved=rng.choice([-1, 1, 1]))
        case 2:
            usage.refund_use(sender, day, action, seq)
        case 3:
            charges.charge_usage(sender, day, action, seq, sequence_cap=rng.randrange(4), sender_cap=rng.randrange(6),
                                 at=_moment(rng))
        case 4 | 5:
            pace.book_point(sender, action, seq, day, _moment(rng), rng.choice([60.0, 90.5]), None)
        case 6:
            pace.record_used(sender, action, seq, day, _moment(rng), rng.choice([60.0, 90.5]))
        case 7:
            if rng.random() < 0.7:
                pace.unbook_point(sender, action, seq, _moment(rng))
            elif ids := [pace_id for pace_id, in db.execute_sql("SELECT id FROM pace ORDER BY id").fetchall()]:
                pace.move_point(rng.choice(ids), day, _moment(rng))  # (fill_gaps moves a booking by id)
        case 8:
            hints.set_first_free_day(sender, seq, action, rng.choice(ZONES), rng.choice(DAYS))
        case 9:
            hints.reopen_day(sender, seq, action, rng.choice(DAYS))
        case 10:
            hints.widen_reach(sender, action, rng.choice([30.0, 60.0, 120.0]))
        case _:
            if rng.random() < 0.5:
                hints.mark_vacated(sender, seq, action, day)
            else:
                hints.take_vacated()


def _answers(senders: list[int]) -> list[object]:
    """Everything the kept reads answer, for every key of the test."""
    out: list[object] = [hints.any_vacated()]
    for sender in senders:
        for action in ACTIONS:
            out.append(hints.reach(sender, action))
            for used_only in (False, True):
                points = pace.points_between(sender, action, NOW - dt.timedelta(minutes=20),
                                             NOW + dt.timedelta(minutes=140), used_only=used_only)
                out.append(sorted((at.isoformat(), spacing) for at, spacing in points))  # (the zone too)
            for seq in SEQUENCES:
                out += [hints.first_free_day(sender, seq, action, zone) for zone in ZONES]
                out += [usage.day_usage(sender, day, action, seq) for day in DAYS]
    return out


def _from_the_database(senders: list[int]) -> list[object]:
    """The same answers, read with SQL of the test's own."""
    sql: Callable[..., list[tuple[object, ...]]] = lambda q, *a: db.execute_sql(q, a).fetchall()  # noqa: E731
    out: list[object] = [bool(sql("SELECT 1 FROM pace_vacated"))]
    lo, hi = NOW - dt.timedelta(minutes=20), NOW + dt.timedelta(minutes=140)
    for sender in senders:
        for action in ACTIONS:
            reach = sql("SELECT spacing FROM pace_reach WHERE sender_id = ? AND action = ?", sender, action)
            out.append(float(reach[0][0]) if reach else None)
            points = sql("SELECT at, spacing, state FROM pace WHERE sender_id = ? AND action = ?", sender, action)
            for used_only in (False, True):
                out.append(sorted((from_db_time(str(at)).isoformat(), spacing) for at, spacing, state in points
                                  if lo < from_db_time(str(at)) < hi and (state == "used" or not used_only)))
            for seq in SEQUENCES:
                for zone in ZONES:
                    row = sql("SELECT first_free FROM pace_hint WHERE sender_id = ? AND sequence = ? AND action = ? "
                              "AND zone = ?", sender, seq, action, zone)
                    out.append(row[0][0] if row else None)
                for day in DAYS:
                    rows = sql("SELECT sequence, used, reserved FROM usage WHERE sender_id = ? AND day = ? "
                               "AND action = ?", sender, day, action)
                    mine = [(u, r) for s, u, r in rows if s == seq] or [(0, 0)]
                    out.append((*mine[0], sum(int(str(u)) for _, u, _ in rows)))
    return out


@pytest.mark.parametrize("seed", range(6))
def test_kept_rows_answer_as_the_database_after_any_writes(senders: list[int], seed: int) -> None:
    rng = random.Random(seed)
    with sole_writer(), writing():
        for _ in range(300):
            _write(rng, senders)
            if rng.random() < 0.3:
                assert _answers(senders) == _from_the_database(senders)
        assert _answers(senders) == _from_the_database(senders)


def test_a_moved_point_is_read_again(senders: list[int]) -> None:
    with sole_writer(), writing():
        pace.book_point(senders[0], "connect", "intro", DAYS[0], NOW, 60.0, None)
        assert pace.points_between(senders[0], "connect", NOW - dt.timedelta(hours=1), NOW + dt.timedelta(hours=1)) \
            == [(NOW, 60.0)]
        (pace_id,), = db.execute_sql("SELECT id FROM pace").fetchall()
        pace.move_point(pace_id, DAYS[1], NOW + dt.timedelta(days=1))
        assert pace.points_between(senders[0], "connect", NOW - dt.timedelta(hours=1), NOW + dt.timedelta(hours=1)) \
            == []


def _nothing_booked(sender: int) -> None:
    assert usage.day_usage(sender, DAYS[0], "connect", "intro") == (0, 0, 0)
    assert hints.first_free_day(sender, "intro", "connect", ZONES[0]) is None
    assert hints.reach(sender, "connect") is None
    assert pace.points_between(sender, "connect", NOW - dt.timedelta(hours=1), NOW + dt.timedelta(hours=1)) == []
    assert not hints.any_vacated()


def test_a_rollback_drops_what_was_kept(senders: list[int]) -> None:
    sender = senders[0]
    with sole_writer(), writing():
        _nothing_booked(sender)
        with pytest.raises(RuntimeError), writing():  # a savepoint, rolled back
            usage.add_usage(sender, DAYS[0], "connect", "intro", reserved=1)
            pace.book_point(sender, "connect", "intro", DAYS[0], NOW, 60.0, None)
            hints.set_first_free_day(sender, "intro", "connect", ZONES[0], DAYS[1])
            hints.widen_reach(sender, "connect", 60.0)
            hints.mark_vacated(sender, "intro", "connect", DAYS[0])
            assert usage.day_usage(sender, DAYS[0], "connect", "intro") == (0, 1, 0)
            assert hints.any_vacated()
            raise RuntimeError("boom")
        _nothing_booked(sender)


def test_nothing_is_kept_outside_a_sole_writer_block(senders: list[int], tmp_path: pathlib.Path) -> None:
    sender = senders[0]
    with writing():
        assert usage.day_usage(sender, DAYS[0], "connect", "intro") == (0, 0, 0)
        assert hints.first_free_day(sender, "intro", "connect", ZONES[0]) is None
        assert hints.reach(sender, "connect") is None
        assert pace.points_between(sender, "connect", NOW - dt.timedelta(hours=1), NOW + dt.timedelta(hours=1)) == []
        assert not hints.any_vacated()
    with sqlite3.connect(tmp_path / "s.db") as other:  # another runner sharing the database
        other.execute("INSERT INTO usage (sender_id, sequence, action, day, used, reserved) "
                      "VALUES (?, 'intro', 'connect', ?, 1, 2)", (sender, DAYS[0]))
        other.execute("INSERT INTO pace_hint (sender_id, sequence, action, zone, first_free) "
                      "VALUES (?, 'intro', 'connect', ?, ?)", (sender, ZONES[0], DAYS[1]))
        other.execute("INSERT INTO pace_reach (sender_id, action, spacing) VALUES (?, 'connect', 60.0)", (sender,))
        other.execute("INSERT INTO pace (sender_id, action, sequence, day, at, spacing, state) "
                      "VALUES (?, 'connect', 'intro', ?, '2026-03-02 09:00:00.000000', 60.0, 'used')", (sender, DAYS[0]))
        other.execute("INSERT INTO pace_vacated (sender_id, sequence, action, day) VALUES (?, 'intro', 'connect', ?)",
                      (sender, DAYS[0]))
    with writing():
        assert usage.day_usage(sender, DAYS[0], "connect", "intro") == (1, 2, 1)
        assert hints.first_free_day(sender, "intro", "connect", ZONES[0]) == DAYS[1]
        assert hints.reach(sender, "connect") == 60.0
        assert pace.points_between(sender, "connect", NOW - dt.timedelta(hours=1), NOW + dt.timedelta(hours=1)) \
            == [(NOW, 60.0)]
        assert hints.any_vacated()
