"""`seqrun graph`: a picture of a sequence's flow as Mermaid (default) or Graphviz DOT text."""
from __future__ import annotations

import click

from runner.language.diagnostics import UserError, format_text
from runner.language.graph import to_dot, to_mermaid
from runner.language.loader import load_sequence


@click.command("graph")
@click.argument("sequence", type=click.Path(exists=True, dir_okay=False))
@click.option("--format", "output_format", type=click.Choice(["mermaid", "dot"]), default="mermaid",
              show_default=True, help="mermaid: a `flowchart TD` for Markdown and GitHub; dot: for Graphviz.")
def command(sequence: str, output_format: str) -> None:
    """Print a flowchart of a sequence: steps, branches, waits, timeouts, ends and exits.

    Branch edges carry their conditions, `wait_for` steps an edge for the event and one for the
    timeout; ends are named by their outcome; global exits are listed in their own group.

    \b
    Example:
      seqrun graph sequences/founders.yaml > founders.mmd
      seqrun graph sequences/founders.yaml --format dot | dot -Tsvg > founders.svg
    """
    seq, diags = load_sequence(sequence)
    if seq is None:
        raise UserError("fix the errors above first (see `seqrun validate`)", diags)
    if diags:  # warnings only: still draw, the picture often explains them
        click.echo(format_text(diags), err=True)
    click.echo(to_mermaid(seq) if output_format == "mermaid" else to_dot(seq), nl=False)
