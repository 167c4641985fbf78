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


def test_a_password_in_the_url_query_is_never_shown(
        tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("psycopg")
    monkeypatch.chdir(tmp_path)
    url = "postgresql://bob@127.0.0.1:1/seqrun?sslmode=disable&password=s3cret-pw"
    assert main(["status", "--db", url]) == 1
    out = capsys.readouterr()
    assert out.err.startswith('error: database "postgresql://bob@127.0.0.1:1/seqrun?sslmode=disable&password=***": '
                              "cannot connect to Postgres on 127.0.0.1:1: ")
    assert "s3cret-pw" not in out.out + out.err


def test_a_port_that_is_not_a_number_is_an_input_error(
        tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    # It was exit 3, "unexpected error: ValueError: Port could not be cast to integer value".
    monkeypatch.chdir(tmp_path)
    assert main(["status", "--db", "postgresql://bob:s3cret-pw@127.0.0.1:54x2/seqrun"]) == 1
    out = capsys.readouterr()
    assert out.err == ('error: database "postgresql://bob:***@127.0.0.1:54x2/seqrun": the port "54x2" is not a '
                       "number from 1 to 65535\n")
    assert "s3cret-pw" not in out.out + out.err


def test_a_host_given_in_the_url_query_is_the_one_named(
        tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    # libpq reads `?host=` (a name or a socket directory) and `?port=`; the message said "the local socket".
    pytest.importorskip("psycopg")
    monkeypatch.chdir(tmp_path)
    assert main(["status", "--db", "postgresql:///seqrun?host=127.0.0.1&port=1"]) == 1
    assert capsys.readouterr().err.startswith(
        'error: database "postgresql:///seqrun?host=127.0.0.1&port=1": cannot connect to Postgres on 127.0.0.1:1: ')
    assert main(["status", "--db", "postgresql:///seqrun?host=/nonexistent-dir"]) == 1
    assert capsys.readouterr().err.startswith(
        'error: database "postgresql:///seqrun?host=/nonexistent-dir": cannot connect to Postgres on the socket in '
        "/nonexistent-dir: ")
