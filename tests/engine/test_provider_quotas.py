"""A provider quota over its own window (ConnectSafely: 90 invitations a week per account) is audited
per that window: a week over it is a broken promise, whatever the daily counts say."""
from __future__ import annotations

from runner import audit

from .conftest import HarnessFactory, lead_row, sequence_yaml

INVITE = """\
  - {id: connect, action: connect}
  - end: invited
"""


def test_the_audit_flags_a_week_over_the_providers_quota(make_harness: HarnessFactory) -> None:
    h = make_harness(sequence_yaml("s", INVITE, limits="limits:\n  connect: {daily: 25, min_gap: 1 minute}\n"))
    h.enroll(*(lead_row(f"lead-{i:03d}", timezone="Europe/Berlin") for i in range(130)))
    h.run(days=7)
    assert audit.violations(h.sequences, h.engine.rt) == []  # the sandbox has no weekly quota
    sent = len([a for a in h.actions(action="connect") if a.status == "done"])
    assert sent > 120  # up to 25 a day, Monday to Friday
    # The same ledger, had it gone through ConnectSafely: more than 90 in the week from Monday.
    h.provider.name = "connectsafely"
    assert audit.violations(h.sequences, h.restart().rt) == [
        f"sender alice: {sent} connect actions in the week from 2026-03-02 00:00 UTC; connectsafely's quota is "
        "90 a week (from Monday 00:00 UTC)"]
