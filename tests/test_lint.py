"""The linters are part of the test command: ruff over the code, tests and benchmarks; mypy over `runner/`.

Both come with the `[test]` extra and are configured in pyproject.toml; they run from the virtualenv that
runs pytest, so CI (which runs the README's test command) runs them too.
"""
from __future__ import annotations

import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent


def tool(name: str) -> str:
    """The tool installed next to this Python (the `[test]` extra puts it there)."""
    path = pathlib.Path(sys.executable).parent / name
    assert path.exists(), f"{name} is not installed next to {sys.executable}: pip install '.[test]'"
    return str(path)


def run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)


def test_ruff_finds_nothing() -> None:
    done = run(tool("ruff"), "check", "--no-cache", "runner", "tests", "bench")
    assert done.returncode == 0, f"ruff check failed:\n{done.stdout}{done.stderr}"


def test_mypy_finds_nothing() -> None:
    # The cache (.mypy_cache, next to pyproject.toml) makes repeated runs take seconds; CI's first run ~30 s.
    done = run(tool("mypy"))
    assert done.returncode == 0, f"mypy failed:\n{done.stdout}{done.stderr}"
