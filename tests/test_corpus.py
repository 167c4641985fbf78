"""The invalid-sequence corpus: `seqrun validate FILE` prints exactly what `FILE.expected` says.

Every `tests/fixtures/invalid/<name>.yaml` targets one mistake; `<name>.expected` beside it holds the
diagnostic lines (without the summary line) as printed when run from the repository root. Files
that cannot be committed sensibly (not UTF-8, a NUL byte, over the size limit) are generated here.

Template lint (`runner.language.templatelint`) is switched off for the corpus so that it pins the loader's
and the checks' messages only; `test_valid_fixtures_pass_template_lint` and the shipped examples
run the real thing.

To re-record after an intended change of wording: `SEQRUN_UPDATE_EXPECTED=1 pytest tests/test_corpus.py`,
then read the diff.
"""
from __future__ import annotations

import os
import pathlib

import pytest

from runner.cli.main import main
from runner.language.yamlsrc import MAX_FILE_BYTES

ROOT = pathlib.Path(__file__).resolve().parent.parent
INVALID = pathlib.Path("tests/fixtures/invalid")
VALID = pathlib.Path("tests/fixtures/valid")
UPDATE = os.environ.get("SEQRUN_UPDATE_EXPECTED") == "1"

INVALID_FILES = sorted(p.name for p in (ROOT / INVALID).glob("*.yaml"))
VALID_FILES = sorted(p.name for p in (ROOT / VALID).iterdir() if p.suffix in (".yaml", ".yml"))


@pytest.fixture
def at_root(monkeypatch: pytest.MonkeyPatch) -> pathlib.Path:
    monkeypatch.chdir(ROOT)
    return ROOT


@pytest.fixture
def no_template_lint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("runner.language.templates.check_sequence_templates", lambda seq: [])


def run_validate(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, list[str]]:
    code = main(["validate", *args])
    out = capsys.readouterr().out
    return code, out.splitlines()


def test_corpus_is_big_enough() -> None:
    assert len(INVALID_FILES) >= 30
    if not UPDATE:
        missing = [n for n in INVALID_FILES if not (ROOT / INVALID / n).with_suffix(".expected").exists()]
        assert missing == []


@pytest.mark.parametrize("name", INVALID_FILES)
def test_invalid_fixture(name: str, capsys: pytest.CaptureFixture[str], at_root: pathlib.Path,
                         no_template_lint: None) -> None:
    path = INVALID / name
    code, lines = run_validate(capsys, str(path))
    diagnostics, summary = lines[:-1], lines[-1]
    expected_file = at_root / path.with_suffix(".expected")
    if UPDATE:
        expected_file.write_text("".join(line + "\n" for line in diagnostics), encoding="utf-8")
    expected = expected_file.read_text(encoding="utf-8").splitlines()
    assert diagnostics == expected
    assert diagnostics, "an invalid fixture must produce at least one diagnostic"
    assert all(line.startswith(f"{path}:") for line in diagnostics)
    has_error = any(": error: " in line for line in diagnostics)
    assert code == (1 if has_error else 0)
    assert summary.endswith(" in 1 file")


@pytest.mark.parametrize("name", VALID_FILES)
def test_valid_fixture(name: str, capsys: pytest.CaptureFixture[str], at_root: pathlib.Path,
                       no_template_lint: None) -> None:
    code, lines = run_validate(capsys, str(VALID / name))
    assert (code, lines) == (0, ["1 file ok"])


def test_valid_fixtures_pass_template_lint(capsys: pytest.CaptureFixture[str], at_root: pathlib.Path) -> None:
    code, lines = run_validate(capsys, str(VALID))
    assert (code, lines) == (0, [f"{len(VALID_FILES)} files ok"])


def test_shipped_examples_validate(capsys: pytest.CaptureFixture[str], at_root: pathlib.Path) -> None:
    shipped = sorted((at_root / "sequences").glob("*.yaml"))
    if not shipped:
        pytest.skip("sequences/ holds no examples yet")
    code, lines = run_validate(capsys, *(str(p.relative_to(at_root)) for p in shipped))
    errors = [line for line in lines if ": error: " in line]
    assert errors == []
    assert code == 0


# --- fixtures that are generated rather than committed --------------------------------------------


@pytest.fixture
def in_tmp(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch, no_template_lint: None) -> pathlib.Path:
    (tmp_path / "templates").mkdir()
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_not_utf8(in_tmp: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    (in_tmp / "latin1.yaml").write_bytes("version: 1\nname: caf\u00e9\nsteps:\n  - action: visit\n".encode("latin-1"))
    code, lines = run_validate(capsys, "latin1.yaml")
    assert code == 1
    assert lines[:-1] == ["latin1.yaml:2:10: error: file is not valid UTF-8 (byte 0xe9); save it as UTF-8"]


def test_nul_byte(in_tmp: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    (in_tmp / "utf16.yaml").write_bytes("version: 1\n".encode("utf-16-le"))
    code, lines = run_validate(capsys, "utf16.yaml")
    assert code == 1
    assert lines[:-1] == ["utf16.yaml:1:2: error: file contains a NUL byte; is it a text file? "
                          "(UTF-16 is not supported, save it as UTF-8)"]


def test_huge_file(in_tmp: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    filler = "# " + "x" * 98 + "\n"
    text = "version: 1\nname: huge\nsteps:\n  - action: visit\n" + filler * (MAX_FILE_BYTES // len(filler) + 1)
    (in_tmp / "huge.yaml").write_text(text, encoding="utf-8")
    code, lines = run_validate(capsys, "huge.yaml")
    assert code == 1
    assert lines[:-1] == ["huge.yaml: error: file is larger than 1024 KiB; is it really a YAML file?"]


def test_bom_is_accepted(in_tmp: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    (in_tmp / "bom.yaml").write_bytes(b"\xef\xbb\xbfversion: 1\nname: bom\nsteps:\n  - action: visit\n")
    assert run_validate(capsys, "bom.yaml") == (0, ["1 file ok"])
