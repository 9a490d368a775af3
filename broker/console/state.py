"""The live console's picture of the broker, folded from Kafka records. No I/O, no clock.

:class:`LiveState` takes the records the console reads (``alerts``, ``audit``, ``cad.routes``,
``avl.dlq``) one at a time and answers two questions: what the page should show now
(:meth:`LiveState.snapshot`) and what changed with each record (the *deltas* ``apply_*``
return, which the feed hands to every open page). Everything it holds is bounded:

- alerts: the latest version of each *live* alert (a cancel or the expiry removes it), at most
  ``max_alerts``; a unit's trail is its last ``TRAIL`` alert positions;
- delivery records: per (partner, partner-facing alert id), how many versions were
  delivered, failed or expired and which are being retried (bits over the newest
  ``VERSION_WINDOW`` versions), for at most ``max_delivery_keys`` pairs (pairs of no live
  alert first, then the least recently recorded; an alert's pairs go when it is removed);
- CAD routes: the newest (by ``ts``, as the engine keeps it) per vehicle, at most
  ``max_routes`` and ``max_route_coords`` coordinates in all (routes not shown go first,
  oldest first, then shown ones, with a route-gone delta); shown only for units with a live
  alert of the route's incident (the engine uses no other);
- rejected input: counts by reason; delivery latencies: the last ``LATENCIES`` delivered.

Time: an alert expires when the caller's wall clock (a monotonic one) has run its own lifetime
(``expires_at - ts``) since its record arrived, or when "now" is ``MAX_FUTURE_SKEW`` past its
``expires_at`` plus how far its ``ts`` was behind the newest alert ``ts`` when it arrived;
"now" is the newest alert ``ts`` seen carried on by the wall clock (:meth:`LiveState.expire`
takes both). The first is what expires alerts live: a unit whose clock runs ahead (the codec
takes up to ``MAX_FUTURE_SKEW``) moves "now" ahead and, by the second alone, made every other
unit's alert vanish that much early. The second is what clears the alerts of a recorded
incident, or of the lookback the console reads at start, whose records are followed (all at
once) by those of much later: they expired long before. Its allowance for the lag at arrival
keeps a unit whose clock runs behind (by more than twice ``MAX_FUTURE_SKEW``, its alerts were
removed at the next tick and came back with each update) on the map.
"""

from __future__ import annotations

from collections import Counter, OrderedDict, deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np

from adapters.audit import AuditRecord
from adapters.fanout import PartnerSet
from adapters.policy import public_alert_id
from broker.codec import MAX_FUTURE_SKEW
from broker.console.view import operator_alert, route_fits, unit_of
from broker.model import AlertEvent, Route
from broker.settings import EngineConfig

TRAIL = 12  # alert positions kept per unit for its trail
LATENCIES = 2048  # delivered attempts kept for the p50 / p99
Delta = tuple[str, dict[str, Any]]  # (event name, data) for the page

SETTLED = {"delivered": "delivered", "dead_letter": "failed", "disabled": "failed",
           "expired": "expired"}
RETRYING = frozenset({"failed", "circuit_open"})
# a newer version of the alert took this one's place (never sent, or no more retries): the
# version is out of "pending" but in no column (the newer version's records count instead),
# unless its delivery is still reported (PartnerAlert.replaced)
REPLACED = frozenset({"superseded"})
VERSION_WINDOW = 4096  # versions of one alert tracked per partner (older records are ignored)


@dataclass(slots=True)
class PartnerAlert:
    """What the delivery records say about one alert at one partner: counts of versions by
    outcome, and which versions are settled or being retried, as bits (bit ``v - base`` for
    version ``v``) over the newest ``VERSION_WINDOW`` versions. Sets of version numbers were
    ~5.5 kB a pair after 70 versions (50,000 pairs: 276 MB); the counts and bits are a few
    dozen bytes, a pair in all (this object, its key's strings, the dict entries) ~500 bytes,
    ~600 for a pair of no live alert (also in ``LiveState._orphans``), measured with
    tracemalloc after 70 versions."""

    delivered: int = 0
    failed: int = 0
    expired: int = 0
    base: int = -1  # the version of bit 0 (-1: no record yet)
    settled: int = 0  # versions with an outcome
    retrying: int = 0  # versions an attempt failed for and a retry is under way
    # versions a newer one replaced (``superseded``) and no outcome yet: out of "pending", but
    # a worker whose lease lapsed may still report the attempt it made (its answer after the
    # new worker's ``superseded``): a ``delivered`` counts, any other outcome does not
    replaced: int = 0
    # the alert's life (``AlertEvent.started_at``) these records are of; None: only schema-1
    # records (no life) yet. A partner given the engine's id as it is keys every life of a
    # re-created alert the same: a record of a newer life starts the counts afresh
    started_at: datetime | None = None

    def record(self, rec: AuditRecord) -> None:
        """Take one audit record (a redelivered record changes nothing, nor does one of an
        earlier life than the records taken)."""
        outcome = SETTLED.get(rec.status)
        if outcome is None and rec.status not in REPLACED and rec.status not in RETRYING:
            return
        if rec.started_at is not None and rec.started_at != self.started_at:
            if self.started_at is not None and rec.started_at < self.started_at:
                return  # a late record of an earlier life
            if self.started_at is not None:
                self._reset()
            self.started_at = rec.started_at
        bit = self._bit(rec.version)
        if bit is None or self.settled & bit:
            return  # too old to track, or settled already
        if self.replaced & bit and rec.status != "delivered":
            # a replaced version counts only if the partner got it: a late failure, dead
            # letter or expiry of it is not one (the partner got the newer version), and it
            # counted under failed/expired (until 2026-12-08)
            return
        if rec.status in REPLACED:
            self.replaced |= bit
            self.retrying &= ~bit
            return
        if rec.status in RETRYING:
            if not self.replaced & bit:  # a late retry record of a replaced version: no
                self.retrying |= bit
            return
        assert outcome is not None
        self.settled |= bit
        self.retrying &= ~bit
        self.replaced &= ~bit
        setattr(self, outcome, getattr(self, outcome) + 1)

    def counts(self) -> dict[str, int]:
        """delivered / pending / failed / expired, counted in alert versions."""
        return {"delivered": self.delivered, "pending": self.retrying.bit_count(),
                "failed": self.failed, "expired": self.expired}

    def _reset(self) -> None:
        self.delivered = self.failed = self.expired = 0
        self.base = -1
        self.settled = self.retrying = self.replaced = 0

    def _bit(self, version: int) -> int | None:
        """The bit of ``version``, the window moved to hold it; None if it is older than the
        window (a version ``VERSION_WINDOW`` behind the newest is long superseded)."""
        if self.base < 0:
            self.base = version
        elif version < self.base:
            shift = self.base - version
            if shift + (self.settled | self.retrying | self.replaced).bit_length() \
                    > VERSION_WINDOW:
                return None
            self.settled <<= shift
            self.retrying <<= shift
            self.replaced <<= shift
            self.base = version
        elif version - self.base >= VERSION_WINDOW:
            shift = version - self.base - VERSION_WINDOW + 1
            self.settled >>= shift
            self.retrying >>= shift
            self.replaced >>= shift
            self.base += shift
        return 1 << (version - self.base)


@dataclass
class LiveState:
    """Live alerts, units, routes, delivery states and input rejections (see module doc)."""

    partners: PartnerSet | None = None
    cfg: EngineConfig = field(default_factory=EngineConfig)
    max_alerts: int = 10_000
    max_delivery_keys: int = 50_000
    max_routes: int = 10_000
    # a route has up to 20,000 coordinates (~2 MB decoded): 10,000 of them were ~11 GB
    max_route_coords: int = 1_000_000
    alerts: OrderedDict[str, dict[str, Any]] = field(default_factory=OrderedDict)
    events: dict[str, AlertEvent] = field(default_factory=dict)
    arrived: dict[str, float] = field(default_factory=dict)  # wall clock when its record came
    # how far its ts was behind the newest alert ts when its record came (a unit's clock
    # running behind, or a record read late): the event-time expiry rule allows for it
    behind: dict[str, timedelta] = field(default_factory=dict)
    trails: dict[str, deque[tuple[float, float]]] = field(default_factory=dict)
    # vehicle -> its live alerts (the keys of ``events`` of that unit), kept with ``events``:
    # whether a route is shown asks only its unit's alerts (``_shown``); scanning every alert
    # made a mass expiry O(alerts^2) on the event loop (10,000 alerts with routes: 3.0 s) and
    # each alert past ``max_alerts`` pay O(alerts) for the one it evicts
    by_vehicle: dict[str, dict[str, None]] = field(default_factory=dict)
    routes: OrderedDict[str, Route] = field(default_factory=OrderedDict)
    route_coords: int = 0  # coordinates of the routes kept
    deliveries: OrderedDict[tuple[str, str], PartnerAlert] = field(default_factory=OrderedDict)
    rejected: Counter[str] = field(default_factory=Counter)
    latencies_ms: deque[float] = field(default_factory=lambda: deque(maxlen=LATENCIES))
    newest_ts: datetime | None = None
    # newest (start, version) seen per alert, also after its cancel, so a late redelivery is
    # ignored; the start first: an id the engine forgot (hours idle) starts again at version 1
    versions: OrderedDict[str, tuple[datetime, int]] = field(default_factory=OrderedDict)
    # alert -> (its start, partner -> id): a partner's id of an alert is per life (its start)
    _public: dict[str, tuple[datetime, dict[str, str]]] = field(default_factory=dict)
    _by_public: dict[tuple[str, str], str] = field(default_factory=dict)  # (partner, id) -> alert
    # the delivery pairs of no live alert (its cancel's records after it went, records of an
    # alert not yet seen), least recently recorded first: evicted before any live alert's
    _orphans: OrderedDict[tuple[str, str], None] = field(default_factory=OrderedDict)

    # ---- records in ---------------------------------------------------------------------

    def apply_alert(self, event: AlertEvent, wall: float = 0.0) -> list[Delta]:
        """One ``alerts`` record, arrived at ``wall`` (the caller's monotonic clock, seconds).
        Older or repeated versions of an alert change nothing."""
        if self.newest_ts is None or event.ts > self.newest_ts:
            self.newest_ts = event.ts
        aid = event.alert_id
        step = (event.started_at, event.version)
        seen = self.versions.get(aid)
        if seen is not None and step <= seen:
            return []
        self._seen(aid, step)
        if event.action == "cancel":
            return self._remove(aid, reason=event.cancel_reason or "cancelled")
        view = operator_alert(event, self.cfg)
        self.alerts[aid] = view
        self.alerts.move_to_end(aid)
        before = self.events.get(aid)
        if before is not None and before.vehicle_id != event.vehicle_id:
            self._unindex(aid, before.vehicle_id)
        self.events[aid] = event
        self.by_vehicle.setdefault(event.vehicle_id, {})[aid] = None
        self.arrived[aid] = wall
        assert self.newest_ts is not None
        self.behind[aid] = max(self.newest_ts - event.ts, timedelta(0))
        trail = self.trails.setdefault(aid, deque(maxlen=TRAIL))
        trail.append((event.lon, event.lat))
        self._public_ids(aid)  # so the delivery records of this alert find it
        # with its deliveries: the page fills them from the snapshot and `delivery` deltas only,
        # so an open page said "No deliveries" for a new alert whose deliveries were pending
        deltas: list[Delta] = [("alert", {**self._alert_out(aid),
                                          "deliveries": self.deliveries_of(aid)})]
        route = self.routes.get(event.vehicle_id)
        if route is not None:
            shown = before is not None and route_fits(before, route)
            if route_fits(event, route) and (event.action == "create" or not shown):
                deltas.append(("route", _route_out(route)))
            elif shown and not route_fits(event, route):  # the alert's incident changed
                deltas.append(("route", _route_gone(route)))
        while len(self.alerts) > self.max_alerts:
            oldest = next(iter(self.alerts))
            deltas += self._remove(oldest, reason="dropped")
        return deltas

    def apply_route(self, route: Route) -> list[Delta]:
        """One ``cad.routes`` record: kept unless older than the one kept (the engine keeps
        the newer: ``broker.engine``); shown if the unit has a live alert of its incident."""
        vid = route.vehicle_id
        kept = self.routes.get(vid)
        if kept is not None and route.ts < kept.ts:
            return []
        was_shown = kept is not None and self._shown(kept)
        if kept is not None:
            self.route_coords -= len(kept.route.coordinates)
        self.routes[vid] = route
        self.routes.move_to_end(vid)
        self.route_coords += len(route.route.coordinates)
        deltas = self._evict_routes(keep=vid)
        if self._shown(route):
            return [*deltas, ("route", _route_out(route))]
        if was_shown:  # the page drops the route it showed (another incident's came)
            return [*deltas, ("route", _route_gone(route))]
        return deltas

    def _evict_routes(self, keep: str) -> list[Delta]:
        """Routes out, oldest first, until within bounds (``keep``'s, the one just come,
        stays): first those the page does not show (units with no live alert of their
        incident, which nothing else removes), then shown ones, each with its route-gone
        delta so the page drops what a reload would not show."""
        if len(self.routes) <= self.max_routes and self.route_coords <= self.max_route_coords:
            return []
        shown = {vid for vid, r in self.routes.items() if self._shown(r)}
        deltas: list[Delta] = []
        for drawn in (False, True):
            for vid in [v for v in self.routes if v != keep and (v in shown) == drawn]:
                if (len(self.routes) <= self.max_routes
                        and self.route_coords <= self.max_route_coords):
                    return deltas
                gone = self.routes.pop(vid)
                self.route_coords -= len(gone.route.coordinates)
                if drawn:
                    deltas.append(("route", _route_gone(gone)))
        return deltas

    def apply_audit(self, rec: AuditRecord) -> list[Delta]:
        """One ``audit`` record (feed responses are not deliveries and are skipped)."""
        if rec.action == "feed":
            return []
        key = (rec.partner, rec.alert_id)
        pa = self.deliveries.get(key)
        if pa is None:
            pa = self.deliveries[key] = PartnerAlert()
            if self._internal_id(*key) is None:
                self._orphans[key] = None
            while len(self.deliveries) > self.max_delivery_keys:
                if self._orphans:  # a pair of no live alert first (no page shows it)
                    self.deliveries.pop(self._orphans.popitem(last=False)[0], None)
                else:
                    self.deliveries.popitem(last=False)
        else:  # least recently recorded first out
            self.deliveries.move_to_end(key)
            if key in self._orphans:
                self._orphans.move_to_end(key)
        pa.record(rec)
        if rec.status == "delivered" and rec.latency_ms is not None:
            self.latencies_ms.append(rec.latency_ms)
        aid = self._internal_id(rec.partner, rec.alert_id)
        if aid is None:
            return []
        return [("delivery", {"alert_id": aid, "deliveries": self.deliveries_of(aid)})]

    def apply_rejection(self, reason: str) -> None:
        """One ``avl.dlq`` record, by its ``reason`` header."""
        self.rejected[reason] += 1

    # ---- time -----------------------------------------------------------------------------

    def now(self, wall_since_newest_s: float) -> datetime | None:
        """Event time carried on by the wall clock since the newest alert arrived."""
        if self.newest_ts is None:
            return None
        return self.newest_ts + timedelta(seconds=max(0.0, wall_since_newest_s))

    def expire(self, now: datetime | None, wall: float | None = None) -> list[Delta]:
        """Drop alerts past their expiry (the worker stopped updating them): those whose own
        lifetime has run on the wall clock since their record arrived, and those ``now`` is
        ``MAX_FUTURE_SKEW`` past (see the module doc)."""
        gone = [
            aid for aid, ev in self.events.items()
            if (wall is not None
                and wall - self.arrived.get(aid, wall) >= (ev.expires_at - ev.ts).total_seconds())
            or (now is not None
                and ev.expires_at + self.behind.get(aid, timedelta(0)) + MAX_FUTURE_SKEW <= now)
        ]
        deltas: list[Delta] = []
        for aid in gone:
            deltas += self._remove(aid, reason="expired")
        return deltas

    # ---- what the page shows ----------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """Everything the page needs to draw from scratch."""
        return {
            "at": self.newest_ts.isoformat() if self.newest_ts else None,
            "alerts": [self._alert_out(aid) for aid in self.alerts],
            "routes": [_route_out(r) for r in self.routes.values() if self._shown(r)],
            "deliveries": {aid: self.deliveries_of(aid) for aid in self.alerts},
            "rejected": dict(self.rejected),
        }

    def delivery_figures(self) -> dict[str, float | None]:
        """p50 / p99 of the delivered attempts' round trips (milliseconds)."""
        if not self.latencies_ms:
            return {"delivery_p50_ms": None, "delivery_p99_ms": None}
        arr = np.fromiter(self.latencies_ms, dtype=float)
        return {"delivery_p50_ms": round(float(np.percentile(arr, 50)), 1),
                "delivery_p99_ms": round(float(np.percentile(arr, 99)), 1)}

    def deliveries_of(self, aid: str) -> dict[str, dict[str, int]]:
        """Per partner: delivered / pending / failed / expired versions of one alert."""
        out: dict[str, dict[str, int]] = {}
        event = self.events.get(aid)
        for pid, public in self._public_ids(aid).items():
            pa = self.deliveries.get((pid, public))
            if pa is not None and event is not None and pa.started_at not in (
                    None, event.started_at):
                pa = None  # an earlier life's records (same id at a raw-id partner)
            if pa is not None:
                out[pid] = pa.counts()
            elif event is not None and self._expects(pid, event):
                out[pid] = {"delivered": 0, "pending": 1, "failed": 0, "expired": 0}
        return out

    # ---- inside ---------------------------------------------------------------------------

    def _alert_out(self, aid: str) -> dict[str, Any]:
        view = self.alerts[aid]
        unit = unit_of(view)
        if unit is not None:
            unit["trail"] = [list(p) for p in self.trails.get(aid, ())]
        return {"alert": view, "unit": unit}

    def _remove(self, aid: str, *, reason: str) -> list[Delta]:
        # its delivery records go with it (no page shows them any more); records that come
        # after (its cancel's) make new pairs, which age out among the max_delivery_keys
        for key in self._public.get(aid, (None, {}))[1].items():
            self.deliveries.pop(key, None)
            self._orphans.pop(key, None)
        event = self.events.pop(aid, None)
        if event is not None:
            self._unindex(aid, event.vehicle_id)
        self.arrived.pop(aid, None)
        self.behind.pop(aid, None)
        self.trails.pop(aid, None)
        self._drop_public_ids(aid)
        if self.alerts.pop(aid, None) is None:
            return []
        vehicle = event.vehicle_id if event is not None else None
        deltas: list[Delta] = [("remove", {"alert_id": aid, "vehicle_id": vehicle,
                                           "reason": reason})]
        route = self.routes.get(vehicle) if vehicle is not None else None
        if event is not None and route is not None and route_fits(event, route) \
                and not self._shown(route):
            # the page showed it for this alert and no other live alert of the unit fits it
            # (the page, seeing the unit's other alert of another incident, kept drawing it)
            deltas.append(("route", _route_gone(route)))
        return deltas

    def _public_ids(self, aid: str) -> dict[str, str]:
        """The partner-facing ids of an alert (what the audit records name), per partner."""
        if self.partners is None:
            return {}
        event = self.events.get(aid)
        if event is None:
            return {}
        known = self._public.get(aid)
        if known is not None and known[0] == event.started_at:
            return known[1]
        self._drop_public_ids(aid)  # an earlier life's, whose cancel was not seen
        config = self.partners.config
        ids = {
            p.id: aid if "alert_id" in p.policy.fields
            else public_alert_id(aid, config.key_for(p.id), event.started_at)
            for p in config.partners
        }
        self._public[aid] = (event.started_at, ids)
        self._by_public.update({key: aid for key in ids.items()})
        for key in ids.items():  # records that came before the alert
            self._orphans.pop(key, None)
        return ids

    def _drop_public_ids(self, aid: str) -> None:
        _, ids = self._public.pop(aid, (None, {}))
        for key in ids.items():
            self._by_public.pop(key, None)
            if key in self.deliveries:  # an earlier life's pairs: no live alert's now
                self._orphans[key] = None

    def _internal_id(self, partner: str, public: str) -> str | None:
        return self._by_public.get((partner, public))

    def _seen(self, aid: str, step: tuple[datetime, int]) -> None:
        self.versions[aid] = step
        self.versions.move_to_end(aid)
        while len(self.versions) > self.max_delivery_keys:
            self.versions.popitem(last=False)

    def _shown(self, route: Route) -> bool:
        """Whether the page shows this route: its unit has a live alert of its incident
        (only the unit's own alerts are looked at: ``by_vehicle``)."""
        return any(route_fits(self.events[aid], route)
                   for aid in self.by_vehicle.get(route.vehicle_id, ()))

    def _unindex(self, aid: str, vehicle_id: str) -> None:
        """``aid`` is no longer a live alert of ``vehicle_id`` (``by_vehicle``)."""
        unit = self.by_vehicle.get(vehicle_id)
        if unit is not None:
            unit.pop(aid, None)
            if not unit:
                del self.by_vehicle[vehicle_id]

    def _expects(self, pid: str, event: AlertEvent) -> bool:
        """Whether fan-out sends this alert to a push partner (coverage and kind)."""
        assert self.partners is not None
        partner = self.partners.partners[pid]
        return (partner.pushes and event.kind in partner.kinds
                and pid in self.partners.index.partners_touching(event.zone))


def _route_gone(route: Route) -> dict[str, Any]:
    """The delta that has the page drop the route it shows for this unit."""
    return {"vehicle_id": route.vehicle_id, "incident_id": route.incident_id,
            "coordinates": None}


def _route_out(route: Route) -> dict[str, Any]:
    return {"vehicle_id": route.vehicle_id, "incident_id": route.incident_id,
            "coordinates": [list(c) for c in route.route.coordinates]}

