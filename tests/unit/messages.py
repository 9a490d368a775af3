"""Hypothesis strategies for the messages a broker takes in (fixes, CAD routes, CAD status
events) as raw JSON, for a few units around the Square, and the driver that turns them into
alert events: shared by the property tests of the driver and of the partner formats."""

from __future__ import annotations

from datetime import timedelta

from hypothesis import strategies as st

from broker.drive import CAD_STATUS, POSITIONS, ROUTES, Driver
from broker.geo.roads import RoadNetwork
from broker.model import AlertEvent
from broker.settings import EngineConfig
from tests.conftest import LAT0, LON0, M_PER_DEG_LAT, M_PER_DEG_LON, at

STATUSES = ["available", "dispatched", "responding", "on_scene", "returning", "out_of_service"]
UNITS = ["E1", "E2", "L3"]


def _ll(east_m: float, north_m: float) -> list[float]:
    return [LON0 + east_m / M_PER_DEG_LON, LAT0 + north_m / M_PER_DEG_LAT]


def _ts(t: float) -> str:
    return at(t).isoformat().replace("+00:00", "Z")


metres = st.floats(-1_400.0, 1_400.0)
times = st.floats(0.0, 240.0)
fixes = st.builds(
    lambda unit, t, e, n, speed, heading, status, lights: (POSITIONS, {
        "vehicle_id": unit, "ts": _ts(t), "lon": _ll(e, n)[0], "lat": _ll(e, n)[1],
        "speed_mps": speed, "heading_deg": heading, "status": status, "lights_sirens": lights,
        "incident_id": "F1",
    }),
    st.sampled_from(UNITS), times, metres, metres, st.floats(0.0, 40.0),
    st.none() | st.floats(0.0, 359.0), st.sampled_from(STATUSES), st.booleans(),
)  # fmt: skip
routes = st.builds(
    lambda unit, t, pts: (ROUTES, {
        "vehicle_id": unit, "incident_id": "F1", "ts": _ts(t),
        "destination": dict(zip(("lon", "lat"), _ll(*pts[-1]), strict=True)),
        "route": {"type": "LineString", "coordinates": [_ll(e, n) for e, n in pts]},
    }),
    st.sampled_from(UNITS), times, st.lists(st.tuples(metres, metres), min_size=2, max_size=6),
)  # fmt: skip
statuses = st.builds(
    lambda unit, t, status, lights: (CAD_STATUS, {
        "vehicle_id": unit, "ts": _ts(t), "status": status, "incident_id": "F1",
        **({} if lights is None else {"lights_sirens": lights}),
    }),
    st.sampled_from(UNITS), times, st.sampled_from(STATUSES), st.none() | st.booleans(),
)  # fmt: skip


@st.composite
def drives(draw: st.DrawFn) -> list[tuple[str, dict]]:
    """A unit driving straight at a steady speed, a fix a second: what makes updates."""
    unit, t0 = draw(st.sampled_from(UNITS)), draw(times)
    e0, n0, heading = draw(metres), draw(metres), draw(st.sampled_from([0.0, 90.0, 180.0, 270.0]))
    speed, status = draw(st.floats(0.0, 30.0)), draw(st.sampled_from(["responding", "on_scene"]))
    de, dn = {0.0: (0, 1), 90.0: (1, 0), 180.0: (0, -1), 270.0: (-1, 0)}[heading]
    out = []
    for k in range(draw(st.integers(2, 40))):
        e, n = e0 + de * speed * k, n0 + dn * speed * k
        out.append((POSITIONS, {
            "vehicle_id": unit, "ts": _ts(t0 + k), "lon": _ll(e, n)[0], "lat": _ll(e, n)[1],
            "speed_mps": speed, "heading_deg": heading, "status": status, "lights_sirens": True,
            "incident_id": "F1",
        }))  # fmt: skip
    return out


@st.composite
def streams(draw: st.DrawFn) -> list[tuple[str, dict]]:
    """Loose messages (any order, any place) with a unit's drive woven in."""
    loose = draw(st.lists(st.one_of(fixes, fixes, routes, statuses), max_size=20))
    drive = draw(st.none() | drives())
    if drive is None:
        return loose or [draw(fixes)]
    slots = sorted(draw(st.lists(st.integers(0, len(loose)), min_size=len(drive),
                                 max_size=len(drive))))  # fmt: skip
    woven = list(loose)
    for i, (slot, msg) in enumerate(zip(slots, drive, strict=True)):
        woven.insert(slot + i, msg)
    return woven


@st.composite
def timelines(draw: st.DrawFn) -> list[tuple[str, dict]]:
    """A few units driving east along one CAD route, mostly in time order: fixes (combined or
    split form: then the status is CAD's), routes and CAD statuses, some of them late (the
    clock steps back), some minutes apart: how a worker reading a backlog sees them."""
    out: list[tuple[str, dict]] = []
    t, east = 0.0, dict.fromkeys(UNITS, 0.0)
    route = [_ll(100.0 * i, 0.0) for i in range(31)]
    for _ in range(draw(st.integers(1, 40))):
        t += draw(st.sampled_from([0.0, 0.5, 1.0, 2.0, 5.0, 40.0, -3.0]))
        unit, what = (
            draw(st.sampled_from(UNITS)),
            draw(st.sampled_from(["fix"] * 6 + ["route", "status", "status"])),
        )
        if what == "route":
            out.append(
                (
                    ROUTES,
                    {
                        "vehicle_id": unit,
                        "incident_id": "F1",
                        "ts": _ts(t),
                        "destination": dict(zip(("lon", "lat"), route[-1], strict=True)),
                        "route": {"type": "LineString", "coordinates": route},
                    },
                )
            )
        elif what == "status":
            lights, incident = (
                draw(st.none() | st.booleans()),
                draw(st.sampled_from([None, "F1", "F2"])),
            )
            out.append(
                (
                    CAD_STATUS,
                    {
                        "vehicle_id": unit,
                        "ts": _ts(t + draw(st.sampled_from([0.0, -2.0, 1.0]))),
                        "status": draw(st.sampled_from(STATUSES)),
                        **({} if lights is None else {"lights_sirens": lights}),
                        **({} if incident is None else {"incident_id": incident}),
                    },
                )
            )
        else:
            east[unit] += draw(st.sampled_from([0.0, 10.0, 20.0, 900.0]))
            body = {
                "vehicle_id": unit,
                "ts": _ts(t),
                "lon": _ll(east[unit], 0.0)[0],
                "lat": LAT0,
                "speed_mps": draw(st.sampled_from([0.0, 15.0])),
                "heading_deg": 90.0,
            }
            if draw(st.booleans()):  # the combined form: the fix says its status itself
                body |= {
                    "status": draw(st.sampled_from(STATUSES[:4])),
                    "lights_sirens": draw(st.booleans()),
                    "incident_id": draw(st.sampled_from(["F1", None])),
                }
            out.append((POSITIONS, body))
    return out


def events_of(
    messages: list[tuple[str, bytes]], roads: RoadNetwork | None, *, many: bool = False
) -> list[AlertEvent]:
    """The driver's alert events for the messages (one by one, or in ``handle_many`` runs),
    then the ticks to 300 s past the last: stale cancels, dead reckoning."""
    driver: Driver[str] = Driver(EngineConfig(), roads=roads, tick_every_s=1.0)
    handled = driver.handle_many(messages) if many else [driver.handle(t, r) for t, r in messages]
    events = [e for h in handled for e in h.events]
    if driver.clock is not None:
        events += driver.tick(driver.clock + timedelta(seconds=300))
    return events


@st.composite
def silences(draw: st.DrawFn) -> list[tuple[str, dict]]:
    """A unit in the split form (its status from CAD) goes quiet, on scene or driving along its
    CAD route (then dead-reckoned), or is routed and never sends a fix (a held dispatch alert);
    CAD changes its status about when its zone moves on, its alert goes stale or expires, or
    its dispatch alert starts; another unit's fixes (not in emergency mode: no alert) move the
    driver's clock on meanwhile, every second or so. In time order."""
    unit, other = "E1", "L3"
    route = [_ll(100.0 * i, 0.0) for i in range(31)]
    out: list[tuple[float, tuple[str, dict]]] = []

    def status(t: float) -> tuple[str, dict]:
        lights, incident = draw(st.none() | st.booleans()), draw(st.sampled_from(["F1", "F2"]))
        return (CAD_STATUS, {
            "vehicle_id": unit, "ts": _ts(t), "status": draw(st.sampled_from(STATUSES)),
            "incident_id": incident, **({} if lights is None else {"lights_sirens": lights}),
        })  # fmt: skip

    first = draw(st.sampled_from(["responding", "on_scene"]))
    out.append((0.0, (CAD_STATUS, {"vehicle_id": unit, "ts": _ts(0.0), "status": first,
                                   "lights_sirens": True, "incident_id": "F1"})))
    if draw(st.booleans()):
        out.append((0.0, (ROUTES, {
            "vehicle_id": unit, "incident_id": "F1", "ts": _ts(0.0),
            "destination": dict(zip(("lon", "lat"), route[-1], strict=True)),
            "route": {"type": "LineString", "coordinates": route},
        })))  # fmt: skip
    speed = draw(st.sampled_from([0.0, 15.0]))
    out.extend((float(k), (POSITIONS, {
        "vehicle_id": unit, "ts": _ts(k), "lon": _ll(speed * k, 0.0)[0], "lat": LAT0,
        "speed_mps": speed, "heading_deg": 90.0,
    })) for k in range(1, draw(st.integers(0, 3)) + 1))  # fmt: skip
    for _ in range(draw(st.integers(1, 3))):
        t = draw(st.floats(0.0, 100.0).map(lambda x: round(x * 4) / 4))
        out.append((t, status(t)))
    t, gap = 0.25, draw(st.sampled_from([0.5, 1.0, 2.0]))
    while t < 130.0:
        out.append((t, (POSITIONS, {
            "vehicle_id": other, "ts": _ts(t), "lon": LON0, "lat": LAT0, "speed_mps": 0.0,
            "heading_deg": 90.0, "status": "available", "lights_sirens": False,
        })))  # fmt: skip
        t += gap
    return [m for _, m in sorted(out, key=lambda m: m[0])]
