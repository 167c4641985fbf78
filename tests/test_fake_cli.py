"""`seqrun fake edges`: refuses a half-configured start with a clear message (serving is tested in
tests/providers over real HTTP)."""
from __future__ import annotations

import pathlib
import socket

import pytest

from runner.cli.main import main


@pytest.fixture(autouse=True)
def bare_dir(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("EDGES_WEBHOOK_SECRET", raising=False)
    monkeypatch.delenv("FAKE_KEY", raising=False)


def test_a_webhook_url_needs_the_shared_secret(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["fake", "edges", "--port", "0", "--webhook-url", "http://127.0.0.1:9/hooks"]) == 1
    assert capsys.readouterr().err == ("error: --webhook-url needs the shared secret in environment variable "
                                       "EDGES_WEBHOOK_SECRET (--webhook-secret-env)\n")


def test_an_api_key_variable_must_be_set(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["fake", "edges", "--port", "0", "--api-key-env", "FAKE_KEY"]) == 1
    assert capsys.readouterr().err == "error: environment variable FAKE_KEY (--api-key-env) is not set\n"


def test_a_busy_port_is_a_user_error(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["fake", "edges", "--port", str(port)]) == 1
    assert capsys.readouterr().err.startswith(f"error: cannot listen on 127.0.0.1:{port}: ")


def test_salesflow_refuses_a_half_configured_start(capsys: pytest.CaptureFixture[str],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SALESFLOW_WEBHOOK_SECRET", raising=False)
    assert main(["fake", "salesflow", "--port", "0", "--webhook-url", "http://127.0.0.1:9/webhooks/salesflow"]) == 1
    assert capsys.readouterr().err == ("error: --webhook-url needs the shared secret in environment variable "
                                       "SALESFLOW_WEBHOOK_SECRET (--webhook-secret-env)\n")
    assert main(["fake", "salesflow", "--port", "0", "--api-key-env", "FAKE_KEY"]) == 1
    assert capsys.readouterr().err == "error: environment variable FAKE_KEY (--api-key-env) is not set\n"
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["fake", "salesflow", "--port", str(port)]) == 1
    assert capsys.readouterr().err.startswith(f"error: cannot listen on 127.0.0.1:{port}: ")


def test_the_accepted_key_is_read_as_seqrun_reads_it(monkeypatch: pytest.MonkeyPatch) -> None:
    # seqrun drops the line break a key saved with Windows line ends carries; the fake must too, or
    # it refuses the very key it was given.
    from runner.providers.fakeserver import FakeHTTPServer

    served: list[object] = []
    monkeypatch.setattr(FakeHTTPServer, "serve_forever", lambda self: served.append(self._server.app))
    monkeypatch.setattr(FakeHTTPServer, "stop", lambda self: self._server.server_close())
    monkeypatch.setenv("FAKE_KEY", "edg-fake-key-123\r\n")
    assert main(["fake", "edges", "--port", "0", "--api-key-env", "FAKE_KEY"]) == 0
    (app,) = served
    assert app.api_keys == {"edg-fake-key-123"}  # type: ignore[attr-defined]


def test_the_connectsafely_fake_reads_its_key_as_seqrun_reads_it(monkeypatch: pytest.MonkeyPatch) -> None:
    from runner.providers.fakeserver import FakeHTTPServer

    served: list[object] = []
    monkeypatch.setattr(FakeHTTPServer, "serve_forever", lambda self: served.append(self._server.app))
    monkeypatch.setattr(FakeHTTPServer, "stop", lambda self: self._server.server_close())
    monkeypatch.setenv("FAKE_KEY", "cs-fake-key-123\r\n")
    assert main(["fake", "connectsafely", "--port", "0", "--api-key-env", "FAKE_KEY"]) == 0
    (app,) = served
    assert app.api_keys == {"cs-fake-key-123"}  # type: ignore[attr-defined]


def test_the_salesflow_fake_reads_its_key_as_seqrun_reads_it(monkeypatch: pytest.MonkeyPatch) -> None:
    from runner.providers.fakeserver import FakeHTTPServer

    served: list[object] = []
    monkeypatch.setattr(FakeHTTPServer, "serve_forever", lambda self: served.append(self._server.app))
    monkeypatch.setattr(FakeHTTPServer, "stop", lambda self: self._server.server_close())
    monkeypatch.setenv("FAKE_KEY", "sf-fake-key-123\r\n")
    assert main(["fake", "salesflow", "--port", "0", "--api-key-env", "FAKE_KEY"]) == 0
    (app,) = served
    assert app.api_keys == {"sf-fake-key-123"}  # type: ignore[attr-defined]


def test_campaign_fake_token_variable_must_be_set(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["fake", "salesflow-campaign", "--port", "0", "--token-env", "FAKE_KEY"]) == 1
    assert capsys.readouterr().err == "error: environment variable FAKE_KEY (--token-env) is not set\n"


def test_campaign_fake_on_a_busy_port_is_a_user_error(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["fake", "salesflow-campaign", "--port", str(port)]) == 1
    assert capsys.readouterr().err.startswith(f"error: cannot listen on 127.0.0.1:{port}: ")


def test_campaign_fake_knows_the_projects_campaigns(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    from runner.providers.fakeserver import FakeHTTPServer

    (tmp_path / "seqrun.yaml").write_text("""\
version: 1
senders:
  - {name: carol, provider: salesflow-campaign, account_id: "321", campaign_id: 456,
     credentials_env: {api_key: SALESFLOW_TOKEN}}
""", encoding="utf-8")
    served = []
    # Serve in the background instead of blocking, so that the command returns (and stops it).
    monkeypatch.setattr(FakeHTTPServer, "serve_forever", lambda self: served.append(self.start()._server.app))
    assert main(["fake", "salesflow-campaign", "--port", "0", "--invites-per-day", "10"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("fake Salesflow v1 API on http://127.0.0.1:") and out[0].endswith("/_fake/")
    assert out[1] == "campaigns: account 321 campaign 456"
    (app,) = served
    campaign = app.campaigns.campaigns[456]
    assert (campaign.account, campaign.status, campaign.pace.invites_per_day) == ("321", "CAMPAIGN_RUNNING", 10)


def test_the_campaign_fake_reads_its_token_as_seqrun_reads_it(monkeypatch: pytest.MonkeyPatch) -> None:
    from runner.providers.fakeserver import FakeHTTPServer

    served: list[object] = []
    monkeypatch.setattr(FakeHTTPServer, "serve_forever", lambda self: served.append(self._server.app))
    monkeypatch.setattr(FakeHTTPServer, "stop", lambda self: self._server.server_close())
    monkeypatch.setenv("FAKE_KEY", "sfl-fake-token-123\r\n")
    assert main(["fake", "salesflow-campaign", "--port", "0", "--token-env", "FAKE_KEY"]) == 0
    (app,) = served
    assert app.tokens == {"sfl-fake-token-123"}  # type: ignore[attr-defined]
