"""Putting failed leads back (`runner.retry`, the engine side of `seqrun leads retry`)."""
from __future__ import annotations

import datetime as dt
from typing import Any

from runner import audit, retry
from runner.project.config import Config
from runner.project.discovery import build_runtime
from runner.providers.base import ErrorKind

from .conftest import ALICE, HarnessFactory, lead_row, sequence_yaml
from .test_errors import FLOW, error, until_called


def test_a_lead_failed_after_its_budget_continues_after_a_retry(make_harness: HarnessFactory) -> None:
    h = make_harness(sequence_yaml("s", FLOW), retry_budget=dt.timedelta(hours=1))
    h.enroll(lead_row("anna"))
    outage = [True]
    inner = h.provider.connect

    def connect(account: Any, lead: Any, *, note: str | None, key: str) -> Any:
        if outage[0]:
            raise error(ErrorKind.TRANSIENT, "gateway timeout")
        return inner(account, lead, note=note, key=key)

    h.provider.connect = connect  # type: ignore[method-assign]
    # The budget counts backoff only: between errors the lead also waits for paced points of its
    # window, so spending an hour of backoff takes more than a day.
    h.run(days=7, stop=lambda: h.enrollment("anna").state == "failed")
    outage[0] = False
    failed = h.enrollment("anna")
    assert failed.state == "failed" and failed.last_error.startswith("TRANSIENT: gateway timeout (gave up after ")

    (lead,) = retry.failed_leads()
    assert (lead.profile_url, lead.step, lead.sender, lead.error) == (
        "https://www.linkedin.com/in/anna", "connect", "alice", failed.last_error)
    dry = retry.retry([lead], h.now, dry_run=True)
    assert [r.enrollment_id for r in dry.retried] == [failed.id]
    assert h.enrollment("anna").state == "failed"  # a dry run changes nothing

    result = retry.retry([lead], h.now)
    assert (len(result.retried), result.reopened, dict(result.unchanged)) == (1, 0, {})
    enr = h.enrollment("anna")
    assert (enr.state, enr.outcome, enr.finished_at, enr.last_error, enr.due_at) == ("active", None, None, None, h.now)
    assert enr.attempt == failed.attempt + 1 and "retries" not in enr.facts and "retry_seconds" not in enr.facts
    h.run(days=1, stop=lambda: h.enrollment("anna").step_id != "connect")
    assert h.enrollment("anna").step_id == "accepted"
    keys = [a.key for a in h.actions("anna")]
    assert len(keys) == len(set(keys))
    assert audit.violations(h.sequences, h.engine.rt) == []


def test_retry_asks_the_provider_about_an_action_of_unknown_outcome_before_sending_again(
        make_harness: HarnessFactory) -> None:
    # The invite went out but its response was lost, and the provider could not say whether it had
    # happened: the lead failed with its charge kept. Retrying must not invite a second time.
    h = make_harness(sequence_yaml("s", FLOW), retry_budget=dt.timedelta(seconds=30))
    h.enroll(lead_row("anna"))
    h.provider.fail("connect", error(ErrorKind.TRANSIENT, "response lost"), after=True)
    h.provider.fail("find_action", error(ErrorKind.TRANSIENT, "ledger unavailable"))
    until_called(h, "find_action")
    enr = h.enrollment("anna")
    assert (enr.state, enr.last_error) == ("failed", "TRANSIENT: response lost (gave up after 1 attempt and 0 min of "
                                           "backoff; the retry budget is 0 min; whether the last attempt reached "
                                           "LinkedIn is unknown)")
    (unknown,) = h.actions("anna")
    assert (unknown.status, unknown.charged) == ("failed", True)

    result = retry.retry(retry.failed_leads(lead_id=enr.lead_id), h.now)
    assert (len(result.retried), result.reopened) == (1, 1)
    h.tick()
    (act,) = h.actions("anna")
    assert (act.id, act.status, act.charged) == (unknown.id, "done", True)
    assert h.sandbox.calls["connect"] == 1 and len(h.provider.called("connect")) == 1
    assert h.enrollment("anna").step_id == "accepted"
    assert h.used("connect", "2026-03-02") == 1


def test_a_lead_running_in_another_sequence_is_not_retried(make_harness: HarnessFactory) -> None:
    h = make_harness(sequence_yaml("s", FLOW), retry_budget=dt.timedelta(seconds=30))
    h.enroll(lead_row("anna"))
    h.provider.fail("connect", error(ErrorKind.TRANSIENT, "gateway timeout"))
    until_called(h, "connect")
    h.tick(h.now + dt.timedelta(minutes=5))
    enr = h.enrollment("anna")
    assert enr.state == "failed"
    from runner.store import Enrollment

    Enrollment.create(lead=enr.lead_id, sequence="other", sequence_hash="x", sender=enr.sender_id, step_id="a",
                      state="active", created_at=h.now, updated_at=h.now)
    result = retry.retry(retry.failed_leads(), h.now)
    assert (result.retried, dict(result.unchanged)) == ([], {"running in another sequence": 1})


def test_the_retry_budget_comes_from_the_config(make_harness: HarnessFactory) -> None:
    h = make_harness(sequence_yaml("s", FLOW))
    config = Config(path=None, root=str(h.root), database=None, senders=(ALICE,), retry_budget_hours=6.5)
    runtime = build_runtime(config, h.sequences, h.rows, provider_for=lambda sc, cred: h.provider,
                            notifier=lambda url, headers, payload: None)
    assert runtime.retry_budget == dt.timedelta(hours=6.5)
    assert h.engine.rt.retry_budget == dt.timedelta(hours=24)  # the default
