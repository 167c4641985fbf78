"""A notify step whose header variable is not set: the lead waits for the operator, it does not fail."""
from __future__ import annotations

from runner.holds import LEAD, Target, resume

from .conftest import HarnessFactory, lead_row, sequence_yaml

STEPS = """\
  - {id: crm, action: notify, url: "https://crm.example.com/hook", headers_from_env: {Authorization: CRM_TOKEN}}
  - end: synced
"""


def test_a_lead_at_a_notify_step_without_its_variable_is_paused_and_resumes_once_it_is_set(
        make_harness: HarnessFactory) -> None:
    env: dict[str, str] = {}
    h = make_harness(sequence_yaml("s", STEPS), getenv=env.get)
    h.enroll(lead_row("anna"))
    h.tick()
    enr = h.enrollment("anna")
    assert (enr.state, enr.step_id, enr.paused_reason) == (
        "paused", "crm", "notify: environment variable CRM_TOKEN (for header Authorization) is not set; set it, "
        "restart seqrun run and resume the lead")
    assert h.actions("anna") == [] and h.notified == []

    env["CRM_TOKEN"] = "Bearer t0ken"
    assert resume(Target(LEAD, h.lead("anna").id, "lead anna"), h.now).changed == 1
    h.tick()
    assert (h.enrollment("anna").state, h.enrollment("anna").outcome) == ("done", "synced")
    assert [url for url, _ in h.notified] == ["https://crm.example.com/hook"]
