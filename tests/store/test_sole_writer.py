"""`transactions.sole_writer` and the rollback count: what lets a simulation keep rows it wrote in
memory across transactions (issue 6), and drop them when a rollback undid some."""
from __future__ import annotations

import pathlib

import pytest

from runner.store import db, open_store
from runner.store.transactions import kept_rows_key, rollbacks, sole_writer, writing


@pytest.fixture
def store(tmp_path: pathlib.Path):  # type: ignore[no-untyped-def]
    open_store(str(tmp_path / "s.db"), durable=False)
    yield
    db.close()


def test_nothing_is_kept_outside_a_sole_writer_block(store: None) -> None:
    assert kept_rows_key() is None
    with sole_writer():
        inside = kept_rows_key()
        assert inside is not None
    assert kept_rows_key() is None
    with sole_writer():
        assert kept_rows_key() not in (None, inside)  # a new block: nothing kept from the last one


def test_a_rollback_of_a_transaction_or_a_savepoint_changes_the_key(store: None) -> None:
    with sole_writer():
        before = kept_rows_key()
        with writing():
            db.execute_sql("CREATE TABLE t (x INTEGER)")
        assert kept_rows_key() == before  # commits keep it
        with pytest.raises(RuntimeError), writing():
            raise RuntimeError("boom")
        after_top = kept_rows_key()
        assert after_top != before
        with writing():
            with pytest.raises(RuntimeError), writing():  # a savepoint
                db.execute_sql("INSERT INTO t VALUES (1)")
                raise RuntimeError("boom")
            db.execute_sql("INSERT INTO t VALUES (2)")
        assert kept_rows_key() != after_top
        assert db.execute_sql("SELECT x FROM t").fetchall() == [(2,)]


def test_savepoints_are_named_without_drawing_a_uuid(store: None) -> None:
    count = rollbacks()
    with writing(), writing() as inner:
        inner.rollback()
    assert rollbacks() == count + 1


def test_a_failed_inner_block_does_not_keep_its_enclosing_block_from_rolling_back(store: None) -> None:
    """Savepoints share one name: a rolled-back one must leave the stack, or the enclosing block's
    ROLLBACK TO would stop at it and keep what the enclosing block wrote before it (review of issue 6)."""
    with writing():
        db.execute_sql("CREATE TABLE t (x TEXT)")
    with writing():
        with pytest.raises(RuntimeError), writing():  # a lead's run
            db.execute_sql("INSERT INTO t VALUES ('lead write before the event')")
            with pytest.raises(ValueError), writing():  # an event that fails, caught
                db.execute_sql("INSERT INTO t VALUES ('event write')")
                raise ValueError("bad event")
            raise RuntimeError("the lead fails")
        db.execute_sql("INSERT INTO t VALUES ('after')")
    assert db.execute_sql("SELECT x FROM t").fetchall() == [("after",)]


def test_a_block_rolled_back_and_going_on_keeps_one_savepoint(store: None) -> None:
    with writing():
        db.execute_sql("CREATE TABLE t (x TEXT)")
    with writing():
        with writing() as inner:
            db.execute_sql("INSERT INTO t VALUES ('undone')")
            inner.rollback()
            db.execute_sql("INSERT INTO t VALUES ('kept')")
        with pytest.raises(RuntimeError), writing():
            db.execute_sql("INSERT INTO t VALUES ('failed')")
            raise RuntimeError("boom")
        db.execute_sql("INSERT INTO t VALUES ('outer')")
    assert db.execute_sql("SELECT x FROM t ORDER BY rowid").fetchall() == [("kept",), ("outer",)]
