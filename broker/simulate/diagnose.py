"""Why drivers are missed: one line of cause per driver the limit warns >= 15 s and a zone does not.

``python -m broker.simulate.diagnose misses [--scenarios grid,highway] [--seeds 3]``

For every encounter whose limit lead is >= 15 s but whose lead under ``method`` is < 15 s, look
at the civilian 15 s before the encounter (``t15``) and classify why it was not inside:

- ``dropped``: it had been inside a zone of that unit earlier and fell out (the zone shrank or
  moved past it, or the alert went stale / expired);
- ``no_zone``: no live zone of that unit at ``t15`` (alert not created yet, or a gap);
- ``beyond_end``: on the unit's planned route, ahead of the unit but beyond the stretch the zone
  covers (``ahead_m`` = how far ahead along the route; ``unit_mps`` = the unit's speed then);
- ``behind``: on the route but behind the unit's position along it;
- ``side_road``: off the route (a side street or a parallel road) and outside the zone;
  ``route_gap_m`` = its distance from the route;
- ``on_scene``: a passer of a unit on scene; ``scene_m`` = its distance from the unit.

``python -m broker.simulate.diagnose bystanders`` splits bystander vehicle-seconds by where the
civilians were (on the route, beside it, off it; ahead or behind the unit; heading).

Pure analysis of :class:`~broker.simulate.run.RunResult`; it does not change what is scored.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import shapely
import typer
from shapely.geometry.base import BaseGeometry

from broker.simulate import scorer
from broker.simulate.network import scenario_names
from broker.simulate.options import RunOptions
from broker.simulate.run import RunResult, simulate

LEAD_S = 15
ON_ROUTE_M = 15.0  # within this of the planned route: "on the route"

app = typer.Typer(add_completion=False)


@dataclass(frozen=True)
class Miss:
    """One driver the limit warns >= 15 s ahead and the method does not."""

    scenario: str
    seed: int
    unit: str
    civ: int
    kind: str  # same / oncoming / crossing / on_scene
    cause: str
    lead_s: float
    limit_lead_s: float
    unit_mps: float  # the unit's mean speed over the 15 s before the encounter
    ahead_m: float  # civ at t15 along the route minus the unit's place along it (NaN off route)
    route_gap_m: float  # civ at t15: distance from the planned route
    zone_gap_m: float  # civ at t15: distance from the zone live then (NaN: no zone)
    scene_m: float  # on-scene passers: distance from the unit at t15


def _civ_rows(traffic: scorer.Traffic, civ: int) -> np.ndarray:
    rows = np.flatnonzero(traffic.civ == civ)
    return rows[np.argsort(traffic.step[rows])]


def _live_zone(spans: list[scorer.ZoneSpan], unit: str, k: int) -> BaseGeometry | None:
    live = [s for s in spans if s.unit_id == unit and s.start <= k < s.end]
    return live[-1].zone if live else None


def _warner(result: RunResult, method: str) -> scorer.Warner:
    """``method`` as the run scored it: an engine's zones, or (``"<engine> heading"``) the same
    alerts read by the heading-aware receiver, whose spans are the engine's."""
    engine = method.removesuffix(scorer.HEADING)
    receiver = scorer.Receiver() if method != engine else None
    return scorer.Warner(method, spans=result.spans[engine], heading_aware=receiver)


def misses(result: RunResult, method: str = "zones+roads") -> list[Miss]:
    """Every encounter warned >= 15 s by the limit and < 15 s by ``method``, with a cause.
    ``method`` may be a heading receiver (``"zones+roads heading"``), as in the figures."""
    traffic, units = result.traffic, {u.unit_id: u for u in result.units}
    warner = _warner(result, method)
    spans = list(warner.spans)
    order, starts = scorer._civ_index(traffic)
    masks = scorer.inside_masks(traffic, result.units, warner)
    limit = scorer.inside_masks(
        traffic, result.units, scorer.limit_warning(result.units, result.built.geo.area_m2)
    )
    routes = {}
    for p in result.plans:
        lon, lat = zip(*p.route_ll, strict=True)
        x, y = result.built.geo.to_xy(np.array(lon), np.array(lat))
        routes[p.vehicle_id] = shapely.LineString(np.column_stack([x, y]))
    out: list[Miss] = []
    for enc in result.encounters:
        lead = scorer._lead_steps(masks[enc.unit_id], traffic, order, starts, enc)
        lim = scorer._lead_steps(limit[enc.unit_id], traffic, order, starts, enc)
        if lim < LEAD_S or lead >= LEAD_S:
            continue
        u = units[enc.unit_id]
        k15 = enc.step - LEAD_S
        rows = _civ_rows(traffic, enc.civ)
        at = rows[traffic.step[rows] == k15]
        if not len(at):
            continue
        r15 = int(at[0])
        px, py = float(traffic.x[r15]), float(traffic.y[r15])
        before = rows[traffic.step[rows] < enc.step - lead]
        was_in = bool(np.any(masks[enc.unit_id][before])) if len(before) else False
        zone = _live_zone(spans, enc.unit_id, k15)
        route = routes[enc.unit_id]
        pt = shapely.Point(px, py)
        route_gap = float(shapely.distance(route, pt))
        ux, uy = u.x[k15], u.y[k15]
        ahead = float("nan")
        if route_gap <= ON_ROUTE_M and np.isfinite(ux):
            ahead = float(
                shapely.line_locate_point(route, pt)
                - shapely.line_locate_point(route, shapely.Point(ux, uy))
            )
        seg = np.column_stack([u.x[k15 : enc.step + 1], u.y[k15 : enc.step + 1]])
        seg = seg[np.isfinite(seg).all(axis=1)]
        unit_mps = (
            float(np.sum(np.hypot(*np.diff(seg, axis=0).T))) / LEAD_S if len(seg) > 1 else 0.0
        )
        zone_gap = float(shapely.distance(zone, pt)) if zone is not None else float("nan")
        scene_m = float(np.hypot(px - ux, py - uy)) if enc.kind == "on_scene" else float("nan")
        if was_in:
            cause = "dropped"
        elif zone is None:
            cause = "no_zone"
        elif enc.kind == "on_scene":
            cause = "on_scene"
        elif route_gap <= ON_ROUTE_M:
            cause = "beyond_end" if ahead > 0 else "behind"
        else:
            cause = "side_road"
        out.append(
            Miss(
                result.options.scenario, result.options.seed, enc.unit_id, enc.civ, enc.kind,
                cause, float(lead), float(lim), round(unit_mps, 1), round(ahead, 0),
                round(route_gap, 0), round(zone_gap, 0), round(scene_m, 0),
            )
        )  # fmt: skip
    return out


@app.command("misses")
def main(
    scenarios: str = ",".join(scenario_names(held_out=False)),
    seeds: int = 3,
    units: str = "1,3",
    levels: str = "light,heavy",
    method: str = "zones+roads",
    out: Path = Path("out/simulate/misses.json"),
) -> None:
    """Classify the misses over scenarios x seeds x units x traffic; print counts per cause."""
    found: list[Miss] = []
    totals: Counter[str] = Counter()
    for name in scenarios.split(","):
        for n in (int(v) for v in units.split(",")):
            for level in levels.split(","):
                for seed in range(1, seeds + 1):
                    r = simulate(RunOptions(scenario=name, seed=seed, units=n, traffic=level))
                    found += misses(r, method)
                    totals[name] += len(r.encounters)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps([asdict(m) for m in found], indent=0))
    by = Counter((m.scenario, m.kind, m.cause) for m in found)
    for (sc, kind, cause), n in sorted(by.items()):
        typer.echo(f"{sc:13s} {kind:9s} {cause:11s} {n:4d}  (of {totals[sc]} encounters)")
    typer.echo(f"wrote {out} ({len(found)} misses)")


def bystander_seconds(result: RunResult, method: str = "zones+roads") -> Counter[str]:
    """Bystander vehicle-seconds by where the civilian was, relative to the unit's route.

    Classes: the unit's phase then (``resp`` = responding, approaching zone; ``scene`` = on
    scene), ``on_route`` (within 12 m of the planned route), ``beside`` (12-45 m: the other
    carriageway of a divided road, a parallel lane), ``off`` (further: side streets, the circle),
    each split into ``ahead`` / ``behind`` the unit along its route and by heading
    (``with`` / ``against`` the route, ``cross``). Rows inside zones of several units count for
    the first unit in ``result.units`` only.
    """
    traffic = result.traffic
    masks = scorer.inside_masks(traffic, result.units, _warner(result, method))
    met = np.zeros(traffic.n_civilians, dtype=bool)
    met[[e.civ for e in result.encounters]] = True
    done = np.zeros(len(traffic.step), dtype=bool)
    out: Counter[str] = Counter()  # of float seconds (a Counter adds them up in `total +=`)
    for p, u in zip(result.plans, result.units, strict=True):
        lon, lat = zip(*p.route_ll, strict=True)
        x, y = result.built.geo.to_xy(np.array(lon), np.array(lat))
        route = shapely.LineString(np.column_stack([x, y]))
        rows = np.flatnonzero(masks[u.unit_id] & ~met[traffic.civ] & ~done)
        done[rows] = True
        if not len(rows):
            continue
        pts = shapely.points(traffic.x[rows], traffic.y[rows])
        gap = shapely.distance(route, pts)
        s = shapely.line_locate_point(route, pts)
        k = traffic.step[rows]
        ok = np.isfinite(u.x[k])
        us = np.full(len(rows), -np.inf)  # no unit fix at that step: count as ahead
        us[ok] = shapely.line_locate_point(route, shapely.points(u.x[k[ok]], u.y[k[ok]]))
        a = shapely.get_coordinates(shapely.line_interpolate_point(route, np.maximum(s - 3, 0)))
        b = shapely.get_coordinates(shapely.line_interpolate_point(route, s + 3))
        t = b - a
        rad = np.radians(traffic.heading_deg[rows])
        cos = (np.sin(rad) * t[:, 0] + np.cos(rad) * t[:, 1]) / np.maximum(np.hypot(*t.T), 1e-9)
        where = np.where(gap <= 12, "on_route", np.where(gap <= 45, "beside", "off"))
        side = np.where(s >= us, "ahead", "behind")
        head = np.where(cos >= 0.5, "with", np.where(cos <= -0.5, "against", "cross"))
        mode = u.mode[np.clip(k, 0, len(u.mode) - 1)]
        phase = np.where(mode == scorer.MODE_ON_SCENE, "scene", "resp")
        for key in zip(phase, where, side, head, strict=True):
            out[" ".join(key)] += traffic.dt_s  # type: ignore[assignment]
    return out


@app.command()
def bystanders(
    scenarios: str = ",".join(scenario_names(held_out=False)),
    seeds: int = 2,
    units: str = "1,3",
    levels: str = "light,heavy",
    method: str = "zones+roads",
    demand: str | None = None,
) -> None:
    """Bystander vehicle-seconds per scenario, by where the civilians were.

    ``--demand counts`` / ``random`` runs every scenario with that demand instead of its
    recipe's (a random-demand city with counted traffic, as unseen cities have it)."""
    for name in scenarios.split(","):
        total: Counter[str] = Counter()
        circle = 0.0
        for n in (int(v) for v in units.split(",")):
            for level in levels.split(","):
                for seed in range(1, seeds + 1):
                    r = simulate(RunOptions(scenario=name, seed=seed, units=n, traffic=level,
                                            demand=demand))
                    total += bystander_seconds(r, method)
                    circle += r.figures["circle300"].bystander_vehicle_s
        typer.echo(f"{name}: {sum(total.values()):.0f} veh·s (circle {circle:.0f})")
        phases: Counter[str] = Counter()
        for key, v in total.items():
            phases[key.split()[0]] += v
        typer.echo("  by phase: " + ", ".join(f"{k} {v:.0f}" for k, v in sorted(phases.items())))
        for key, v in total.most_common(12):
            typer.echo(f"  {key:30s} {v:7.0f}")


if __name__ == "__main__":  # pragma: no cover
    app()
