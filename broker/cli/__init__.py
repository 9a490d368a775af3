"""The ``broker`` command: replay, evaluate, worker, sink, simulate, transparency, roads check.

Exit codes: 0 success; 1 the run failed; 2 bad usage or unreadable input (the message says
what to fix). This package is the edge: it reads files and options, builds settings, and
hands plain data to the pure engine. One module per concern: ``common`` (the error line, an
incident with its roads and agencies), ``replay`` (and its option rules, Kafka, the player),
``evaluate``, ``transparency``; the other commands live with their subsystem.
"""

from __future__ import annotations

import inspect

import typer

from broker.cli import evaluate as _evaluate
from broker.cli import replay as _replay
from broker.cli import transparency as _transparency
from broker.roads_check import roads_app
from broker.simulate.cli import simulate as _simulate
from broker.sink import sink as _sink
from broker.streams.cli import partner_enable as _partner_enable
from broker.streams.cli import worker as _worker

app = typer.Typer(
    name="broker",
    help="Emergency vehicle alert broker: AVL positions in, warning zones out to partners.",
    no_args_is_help=True,
    add_completion=False,
)
app.add_typer(roads_app, name="roads")
app.command()(_replay.replay)
app.command(name="console-token")(_replay.console_token)
app.command()(_evaluate.evaluate)
# broker sink: a sample partner endpoint (verifies signatures, de-duplicates, records)
app.command(name="sink")(_sink)
app.command()(_transparency.transparency)
# broker simulate: SUMO traffic, zones scored driver by driver (needs the [sim] extra)
app.command(name="simulate")(_simulate)
# broker worker: the Faust worker on Kafka (settings from BROKER_* env, docs/settings-env.md)
app.command(name="worker")(_worker)
app.command(name="partner-enable")(_partner_enable)


def _reflowed(doc: str) -> str:
    """A docstring as ``--help`` prose: the lines of a paragraph joined (typer keeps a
    docstring's line breaks past its first paragraph, so the help broke mid-sentence); a line
    starting a list item ("- ") stays its own."""
    out = []
    for paragraph in doc.split("\n\n"):
        lines: list[str] = []
        for line in paragraph.splitlines():
            if lines and not line.lstrip().startswith("- "):
                lines[-1] += " " + line.strip()
            else:
                lines.append(line.strip())
        out.append("\n".join(lines))
    return "\n\n".join(out)


for _typer in (app, roads_app):
    for _info in _typer.registered_commands:
        if _info.help is None and _info.callback is not None and _info.callback.__doc__:
            _info.help = _reflowed(inspect.cleandoc(_info.callback.__doc__))


def main() -> None:  # pragma: no cover - console script entry
    """Entry point for ``python -m broker``."""
    app()
