"""The `seqrun` command line: the only place where exceptions become exit codes and text on a terminal.

Exit codes: 0 ok (also `run` stopped by SIGTERM); 1 user error (bad input, failed validation, a
read-only database); 2 usage error (click); 3 unexpected bug (with a "please report" line; the
traceback only with --debug); 130 on Ctrl-C.

Each command lives in `runner/cli/commands/<name>.py` as a click command or group named `command`;
`COMMANDS` below is the literal registry. Command functions raise `UserError` for user mistakes and
never call `sys.exit` themselves.
"""
from __future__ import annotations

import importlib
import logging
import sys
import traceback

import click

from runner import __version__
from runner.language.diagnostics import UserError
from runner.terminal import printable

#: module name under runner.cli.commands -> command name(s) it provides (a click command or group).
COMMANDS: tuple[str, ...] = (
    "validate",
    "render",
    "graph",
    "simulate",
    "run",
    "serve",
    "leads",
    "status",
    "events",
    "export",
    "pause",
    "senders",
    "outgoing",
    "fake",
)

EXIT_OK, EXIT_USER, EXIT_USAGE, EXIT_BUG, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


class _Group(click.Group):
    """Loads each command module on first use so `seqrun --help` stays fast."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(self._load().keys())

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        return self._load().get(name)

    def _load(self) -> dict[str, click.Command]:
        if not hasattr(self, "_loaded"):
            loaded: dict[str, click.Command] = {}
            for module in COMMANDS:
                mod = importlib.import_module(f"runner.cli.commands.{module}")
                for cmd in getattr(mod, "COMMANDS", None) or [mod.command]:
                    loaded[cmd.name] = cmd
            self._loaded = loaded
        return self._loaded


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, "--version", prog_name="seqrun")
@click.option("--debug", is_flag=True, help="Show tracebacks and debug logs.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """seqrun runs LinkedIn outreach sequences written as YAML.

    \b
    Example:
      seqrun validate sequences/
      seqrun simulate sequences/founders.yaml --leads 1000 --days 30
    """
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script; returns the exit code (and exits with it)."""
    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args
    try:
        result = cli.main(args=args, prog_name="seqrun", standalone_mode=False)
        # Without standalone mode click turns `raise click.exceptions.Exit(n)` into a return value n.
        code = result if isinstance(result, int) and not isinstance(result, bool) else EXIT_OK
    except UserError as exc:
        click.echo(exc.render(), err=True)
        code = EXIT_USER
    except click.exceptions.Exit as exc:
        code = exc.exit_code
    except click.Abort:  # click's form of Ctrl-C (KeyboardInterrupt) inside a command
        click.echo("Interrupted.", err=True)
        code = EXIT_INTERRUPTED
    except click.ClickException as exc:
        exc.show()
        code = exc.exit_code
    except KeyboardInterrupt:
        click.echo("Interrupted.", err=True)
        code = EXIT_INTERRUPTED
    except BrokenPipeError:
        code = EXIT_OK
    except Exception as exc:  # noqa: BLE001 - the last line of defence: a bug, not a user mistake
        problem = _storage_problem(exc)
        if problem is not None:  # a read-only database, found at the first write: the user's to fix
            click.echo(problem.render(), err=True)
            code = EXIT_USER
        else:
            from runner.providers.http import redact

            if debug:  # redacted like every log line: an exception may quote a URL's token or a key
                click.echo(redact(traceback.format_exc()).rstrip("\n"), err=True)
            else:
                logging.getLogger("runner").debug("unexpected error", exc_info=True)

            exc_type, exc_value = sys.exc_info()[:2]
            what = redact(str(exc_value))  # a URL's query string or a credential never reaches the terminal
            click.echo(printable(f"seqrun: unexpected error: {exc_type.__name__ if exc_type else 'Error'}: {what}",
                                 multiline=True), err=True)
            click.echo("This is a bug in seqrun; please report it with the command you ran "
                       "(run again with --debug to see the traceback).", err=True)
            code = EXIT_BUG
    if argv is None:
        sys.exit(code)
    return code


def _storage_problem(exc: BaseException) -> UserError | None:
    from runner.store import health
    from runner.store.db import storage_problem

    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        problem = storage_problem(current) or health.damage_problem(current)
        if problem is not None:
            return problem
        current = current.__cause__ or current.__context__
    return None
