"""`seqrun fake connectsafely`: refuses a half-configured start with a clear message (serving is
tested in tests/providers over real HTTP)."""
from __future__ import annotations

import pathlib
import socket

import pytest

from runner.cli.main import main


@pytest.fixture(autouse=True)
def bare_dir(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CONNECTSAFELY_WEBHOOK_SECRET", raising=False)
    monkeypatch.delenv("FAKE_KEY", raising=False)


def test_a_webhook_url_needs_the_signing_secret(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["fake", "connectsafely", "--port", "0", "--webhook-url", "http://127.0.0.1:9/hooks"]) == 1
    assert capsys.readouterr().err == ("error: --webhook-url needs the signing secret in environment variable "
                                       "CONNECTSAFELY_WEBHOOK_SECRET (--webhook-secret-env)\n")


def test_an_api_key_variable_must_be_set(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["fake", "connectsafely", "--port", "0", "--api-key-env", "FAKE_KEY"]) == 1
    assert capsys.readouterr().err == "error: environment variable FAKE_KEY (--api-key-env) is not set\n"


def test_a_busy_port_is_a_user_error(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["fake", "connectsafely", "--port", str(port)]) == 1
    assert capsys.readouterr().err.startswith(f"error: cannot listen on 127.0.0.1:{port}: ")
