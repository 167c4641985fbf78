"""Where a sequence's project lives: its root directory and the `templates/` directory it uses.

A project is a directory holding `seqrun.yaml` and/or `templates/`. The root of a sequence file's
project is found by walking up from the file's directory to the first directory that contains
`seqrun.yaml` (a file) or `templates/` (a directory), up to the filesystem root. When there is none,
the directory above the sequence's own directory is taken as the root, which matches the usual
layout `sequences/x.yaml` + `templates/` side by side (missing templates are then reported there).
"""
from __future__ import annotations

import pathlib

PROJECT_CONFIG = "seqrun.yaml"
TEMPLATES_DIR = "templates"
#: Without `sandbox.state_path`, the sandbox keeps its simulated LinkedIn in the database's path plus this.
SANDBOX_STATE_SUFFIX = ".sandbox"


def find_project_root(path: str | pathlib.Path) -> pathlib.Path:
    """The project root (absolute) for a sequence file, or for a directory inside a project."""
    start = pathlib.Path(path).resolve()
    here = start if start.is_dir() else start.parent
    for candidate in (here, *here.parents):
        if _is_project_root(candidate):
            return candidate
    return here.parent


def templates_dir_for(sequence_path: str | pathlib.Path) -> pathlib.Path:
    """The absolute `templates/` directory that template names in this sequence refer to."""
    return find_project_root(sequence_path) / TEMPLATES_DIR


def _is_project_root(directory: pathlib.Path) -> bool:
    return (directory / PROJECT_CONFIG).is_file() or (directory / TEMPLATES_DIR).is_dir()
