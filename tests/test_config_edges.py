"""seqrun.yaml for HTTP providers: base_url, requests_per_minute and the credentials a driver needs."""
from __future__ import annotations

import pathlib

import pytest

from runner.language.diagnostics import UserError
from runner.project.config import load_config

EDGES = """\
version: 1
senders:
  - name: alice
    provider: edges
    account_id: 0a92b125-identity
    base_url: http://127.0.0.1:8787/v1
    requests_per_minute: 60
    credentials_env: {api_key: EDGES_API_KEY}
"""


def errors_of(tmp_path: pathlib.Path, text: str, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "seqrun.yaml").write_text(text, encoding="utf-8")
    with pytest.raises(UserError) as info:
        load_config(tmp_path)
    return [d.format() for d in info.value.diagnostics]


def test_an_edges_sender_loads_with_its_base_url_and_rate(tmp_path: pathlib.Path) -> None:
    (tmp_path / "seqrun.yaml").write_text(EDGES, encoding="utf-8")
    (sender,) = load_config(tmp_path).senders
    assert (sender.provider, sender.base_url, sender.requests_per_minute, dict(sender.credentials_env)) == (
        "edges", "http://127.0.0.1:8787/v1", 60, {"api_key": "EDGES_API_KEY"})


def test_an_edges_sender_without_an_api_key_variable_is_an_error(tmp_path: pathlib.Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    text = EDGES.replace("    credentials_env: {api_key: EDGES_API_KEY}\n", "")
    assert errors_of(tmp_path, text, monkeypatch) == [
        "seqrun.yaml:3:5: error: senders[name=alice]: provider edges needs credentials_env with api_key (the name of "
        "the environment variable holding it), e.g. credentials_env: {api_key: EDGES_API_KEY}"]


def test_a_base_url_with_a_query_string_is_refused_without_echoing_it(tmp_path: pathlib.Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    text = EDGES.replace("http://127.0.0.1:8787/v1", "https://api.edges.run/v1?token=abcdef123456")
    assert errors_of(tmp_path, text, monkeypatch) == [
        'seqrun.yaml:6:15: error: senders[name=alice].base_url: expected an http(s) URL without query string or '
        'fragment, like "https://api.edges.run/v1" (the value is not shown)']


def test_a_base_url_with_a_user_name_or_password_is_refused_without_echoing_it(
        tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = EDGES.replace("http://127.0.0.1:8787/v1", "https://me:s3cr3t@api.edges.run/v1")
    assert errors_of(tmp_path, text, monkeypatch) == [
        "seqrun.yaml:6:15: error: senders[name=alice].base_url: the URL carries a credential (a user name or "
        "password); secrets do not belong in seqrun.yaml: put the value in an environment variable and name it in "
        "credentials_env (the URL is not shown)"]
