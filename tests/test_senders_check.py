"""`seqrun senders check` on sandbox senders: ready, with the configured own id; an expired session is not."""
from __future__ import annotations

import pathlib

import pytest

from runner.cli.main import main
from runner.providers import PROVIDERS
from runner.providers.sandbox import SandboxProvider

SEQRUN_YAML = """\
version: 1
database: seqrun.db
senders:
  - {name: alice, provider: sandbox, account_id: acc-alice, profile_id: ACoAAalice}
  - {name: bob, provider: sandbox, account_id: acc-bob}
"""


def test_sandbox_senders_are_ready_and_an_expired_one_is_not(tmp_path: pathlib.Path,
                                                             monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "seqrun.yaml").write_text(SEQRUN_YAML, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SEQRUN_DB", raising=False)
    assert main(["senders", "check"]) == 0
    assert capsys.readouterr().out == (
        "alice: ready (sandbox); credentials ok; account ok (simulated); LinkedIn id ACoAAalice\n"
        "bob: ready (sandbox); credentials ok; account ok (simulated)\n")

    def expired(**options: object) -> SandboxProvider:
        provider = SandboxProvider(**options)  # type: ignore[arg-type]
        provider.expire_auth("acc-bob")
        return provider

    monkeypatch.setitem(PROVIDERS, "sandbox", expired)
    assert main(["senders", "check", "bob"]) == 1
    out = capsys.readouterr()
    assert out.out == "bob: NOT READY (sandbox): the simulated LinkedIn session of acc-bob expired\n"
    assert out.err == "error: 1 of 1 sender(s) not ready: bob\n"
