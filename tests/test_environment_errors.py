"""Ordinary trouble with files and arguments is the user's to fix: exit 1 and a clear message, never
exit 3 ("a bug in seqrun").

These tests usually run as root, whom file modes do not stop; a file or directory is made read-only
with the immutable attribute then (`chattr +i`, which stops root too), and with chmod otherwise.
"""
from __future__ import annotations

import contextlib
import os
import pathlib
import subprocess
from typing import Iterator

import pytest

from runner.store import db
from test_run_cli import SEQRUN_YAML, Clock, Run, clock, dump, run  # noqa: F401 - the project of test_run_cli


@contextlib.contextmanager
def read_only(path: pathlib.Path) -> Iterator[None]:
    if os.geteuid() != 0:
        mode = path.stat().st_mode
        path.chmod(mode & ~0o222)
        try:
            yield
        finally:
            path.chmod(mode)
        return
    if subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode != 0:
        pytest.skip("root ignores file modes, and chattr +i does not work on this file system")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=True)


def read_only_message(database: pathlib.Path) -> str:
    return (f'error: database "{database}" is read-only: seqrun needs to write it, and to create seqrun.db-wal and '
            f"-shm beside it in {database.parent}; check the permissions of both (and that the disk is not mounted "
            "read-only)\n")


def test_a_read_only_database_stops_run_and_pause_with_a_message_and_status_still_reads_it(
        tmp_path: pathlib.Path, clock: Clock, run: Run) -> None:
    database = tmp_path / "seqrun.db"
    db.close()
    before = dump(database)
    with read_only(database):
        assert run("run", "--once") == (1, "", read_only_message(database))
        assert run("run", "--once", "--dry-run") == (1, "", read_only_message(database))
        assert run("pause", "--sequence", "intro") == (1, "", read_only_message(database))
        code, out, _ = run("status")
        assert (code, out.splitlines()[0]) == (0, "intro: 3 lead(s) (active 3)")
    assert dump(database) == before


def test_a_database_whose_directory_is_read_only(tmp_path: pathlib.Path, clock: Clock, run: Run) -> None:
    # SQLite in WAL mode creates seqrun.db-wal and seqrun.db-shm beside the database.
    db.close()
    assert not (tmp_path / "seqrun.db-shm").exists()
    with read_only(tmp_path):
        assert run("run", "--once") == (1, "", (
            f'error: database "{tmp_path / "seqrun.db"}" cannot be opened: SQLite needs to read and write it and to '
            f"create seqrun.db-wal and -shm beside it; check that {tmp_path} is writable\n"))


def test_a_garbage_sandbox_state_file(tmp_path: pathlib.Path, clock: Clock, run: Run) -> None:
    state = tmp_path / "seqrun.db.sandbox"
    state.write_bytes(b"this is not what the sandbox wrote\n" * 200)
    assert run("run", "--once") == (1, "", (
        f"error: sandbox state file {state} cannot be used: file is not a database; delete it to start the "
        "simulated LinkedIn afresh, or point sandbox.state_path elsewhere\n"))


def test_a_sandbox_state_path_in_a_missing_directory(tmp_path: pathlib.Path, clock: Clock, run: Run) -> None:
    (tmp_path / "seqrun.yaml").write_text(SEQRUN_YAML + "  state_path: nowhere/world.db\n", encoding="utf-8")
    assert run("run", "--once") == (1, "", (
        f"error: sandbox state file {tmp_path / 'nowhere' / 'world.db'}: directory {tmp_path / 'nowhere'} does not "
        "exist (sandbox.state_path in seqrun.yaml)\n"))
    # A simulation has a simulated LinkedIn of its own and never touches the state file.
    code, out, err = run("simulate", "sequences/intro.yaml", "--leads", "3", "--days", "2")
    assert (code, err) == (0, "")
    assert not (tmp_path / "nowhere").exists()


@pytest.mark.parametrize("day", ["9999-12-31", "0001-01-01"])
def test_simulate_refuses_a_start_day_out_of_range(tmp_path: pathlib.Path, clock: Clock, run: Run, day: str) -> None:
    assert run("simulate", "sequences/intro.yaml", "--start", day) == (
        1, "", f"error: --start {day}: choose a day from 1970-01-01 to 2999-12-31\n")


def test_simulate_with_a_config_without_senders(tmp_path: pathlib.Path, clock: Clock, run: Run) -> None:
    (tmp_path / "seqrun.yaml").write_text("version: 1\n", encoding="utf-8")
    assert run("simulate", "sequences/intro.yaml", "--leads", "3") == (1, "", (
        'error: seqrun.yaml defines no senders, so nobody can send for sequence "intro"; add one under `senders:` '
        "(see docs/config.md), or simulate without a seqrun.yaml to use the built-in sandbox sender\n"))
