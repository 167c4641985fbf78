"""`seqrun leads retry`: choosing failed leads, --dry-run, and what it says."""
from __future__ import annotations

import pathlib

from runner.store import Enrollment, Lead, db, open_store
from test_run_cli import Clock, Run, clock, run  # noqa: F401 - the project of test_run_cli: three leads

ANNA = "https://www.linkedin.com/in/anna-meyer"
BEN = "https://www.linkedin.com/in/ben-okafor"


def fail(root: pathlib.Path, key: str, error: str) -> None:
    """Arrange: the lead's enrollment failed with `error` (as the engine leaves it)."""
    open_store(str(root / "seqrun.db"))
    lead = Lead.get(Lead.key == key)
    Enrollment.update(state="failed", outcome="failed", last_error=error, due_at=None).where(
        Enrollment.lead == lead.id).execute()
    db.close()


def test_retry_needs_a_selection(clock: Clock, run: Run) -> None:
    code, out, err = run("leads", "retry")
    assert (code, out) == (2, "")
    assert err.endswith("Error: say which failed leads: --all, or any of --sequence, --sender, --lead\n")


def test_retry_dry_run_lists_then_retry_puts_them_back(clock: Clock, run: Run, tmp_path: pathlib.Path) -> None:
    fail(tmp_path, "anna-meyer", "TRANSIENT: gateway timeout (gave up after 29 attempts and 23.5 h of backoff; the retry budget is 24 h)")
    fail(tmp_path, "ben-okafor", "template error: templates/note.j2:1: boom")
    assert run("leads", "retry", "--all", "--dry-run") == (0, (
        "would retry 2 failed leads:\n"
        f"  {ANNA}  [intro @ connect] TRANSIENT: gateway timeout (gave up after 29 attempts and 23.5 h of backoff; the retry "
        "budget is 24 h)\n"
        f"  {BEN}  [intro @ connect] template error: templates/note.j2:1: boom\n"), "")
    assert run("leads", "retry", "--lead", BEN, "--sequence", "intro", "--sender", "alice") == (
        0, "retried 1 failed lead, due now\n", "")
    assert run("leads", "retry", "--lead", BEN) == (0, "no failed leads match\n", "")
    open_store(str(tmp_path / "seqrun.db"))
    states = {e.lead.key: (e.state, e.due_at) for e in Enrollment.select()}
    db.close()
    assert states["ben-okafor"] == ("active", clock.now)
    assert states["anna-meyer"] == ("failed", None)


def test_retry_names_an_unknown_sender(clock: Clock, run: Run) -> None:
    assert run("leads", "retry", "--sender", "zed") == (
        1, "", 'error: unknown sender "zed" (known: alice)\n')
