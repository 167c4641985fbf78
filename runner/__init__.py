"""seqrun: LinkedIn outreach sequences written as YAML, validated, simulated and run durably."""
from __future__ import annotations

__version__ = "0.1.0"


def main() -> None:
    """The `seqrun` console script. Loading the commands takes a moment; a Ctrl-C in it is an
    interruption like any later one (exit 130), not a traceback. `runner.cli.main.main` does the rest."""
    import sys

    try:
        from runner.cli.main import main as run_command
    except KeyboardInterrupt:
        sys.stderr.write("Interrupted.\n")
        sys.exit(130)  # runner.cli.main.EXIT_INTERRUPTED, which is not loaded yet
    run_command()
