"""A new user's path with a Salesflow campaign: the fake on 127.0.0.1, `senders check`, `senders
webhooks`, `leads import` (CSV and --from-campaign), `run --once` until connections and replies come
back and the CRM is told, `leads block` removing a member, Salesflow's error bodies in the audit
log; the token in no output, --debug included."""
from __future__ import annotations

import datetime as dt
import json
import logging
import pathlib
from collections.abc import Iterator, Mapping
from typing import Any

import httpx
import pytest
from tests.providers.campaign_harness import ACCOUNT, CAMPAIGN, CERTAIN, QUICK, TOKEN

from runner.cli.main import main
from runner.providers import PROVIDERS
from runner.providers.base import Account
from runner.providers.fakeserver import FakeClock, FakeHTTPServer, Reply
from runner.providers.salesflow_campaign.driver import CampaignProvider
from runner.providers.salesflow_campaign.fake import CampaignFake
from runner.providers.salesflow_campaign.webhook import webhook_token
from runner.store import Action, Enrollment, Lead, db, open_store

UTC = dt.UTC
NOW = dt.datetime(2026, 3, 3, 10, 0, tzinfo=UTC)  # a Tuesday
SECRET = "whsec_7d1e4a9c2b5f8e3a6d0c9b2e5f8a1d4c"

SEQUENCE = """\
version: 1
name: supervise
provider: salesflow-campaign
fields: {full_name: optional}
limits:
  connect: {daily: 20, min_gap: 1 minute}
exit_when: [blocked]
steps:
  - {id: join, action: connect}
  - {id: accepted, wait_for: accepted, timeout: 14 days, on_timeout: {end: not_accepted}}
  - {id: mark_connected, action: tag, tags: [connected]}
  - {id: crm, action: notify, url: CRM_URL/connected}
  - {id: replied, wait_for: replied, timeout: 14 days, on_timeout: {end: no_reply}}
  - {id: hand_over, action: tag, tags: [needs-human]}
  - end: handed_over
"""
LEADS = """\
linkedin_profile_url,full_name,location
https://www.linkedin.com/in/anna-meyer,Anna Meyer,Berlin
https://www.linkedin.com/in/ben-okafor,Ben Okafor,Lagos
"""


class Clock:
    def __init__(self, now: dt.datetime) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now


class Crm:
    """A CRM's webhook endpoint: records what seqrun posts."""

    def __init__(self) -> None:
        self.posts: list[dict[str, Any]] = []

    def handle(self, method: str, target: str, headers: Mapping[str, str], body: bytes) -> Reply:
        self.posts.append({"path": target, **json.loads(body)})
        return 200, {}, b"{}"


@pytest.fixture
def fake() -> Iterator[tuple[CampaignFake, FakeHTTPServer, Clock]]:
    clock = Clock(NOW)
    app = CampaignFake(clock=FakeClock(clock), seed=3, tokens={TOKEN}, accounts={ACCOUNT: [CAMPAIGN]},
                       sandbox=CERTAIN, pace=QUICK)
    with FakeHTTPServer(app) as server:
        yield app, server, clock


@pytest.fixture
def crm() -> Iterator[tuple[Crm, FakeHTTPServer]]:
    app = Crm()
    with FakeHTTPServer(app) as server:
        yield app, server


@pytest.fixture
def project(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch, fake: tuple[CampaignFake, FakeHTTPServer, Clock],
            crm: tuple[Crm, FakeHTTPServer]) -> Iterator[pathlib.Path]:
    app, server, clock = fake
    (tmp_path / "sequences").mkdir()
    (tmp_path / "templates").mkdir()
    (tmp_path / "seqrun.yaml").write_text(f"""\
version: 1
database: seqrun.db
senders:
  - name: carol
    provider: salesflow-campaign
    account_id: "{ACCOUNT}"
    campaign_id: {CAMPAIGN}
    base_url: {server.url}/api
    requests_per_minute: 6000
    credentials_env: {{api_key: SALESFLOW_TOKEN, webhook_secret: SEQRUN_WEBHOOK_SECRET}}
""", encoding="utf-8")
    (tmp_path / "sequences" / "supervise.yaml").write_text(SEQUENCE.replace("CRM_URL", crm[1].url), encoding="utf-8")
    (tmp_path / "leads.csv").write_text(LEADS, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SEQRUN_DB", raising=False)
    monkeypatch.setenv("SALESFLOW_TOKEN", TOKEN)
    monkeypatch.setenv("SEQRUN_WEBHOOK_SECRET", SECRET)
    for module in ("run", "leads", "senders"):
        monkeypatch.setattr(f"runner.cli.commands.{module}.utc_now", clock)
    monkeypatch.setitem(PROVIDERS, "salesflow-campaign", lambda **options: CampaignProvider(clock=clock, **options))
    yield tmp_path
    if not db.is_closed():
        db.close()


def everything(capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture) -> str:
    out = capsys.readouterr()
    return out.out + out.err + caplog.text + "\n".join(r.getMessage() for r in caplog.records)


# --- senders check ----------------------------------------------------------------------------------

def test_senders_check_shows_the_account_the_campaign_and_its_statistics(
        project: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["senders", "check"]) == 0
    assert capsys.readouterr().out == (
        f'carol: ready (salesflow-campaign); credentials ok; account ACCOUNT_ACTIVE; campaign {CAMPAIGN} '
        f'"Campaign {CAMPAIGN}" CAMPAIGN_RUNNING: 0 total, 0 imported, 0 pending, 0 invitations, 0 connections, '
        "0 messages, 0 replies, 0 withdrawn\n")
    assert main(["senders", "check", "--json"]) == 0
    (report,) = json.loads(capsys.readouterr().out)
    assert report["details"]["campaign"] == {"id": str(CAMPAIGN), "name": f"Campaign {CAMPAIGN}",
                                             "status": "CAMPAIGN_RUNNING"}
    assert report["details"]["account"] == {"id": ACCOUNT, "email": f"{ACCOUNT}@example.com",
                                            "status": "ACCOUNT_ACTIVE"}


def test_senders_check_says_what_is_wrong(project: pathlib.Path, fake: tuple[CampaignFake, FakeHTTPServer, Clock],
                                          monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                                          caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = TOKEN[::-1]
    monkeypatch.setenv("SALESFLOW_TOKEN", wrong)
    assert main(["--debug", "senders", "check"]) == 1
    text = everything(capsys, caplog)
    assert ('carol: NOT READY (salesflow-campaign): token or account rejected (Salesflow answered 403: '
            '{"Status":403,"Message":"Invalid token/account"}); check the account API token in the environment '
            "variable the sender names and the sender's account_id\n") in text
    assert "HTTP Request: GET http://127.0.0.1:" in text  # httpx's own debug line, redacted
    assert wrong not in text and TOKEN not in text
    monkeypatch.setenv("SALESFLOW_TOKEN", TOKEN)
    app = fake[0]
    app.campaigns.campaigns[CAMPAIGN].status = "CAMPAIGN_STOPPED"
    assert main(["senders", "check"]) == 1
    assert capsys.readouterr().out == (f"carol: NOT READY (salesflow-campaign): campaign {CAMPAIGN} is stopped and "
                                       "will never start by itself: start it in Salesflow\n")


def test_an_unexpected_error_under_debug_shows_no_token(project: pathlib.Path, monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    def broken(self: CampaignProvider, account: Account) -> None:
        raise RuntimeError(f"boom at https://mvc.salesflow.io/api/accounts/list?token={TOKEN} ({TOKEN})")

    monkeypatch.setattr(CampaignProvider, "check", broken)
    assert main(["--debug", "senders", "check"]) == 3
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "RuntimeError: boom at" in err
    assert TOKEN not in err


# --- webhooks ---------------------------------------------------------------------------------------

def test_senders_webhooks_sets_up_the_fakes_webhooks_idempotently_and_removes_them(
        project: pathlib.Path, fake: tuple[CampaignFake, FakeHTTPServer, Clock], capsys: pytest.CaptureFixture[str],
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    app = fake[0]
    db.init(None)  # as in a fresh process: the command opens the project's database itself
    assert main(["senders", "webhooks", "carol", "--url", "https://hooks.example.com/"]) == 0
    shown = "https://hooks.example.com/webhooks/salesflow-campaign/carol/[redacted]"
    (hook,) = app.webhooks.values()
    assert capsys.readouterr().out == (
        f"carol: webhook {hook['WebhookId']} created for {shown}\n"
        f"  attached to campaign {CAMPAIGN} for MEMBER_CONNECTED, REPLY_DETECTED, INVITATION_WITHDRAWN\n")
    token = webhook_token(SECRET, "carol")
    assert hook["Url"] == f"https://hooks.example.com/webhooks/salesflow-campaign/carol/{token}"
    assert sorted(a["RunOn"] for a in hook["attached"]) == [1, 2, 7]
    assert main(["senders", "webhooks", "carol", "--url", "https://hooks.example.com"]) == 0
    assert capsys.readouterr().out == (
        f"carol: webhook {hook['WebhookId']} found for {shown}\n"
        f"  already attached to campaign {CAMPAIGN} for MEMBER_CONNECTED, REPLY_DETECTED, INVITATION_WITHDRAWN\n")
    assert len(app.webhooks) == 1
    assert main(["senders", "webhooks", "carol", "--url", "https://hooks.example.com", "--remove"]) == 0
    assert capsys.readouterr().out == (f"carol: webhook {hook['WebhookId']} detached from campaign {CAMPAIGN} "
                                       "(MEMBER_CONNECTED, REPLY_DETECTED, INVITATION_WITHDRAWN); deleted\n")
    assert app.webhooks == {}
    assert token not in caplog.text and TOKEN not in caplog.text


def test_senders_webhooks_refuses_what_cannot_work(project: pathlib.Path, monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["senders", "webhooks", "carol", "--url", "https://hooks.example.com/?key=abc"]) == 1
    assert capsys.readouterr().err == ("error: --url: expected the daemon's public http(s) address without query "
                                       "string or fragment, like https://hooks.example.com (the value is not shown)\n")
    assert main(["senders", "webhooks", "zed", "--url", "https://hooks.example.com"]) == 1
    assert capsys.readouterr().err == "error: no sender named zed in seqrun.yaml (defined: carol)\n"
    monkeypatch.delenv("SEQRUN_WEBHOOK_SECRET")
    assert main(["senders", "webhooks", "carol", "--url", "https://hooks.example.com"]) == 1
    assert capsys.readouterr().err == ("error: sender carol: environment variable SEQRUN_WEBHOOK_SECRET "
                                       "(credentials_env.webhook_secret) is not set\n")


# --- running ----------------------------------------------------------------------------------------

def run_until_settled(project: pathlib.Path, clock: Clock, rounds: int = 40) -> None:
    for _ in range(rounds):
        assert main(["run", "--once"]) == 0
        open_store(str(project / "seqrun.db"))
        active = [e for e in Enrollment.select() if e.state == "active"]
        db.close()
        if not active:
            return
        clock.now = max(min(e.due_at for e in active), clock.now + dt.timedelta(minutes=15))


def run_until_imported(project: pathlib.Path, app: CampaignFake, clock: Clock, count: int = 2) -> None:
    for _ in range(40):
        assert main(["run", "--once"]) == 0
        if len([e for e in app.ledger if e["action"] == "connect"]) >= count:
            return
        open_store(str(project / "seqrun.db"))
        due = min(e.due_at for e in Enrollment.select() if e.state == "active")
        db.close()
        clock.now = max(due, clock.now + dt.timedelta(minutes=1))
    raise AssertionError("the leads were not imported")


def test_run_imports_members_and_follows_connections_and_replies(
        project: pathlib.Path, fake: tuple[CampaignFake, FakeHTTPServer, Clock], crm: tuple[Crm, FakeHTTPServer],
        capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    app, _, clock = fake
    assert main(["leads", "import", "leads.csv", "--sequence", "supervise"]) == 0
    run_until_settled(project, clock)
    open_store(str(project / "seqrun.db"))
    assert sorted(e.outcome for e in Enrollment.select()) == ["handed_over", "handed_over"]
    assert [sorted(lead.tags) for lead in Lead.select().order_by(Lead.key)] == [["connected", "needs-human"]] * 2
    anna = Lead.get(Lead.key == "anna-meyer")
    member = app.campaigns.find(ACCOUNT, "anna-meyer")
    assert anna.provider_ids == {"salesflow_member_id": str(member.member_id)}
    assert (member.first_name, member.last_name, member.location) == ("Anna", "Meyer", "Berlin")
    assert sorted((e["action"], e["lead"]) for e in app.ledger) == [("connect", "anna-meyer"),
                                                                     ("connect", "ben-okafor")]
    assert sorted(p["lead"]["linkedin_profile_url"] for p in crm[0].posts) == [
        "https://www.linkedin.com/in/anna-meyer", "https://www.linkedin.com/in/ben-okafor"]
    db.close()
    assert main(["export", "actions", "--format", "jsonl"]) == 0
    assert main(["export", "events", "--format", "jsonl"]) == 0
    text = everything(capsys, caplog)
    assert '"kind": "accepted"' in text or '"kind":"accepted"' in text
    assert TOKEN not in text and SECRET not in text


def test_salesflows_error_body_is_kept_in_the_audit_log(
        project: pathlib.Path, fake: tuple[CampaignFake, FakeHTTPServer, Clock], capsys: pytest.CaptureFixture[str],
        caplog: pytest.LogCaptureFixture) -> None:
    app, server, clock = fake
    assert main(["leads", "import", "leads.csv", "--sequence", "supervise"]) == 0
    httpx.post(f"{server.url}/_fake/errors", json={"status": 422, "route": "members/Import", "count": 2,
                                                   "message": "Member cannot be imported: profile is private"})
    run_until_settled(project, clock)
    assert main(["export", "actions", "--format", "jsonl"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    failed = [r for r in rows if r["status"] == "failed"]
    assert len(failed) == 2 and {r["error_kind"] for r in failed} == {"422"}
    assert all(r["error_message"] == 'Salesflow would not import ' + r["lead"].rsplit("/", 1)[1] + ' (Salesflow '
               'answered 422: {"Status":422,"Message":"Member cannot be imported: profile is private"})'
               for r in failed)
    open_store(str(project / "seqrun.db"))
    assert sorted((e.state, e.outcome) for e in Enrollment.select()) == [("failed", "failed")] * 2
    db.close()
    assert TOKEN not in everything(capsys, caplog)


# --- leads block and import --from-campaign -----------------------------------------------------------

def test_blocking_a_lead_removes_it_from_its_campaign_only(
        project: pathlib.Path, fake: tuple[CampaignFake, FakeHTTPServer, Clock],
        capsys: pytest.CaptureFixture[str]) -> None:
    app, _, clock = fake
    assert main(["leads", "import", "leads.csv", "--sequence", "supervise"]) == 0
    run_until_imported(project, app, clock)
    member = app.campaigns.find(ACCOUNT, "anna-meyer")
    capsys.readouterr()
    assert main(["leads", "block", "https://www.linkedin.com/in/anna-meyer", "--reason", "asked"]) == 0
    assert capsys.readouterr().out == (
        "blocked 1 profile\n1 lead in a running sequence will end with outcome \"blocked\" at the next step\n"
        f"removed https://www.linkedin.com/in/anna-meyer from the Salesflow campaign of carol (member "
        f"{member.member_id})\n")
    assert member.state == "deleted"
    assert app.campaigns.find(ACCOUNT, "ben-okafor").state != "deleted"
    assert [e["action"] for e in app.ledger] == ["connect", "connect"]
    assert [(e["lead"], e["member_id"]) for e in app.removed] == [("anna-meyer", member.member_id)]
    assert main(["leads", "block", "https://www.linkedin.com/in/anna-meyer"]) == 0  # gone already: nothing to do
    assert capsys.readouterr().out == ("blocked 0 profiles (1 already blocked)\n1 lead in a running sequence will "
                                       "end with outcome \"blocked\" at the next step\n")
    assert main(["leads", "block", "https://www.linkedin.com/in/someone-else"]) == 0
    assert capsys.readouterr().out == "blocked 1 profile\n"


def test_a_failed_removal_is_said_and_the_block_stands(
        project: pathlib.Path, fake: tuple[CampaignFake, FakeHTTPServer, Clock],
        capsys: pytest.CaptureFixture[str]) -> None:
    app, _, clock = fake
    assert main(["leads", "import", "leads.csv", "--sequence", "supervise"]) == 0
    run_until_imported(project, app, clock)
    capsys.readouterr()
    app.tokens = {"another"}
    assert main(["leads", "block", "https://www.linkedin.com/in/anna-meyer"]) == 1
    out = capsys.readouterr()
    assert out.out == ("blocked 1 profile\n1 lead in a running sequence will end with outcome \"blocked\" at the "
                       "next step\n")
    assert out.err.splitlines() == [
        "could not remove https://www.linkedin.com/in/anna-meyer from the Salesflow campaign of carol: token or "
        'account rejected (Salesflow answered 403: {"Status":403,"Message":"Invalid token/account"}); check the '
        "account API token in the environment variable the sender names and the sender's account_id",
        "error: 1 blocked lead may still be in a Salesflow campaign; the block stands; run the same command again "
        "to retry the removal"]
    app.tokens = {TOKEN}
    assert main(["leads", "block", "https://www.linkedin.com/in/anna-meyer"]) == 0
    assert [m.state for m in app.campaigns.members.values() if m.key == "anna-meyer"] == ["deleted"]


def test_import_from_campaign_applies_the_csv_rules(
        project: pathlib.Path, fake: tuple[CampaignFake, FakeHTTPServer, Clock],
        capsys: pytest.CaptureFixture[str]) -> None:
    app, _, clock = fake
    campaign = app.campaigns.campaigns[CAMPAIGN]
    for key, first in (("dora-lee", "Dora"), ("emil-berg", "Emil"), ("fay-blocked", "Fay")):
        app.campaigns.import_member(campaign, key, f"https://www.linkedin.com/in/{key}", NOW,
                                    {"first_name": first, "last_name": "Example"})
    assert main(["leads", "block", "https://www.linkedin.com/in/fay-blocked"]) == 0
    capsys.readouterr()
    source = f"campaign {CAMPAIGN} of carol"
    db.init(None)  # as in a fresh process: the command opens the project's database itself
    assert main(["leads", "import", "--from-campaign", "carol", "--sequence", "supervise"]) == 1
    assert capsys.readouterr().err == (f"{source}:4: error: row 4: blocked since 2026-03-03\n"
                                       "error: nothing imported: 1 of 3 rows rejected; fix them, or use --skip-invalid "
                                       "to import the 2 good rows\n")
    assert main(["leads", "import", "--from-campaign", "carol", "--sequence", "supervise", "--skip-invalid"]) == 0
    assert capsys.readouterr().out == ("sequence supervise: imported 2, updated 0, skipped 1 (blocked: 1)\n"
                                       "senders: carol 2\n")
    open_store(str(project / "seqrun.db"))
    dora = Lead.get(Lead.key == "dora-lee")
    assert dora.fields == {"first_name": "Dora", "last_name": "Example", "full_name": "Dora Example"}
    db.close()
    assert main(["run", "--once"]) == 0  # already members: nothing imported again
    assert [e for e in app.ledger if e["action"] == "connect"] == []
    open_store(str(project / "seqrun.db"))
    skipped = [a.error_message for a in Action.select().where(Action.status == "skipped")]
    assert skipped == ["invitation already pending", "invitation already pending"]
    db.close()


def test_import_needs_a_csv_or_a_campaign(project: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["leads", "import", "--sequence", "supervise"]) == 2
    assert "give a CSV file or --from-campaign SENDER (one of them)" in capsys.readouterr().err
    assert main(["leads", "import", "leads.csv", "--from-campaign", "carol", "--sequence", "supervise"]) == 2
    capsys.readouterr()
    assert main(["leads", "import", "--from-campaign", "zed", "--sequence", "supervise"]) == 1
    assert capsys.readouterr().err == ("error: no sender named zed in seqrun.yaml (defined: carol)\n")
