"""What a simulator run is asked to do (:class:`RunOptions`) and the one place its values are
checked.

``RunOptions`` refuses a run that cannot be simulated with an :class:`OptionError` that names
the field, the value and what is wanted. The shells name their own option for the field:
``broker simulate`` (``--vehicles``, ``--max-s`` ...) and ``sweep matrix`` (``--units`` ...)
each map a field to their option name (:meth:`OptionError.said`), so a bad value is refused
in their terms, by the same rule, before any run. (The rules stood three times before: here,
in the simulate command and in the sweep, with their own wording.)
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from broker.ingest_forms import Form
from broker.settings import EngineConfig
from broker.simulate.demand import DEMANDS

MAX_SEED = 2**31 - 1  # SUMO's --seed is a C int


class OptionError(ValueError):
    """A run option that cannot be: its ``RunOptions`` field, the value as given, and what is
    wanted (``str``: ``run options: units 0: want at least 1 unit``)."""

    def __init__(self, field: str, value: str, want: str) -> None:
        super().__init__(field, value, want)  # args: pickles (a child process sends errors)
        self.field, self.value, self.want = field, value, want

    def said(self, options: Mapping[str, str]) -> str:
        """The problem in a command's terms: ``options`` maps fields to its option names
        (``{"units": "--vehicles"}``); a field it has no option for is named as the field."""
        return f"{options.get(self.field, self.field)} {self.value}: {self.want}"

    def __str__(self) -> str:
        return f"run options: {self.field} {self.value}: {self.want}"


@dataclass(frozen=True)
class RunOptions:
    """What to simulate. Times in seconds of simulated time."""

    scenario: str = "grid"
    seed: int = 1
    units: int = 1
    traffic: str = "light"  # light | heavy
    demand: str | None = None  # random | counts (broker.simulate.demand); None: the recipe's
    roads: str | None = "auto"  # "auto": the scenario's own roads.geojson; None: no network
    warmup_s: float = 150.0
    max_s: float = 1500.0  # hard stop of the simulated clock
    gps_sigma_m: float = 3.0
    cache_dir: Path = Path(".cache/simulate")
    # the heading-aware receiver scores the warning segments: the engine builds them
    cfg: EngineConfig = field(default_factory=lambda: EngineConfig(warning_segments=True))
    circle_radius_m: float = 300.0
    # extra engine variants (lookahead_s, approach_s), with the same roads, for the trade-off
    sweep: tuple[tuple[float, float], ...] = ()
    # extra named engine configurations, with the same roads, scored on the same traffic
    variants: tuple[tuple[str, EngineConfig], ...] = ()
    # ...and without a road network (as the "zones" method), scored on the same traffic
    variants_without_roads: tuple[tuple[str, EngineConfig], ...] = ()
    # what the units send: the combined form, or the split / Traccar form (docs/ingest.md)
    form: Form = "combined"
    # the CAD route reaches the broker this long before the unit's first fix, as real CAD sends
    # it at dispatch (~30 s before the unit turns out with lights); 0: with its first fix
    route_lead_s: float = 0.0
    # (after_s, length_s): every unit's fixes are withheld for length_s, from after_s after its
    # first fix (a tunnel, an urban canyon; the unit drives on unseen); (0, 0): no dropout
    dropout_s: tuple[float, float] = (0.0, 0.0)

    def __post_init__(self) -> None:
        """Refuse a run that cannot be simulated (:class:`OptionError`), rather than run
        another one: ``route_lead_s`` -5 or a dropout of (60, -30) or (nan, 30) ran as if none
        was asked for; no unit failed with an IndexError after the warm-up; a clock that stops
        before the warm-up ends dispatched no unit and scored an empty run (every figure 0 or
        NaN)."""
        check_route_lead(self.route_lead_s)
        check_dropout(self.dropout_s)
        if self.units < 1:
            raise OptionError("units", f"{self.units}", "want at least 1 unit")
        # checked in the run too, but there the message named no option (and SUMO's bar had
        # started): "traffic level must be light or heavy, got 'medium'"
        if self.traffic not in ("light", "heavy"):
            raise OptionError("traffic", repr(self.traffic), "want light or heavy")
        if self.demand is not None and self.demand not in DEMANDS:
            raise OptionError("demand", repr(self.demand), f"want one of {', '.join(DEMANDS)}")
        # SUMO takes a seed of 0 to 2**31-1: a larger one was a SUMO error and tracebacks,
        # exit 1; -1 SUMO's "expected non-negative integer" naming no option
        if not 0 <= self.seed <= MAX_SEED:
            raise OptionError("seed", f"{self.seed}", f"want a whole number 0 to {MAX_SEED} "
                              "(SUMO's seed)")
        # inf ran into an OverflowError traceback (a bar of int(inf) steps); nan passed no test
        if not math.isfinite(self.max_s):
            raise OptionError("max_s", f"{self.max_s:g}", "want a finite number of seconds")
        if not self.max_s > self.warmup_s:
            raise OptionError(
                "max_s", f"{self.max_s:g}", f"want more than the {self.warmup_s:g} s warm-up "
                "(the units are dispatched after it)"
            )


def check_route_lead(seconds: float) -> float:
    """``seconds`` of CAD route lead, if it is a finite number >= 0 (OptionError otherwise)."""
    if not (math.isfinite(seconds) and seconds >= 0.0):
        raise OptionError("route_lead_s", f"{seconds:g}", "want seconds >= 0")
    return seconds


def check_dropout(gap: tuple[float, float]) -> tuple[float, float]:
    """``(after, length)`` seconds of dropout, if it is none ``(0, 0)`` or ``after`` >= 0 and
    ``length`` > 0, both finite (OptionError otherwise)."""
    after, length = gap
    if gap != (0.0, 0.0) and not (
        math.isfinite(after) and math.isfinite(length) and after >= 0.0 and length > 0.0
    ):
        raise OptionError(
            "dropout_s", f"{after:g},{length:g}", "want AFTER >= 0 and LENGTH > 0 seconds"
        )
    return gap


def parse_dropout(text: str) -> tuple[float, float]:
    """``"AFTER,LENGTH"`` seconds (empty: no dropout); OptionError naming what is wrong for a
    malformed text or a dropout that cannot be (:func:`check_dropout`).

    >>> parse_dropout("60,30"), parse_dropout("")
    ((60.0, 30.0), (0.0, 0.0))
    """
    if not text:
        return (0.0, 0.0)
    try:
        after, length = (float(v) for v in text.split(","))
    except ValueError:
        want = "want AFTER,LENGTH seconds (e.g. 60,30)"
        raise OptionError("dropout_s", repr(text), want) from None
    return check_dropout((after, length))
