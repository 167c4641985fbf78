"""`outgoing:` in seqrun.yaml: what loads, and the exact message for each mistake (never a secret)."""
from __future__ import annotations

import json
import pathlib

import pytest

from runner.language.diagnostics import UserError
from runner.language.model import Pos
from runner.outgoing import Subscription
from runner.outgoing_derive import EVENT_TYPES
from runner.project.config import load_config

HEAD = "version: 1\nsenders:\n  - {name: alice, provider: sandbox, account_id: acc-alice}\noutgoing:\n"


def errors_of(tmp_path: pathlib.Path, body: str, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "seqrun.yaml").write_text(HEAD + body, encoding="utf-8")
    with pytest.raises(UserError) as info:
        load_config(tmp_path)
    return [d.format() for d in info.value.diagnostics]


def test_subscriptions_load_with_all_events_by_default(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "seqrun.yaml").write_text(HEAD + """\
  - name: crm
    url: https://crm.example.com/hooks/seqrun?source=seqrun
    secret_env: SEQRUN_HOOK_SECRET
  - name: chat
    url_env: CHAT_HOOK_URL
    secret_env: CHAT_HOOK_SECRET
    events: [lead.replied, lead.accepted]
""", encoding="utf-8")
    config = load_config(tmp_path)
    assert config.outgoing == (
        Subscription(name="crm", url="https://crm.example.com/hooks/seqrun?source=seqrun",
                     secret_env="SEQRUN_HOOK_SECRET", events=EVENT_TYPES),
        Subscription(name="chat", url_env="CHAT_HOOK_URL", secret_env="CHAT_HOOK_SECRET",
                     events=("lead.replied", "lead.accepted")))
    assert config.outgoing[1].pos == Pos("seqrun.yaml", 8, 5)
    assert config.outgoing[1].shown_url == "$CHAT_HOOK_URL"
    assert EVENT_TYPES == ("lead.profile_visited", "lead.invite_sent", "lead.invite_withdrawn", "lead.message_sent",
                           "lead.inmail_sent", "lead.accepted", "lead.replied", "lead.sequence_finished",
                           "lead.failed", "sender.paused", "sender.resumed")


def test_shape_mistakes_are_positioned_and_never_show_a_secret(tmp_path: pathlib.Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    assert errors_of(tmp_path, """\
  - name: crm
    url: https://crm.example.com/hooks
    secret_env: SEQRUN_HOOK_SECRET
    events: [lead.accepted, lead.acepted]
  - name: chat
    url_env: chat_url
    secret: whsec_c2VjcmV0IHNpZ25pbmcga2V5
  - name: slack
    url: ftp://hooks.example.com/x
    secret_env: sk_live_51HqLyjWDarjtT1zdp7dc
    events: [lead.replied, lead.replied]
  - name: CRM
    url: https://crm.example.com/hooks
    secret_env: SEQRUN_HOOK_SECRET
    timeout: 3
""", monkeypatch) == [
        'seqrun.yaml:8:29: error: outgoing[name=crm].events[1]: unknown event type "lead.acepted"; did you mean '
        '"lead.accepted"?',
        'seqrun.yaml:9:5: error: outgoing[name=chat]: missing required key "secret_env"',
        'seqrun.yaml:10:14: error: outgoing[name=chat].url_env: expected the name of an environment variable: '
        'upper-case letters, digits and "_", like "CRM_HOOK_URL" (the value is not shown)',
        "seqrun.yaml:11:5: error: outgoing[name=chat].secret: secrets do not belong in seqrun.yaml; put the signing "
        "secret in an environment variable and name it in secret_env, e.g. secret_env: SEQRUN_HOOK_SECRET",
        'seqrun.yaml:13:10: error: outgoing[name=slack].url: expected an http(s) URL like '
        '"https://crm.example.com/hooks/seqrun" (the value is not shown)',
        "seqrun.yaml:14:17: error: outgoing[name=slack].secret_env: this looks like a secret value, not the name of "
        "an environment variable; put the value in an environment variable and write its name here, like "
        '"SEQRUN_HOOK_SECRET" (the value is not shown)',
        "seqrun.yaml:15:13: error: outgoing[name=slack].events: an event type is listed twice",
        'seqrun.yaml:16:11: error: outgoing[3].name: expected a name of lower-case letters, digits, "_" and "-" '
        'starting with a letter, got "CRM"',
        'seqrun.yaml:19:5: error: outgoing[3].timeout: unknown key "timeout" (expected one of: name, url, url_env, '
        'secret_env, events)',
    ]


def test_urls_with_credentials_twice_defined_names_and_url_or_url_env(tmp_path: pathlib.Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    assert errors_of(tmp_path, """\
  - name: crm
    url: https://seqrun:hunter2@crm.example.com/hooks?api_key=abc123&source=x
    secret_env: SEQRUN_HOOK_SECRET
  - name: crm
    url_env: CRM_URL
    secret_env: SEQRUN_HOOK_SECRET
  - name: slack
    url: https://hooks.example.com/a
    url_env: SLACK_URL
    secret_env: SLACK_SECRET
  - name: nowhere
    secret_env: SLACK_SECRET
""", monkeypatch) == [
        'seqrun.yaml:6:10: error: outgoing[name=crm].url: the URL carries a credential (a user name or password; '
        'query parameter "api_key"); secrets do not belong in seqrun.yaml: put the whole URL in an environment '
        "variable and name it in url_env (the URL is not shown)",
        'seqrun.yaml:8:11: error: outgoing[name=crm].name: outgoing "crm" is defined twice (first on line 5)',
        'seqrun.yaml:11:5: error: outgoing[name=slack]: expected "url" (the URL) or "url_env" (the name of an '
        "environment variable holding it), not both",
        'seqrun.yaml:15:5: error: outgoing[name=nowhere]: expected "url" (the URL) or "url_env" (the name of an '
        "environment variable holding it), got neither",
    ]


def test_the_schema_lists_exactly_the_event_types_seqrun_derives() -> None:
    from runner.project.config import load_schema

    schema = load_schema()["$defs"]["outgoing"]["properties"]["events"]["items"]["enum"]
    assert tuple(schema) == EVENT_TYPES
    shipped = json.loads((pathlib.Path(__file__).parent.parent / "schemas" / "config.schema.json").read_text())
    assert shipped == load_schema()


def test_an_empty_events_list_says_what_to_write(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert errors_of(tmp_path, """\
  - name: crm
    url: https://crm.example.com/hooks
    secret_env: SEQRUN_HOOK_SECRET
    events: []
""", monkeypatch) == ['seqrun.yaml:8:13: error: outgoing[name=crm].events: expected at least one event type, like '
                      '[lead.replied]; leave "events" out to send every type']
