"""The `seqrun` console script: a Ctrl-C while the commands are still being loaded is an
interruption like any other (exit 130, "Interrupted."), not a Python traceback."""
from __future__ import annotations

import sys
from typing import Any

import pytest

import runner


class _CtrlCWhileLoading:
    """A meta path finder that stands for a Ctrl-C arriving while runner.cli.main is imported."""

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> None:
        if name == "runner.cli.main":
            raise KeyboardInterrupt


def test_ctrl_c_while_seqrun_starts(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delitem(sys.modules, "runner.cli.main", raising=False)
    monkeypatch.setattr(sys, "meta_path", [_CtrlCWhileLoading(), *sys.meta_path])
    monkeypatch.setattr(sys, "argv", ["seqrun", "--version"])
    with pytest.raises(SystemExit) as stopped:
        runner.main()
    assert stopped.value.code == 130
    assert capsys.readouterr() == ("", "Interrupted.\n")


def test_the_console_script_runs_seqrun(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(sys, "argv", ["seqrun", "--version"])
    with pytest.raises(SystemExit) as stopped:
        runner.main()
    assert stopped.value.code == 0
    assert capsys.readouterr().out == f"seqrun, version {runner.__version__}\n"
