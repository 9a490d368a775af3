"""``broker evaluate``: the lead-time figures of a replayed incident."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from broker.cli.common import (
    DEFAULT_INCIDENT,
    AgenciesOption,
    RoadsOption,
    lead_time_of,
    load_agencies_for,
    load_roads,
    read_messages,
    refuse_if_nothing_read,
    run_replay,
)
from broker.roads_check import OriginOption
from broker.settings import EngineConfig
from broker.terminal import console, fail


def evaluate(
    path: Annotated[
        Path, typer.Argument(help="Incident directory, positions .ndjson file, or .gpx track.")
    ] = DEFAULT_INCIDENT,
    as_json: Annotated[bool, typer.Option("--json", help="Print the figures as JSON.")] = False,
    roads: RoadsOption = None,
    origin: OriginOption = None,
    agencies: AgenciesOption = None,
    lookahead_s: Annotated[
        float | None, typer.Option(help="Override the engine's lookahead seconds.")
    ] = None,
) -> None:
    """Lead time (how long before the unit reached each point it was warned) and zone cost."""
    try:
        cfg = EngineConfig() if lookahead_s is None else EngineConfig(lookahead_s=lookahead_s)
    except ValueError as err:
        raise fail(f"--lookahead-s {lookahead_s}: {err}") from err
    if origin is not None and roads is None:  # as replay refuses it
        raise fail("--origin: only with --roads FILE (it places that SUMO net; "
                   "docs/roads.md)")
    messages = read_messages(path, cfg)
    units = load_agencies_for(agencies, path, messages)
    network = load_roads(roads, origin=origin)
    result = run_replay(messages, cfg, network, progress=not as_json, agencies=units)
    refuse_if_nothing_read(path, result)
    figures: dict[str, object] = {
        **lead_time_of(result, progress=not as_json).to_dict(),
        "messages_rejected": len(result.rejections),
        "rejected_by_reason": result.rejected_by_reason,
    }
    if as_json:
        typer.echo(json.dumps(figures, indent=2))
        return
    table = Table(title=f"lead time of {path}", show_header=False)
    for key, value in figures.items():
        table.add_row(key, str(value))
    console.print(table)
