"""What a user sees when a Postgres URL cannot be used: the missing driver, an unreachable server;
never the password of the URL."""
from __future__ import annotations

import pathlib
import sys

import peewee  # noqa: F401 - imported before a test hides psycopg: peewee looks for it once
import pytest

from runner.cli.main import main

URL = "postgresql://bob:s3cret-pw@127.0.0.1:1/seqrun"


def test_without_the_driver_a_postgres_url_names_the_extra_to_install(
        tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setitem(sys.modules, "psycopg", None)  # `import psycopg` raises ImportError
    assert main(["status", "--db", URL]) == 1
    out = capsys.readouterr()
    assert out.err == ('error: database "postgresql://bob:***@127.0.0.1:1/seqrun": the Postgres driver is not '
                       "installed; install it with: pip install 'seqrun[postgres]'\n")
    assert "s3cret-pw" not in out.out + out.err


def test_an_unreachable_server_is_named_without_the_password(
        tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("psycopg")
    monkeypatch.chdir(tmp_path)
    assert main(["status", "--db", URL]) == 1
    out = capsys.readouterr()
    assert out.err.startswith('error: database "postgresql://bob:***@127.0.0.1:1/seqrun": '
                              "cannot connect to Postgres on 127.0.0.1:1: ")
    assert "s3cret-pw" not in out.out + out.err
    assert "Traceback" not in out.err
