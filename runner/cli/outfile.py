"""Files seqrun writes for the user (exports): never over a file seqrun owns, never half-written.

`-o seqrun.db` once truncated the database to a CSV header. `check_output` refuses any path that is
(or, through a link, points to) the database, its `-wal`/`-shm`/`-journal` companions and its run
lock, the sandbox state file and its companions, `seqrun.yaml`, or anything inside the project's
`sequences/` and `templates/` directories. `atomic_output` writes to a temporary file in the target's directory and
renames it over the target only when everything was written, so that a failed export leaves the
previous file as it was and no partial file behind; a pipe or a device is written into directly.
"""
from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Iterable, Iterator
from typing import IO

from runner.language.diagnostics import UserError
from runner.language.paths import PROJECT_CONFIG, SANDBOX_STATE_SUFFIX, TEMPLATES_DIR
from runner.store.db import database_file

SEQUENCES_DIR = "sequences"

#: SQLite's companion files, and what to call them.
_COMPANIONS = (("", ""), ("-wal", "'s write-ahead log"), ("-shm", "'s shared-memory file"),
               ("-journal", "'s rollback journal"))
#: The file older versions of `seqrun run` locked so that only one runner worked on a database:
#: one may still run during an upgrade, and a rename over its lock file would let a second one in.
_RUN_LOCK = (".lock", "'s lock file")


def owned_files(*, root: str, config_path: str | None, databases: Iterable[str],
                sandbox_state: str | None) -> dict[str, str]:
    """Real path -> what it is, for every file seqrun owns in this project. `databases` are URLs:
    the one in use and the project's own (they differ under --db or SEQRUN_DB). Without
    `sandbox_state` (the config's `sandbox.state_path`) the sandbox keeps its state beside each
    database, as `run` does (`runner.project.discovery.real_provider_for`)."""
    owned: dict[str, str] = {}
    paths = [path for path in map(database_file, databases) if path is not None]
    files = [(path, "the database", (*_COMPANIONS, _RUN_LOCK)) for path in paths]
    states = [sandbox_state] if sandbox_state else [path + SANDBOX_STATE_SUFFIX for path in paths if path != ":memory:"]
    for base, name, companions in [*files, *((state, "the sandbox state file", _COMPANIONS) for state in states)]:
        if base and base != ":memory:":
            for suffix, what in companions:
                owned.setdefault(os.path.realpath(base + suffix), name + what)
    owned[os.path.realpath(config_path or os.path.join(root, PROJECT_CONFIG))] = "the project's configuration"
    return owned


def check_output(path: str, *, root: str, owned: dict[str, str], what_for: str = "the export") -> None:
    """Raise UserError when writing `what_for` to `path` would destroy a file seqrun owns or cannot work."""
    real = os.path.realpath(path)
    what = owned.get(real)
    if what is None and os.path.exists(real):
        what = next((w for p, w in owned.items() if os.path.exists(p) and os.path.samefile(p, real)), None)
    if what is None:
        for directory in (SEQUENCES_DIR, TEMPLATES_DIR):
            if real.startswith(os.path.realpath(os.path.join(root, directory)) + os.sep):
                what = f"in the project's {directory}/ directory"
    if what is not None:
        raise UserError(f"will not write {what_for} to {path}: it is {what}; choose another file")
    directory = os.path.dirname(real)
    if not os.path.isdir(directory):
        shown = os.path.dirname(path) or "."
        raise UserError(f"cannot write {path}: the directory {shown} does not exist")


@contextlib.contextmanager
def atomic_output(path: str) -> Iterator[IO[str]]:
    """A text handle whose content replaces `path` (through links) only if the block completes.

    A path that is not a regular file (a pipe, /dev/stdout, /dev/null) is written into as it is:
    it holds nothing to keep whole, and a rename would replace the device or pipe with a file.
    """
    if _is_stream(path):
        try:
            with open(path, "w", newline="", encoding="utf-8") as stream:
                yield stream
        except OSError as exc:
            raise UserError(f"cannot write {path}: {exc.strerror or exc}") from None
        return
    target = os.path.realpath(path)
    try:
        fd, temporary = tempfile.mkstemp(prefix=f".{os.path.basename(target)}.", suffix=".tmp",
                                         dir=os.path.dirname(target))
    except OSError as exc:
        raise UserError(f"cannot write {path}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "w", newline="", encoding="utf-8") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, _mode_for(target))
        os.replace(temporary, target)
    except OSError as exc:
        _remove(temporary)
        raise UserError(f"cannot write {path}: {exc.strerror or exc}") from None
    except BaseException:
        _remove(temporary)
        raise


def _is_stream(path: str) -> bool:
    try:
        return not stat.S_ISREG(os.stat(path).st_mode)  # follows links: /dev/stdout -> the pipe
    except OSError:
        return False  # not there yet: a new file


def _mode_for(target: str) -> int:
    """The mode the file has now, or the one a plain open() would give a new file."""
    try:
        return stat.S_IMODE(os.stat(target).st_mode)
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def _remove(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
