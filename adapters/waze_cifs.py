"""Waze CIFS (Closure and Incident Feed Specification) JSON feed, pulled by Waze.

One item per alert, ``id`` stable for the alert's whole life (the partner-facing alert id,
never id+version), ``type`` HAZARD with a configurable subtype (cifsv2.xsd has no
emergency-vehicle subtype), a ``polyline`` of blank-separated ``lat lon`` pairs in travel order
and a ``direction`` (formats.md: with ONE_DIRECTION only traffic moving in polyline order is
affected): the stretch ahead, ONE_DIRECTION; without one (a unit on scene), the alert's longest
warning segment that reaches the unit (no other continues it) when the policy allows segments
(the unit's own road upstream of it, in travel
direction: the traffic that will pass it), ONE_DIRECTION, or BOTH_DIRECTIONS for a segment both
ways must yield on; else the zone's exterior ring, BOTH_DIRECTIONS (a ring has no travel order).
Start/end times as ``yyyy-MM-ddTHH:mm:ss+HH:mm`` in the partner's local time.

A live item's ``endtime`` is the alert expiry plus the partner's ``cifs_end_grace_s`` (600 s by
default): the engine's expiry is about a minute ahead (it is refreshed by every update), while
Waze fetches "every few minutes" and shows what it fetched "several additional minutes" later
(formats.md section 1), so an endtime at the bare expiry had ended before Waze showed the item.
The grace is a fixed offset from the alert's own expiry, never computed from the current time
(formats.md). Only an on-scene item gets it: an approaching item's stretch ahead is behind the
moving unit within a minute, so its ``endtime`` is the alert's expiry (until 2026-12-08 it got
the grace too, and a stale stretch stayed up to 10 minutes); such items belong to push partners
(design.md: "the moving corridor goes out by push"), and ``adapters.partners_file`` warns of a
CIFS feed that takes them. A cancelled item keeps its id and gets ``endtime`` = cancel time,
and the caller (``adapters.feeds``) keeps it for a few poll cycles so Waze sees it end
(formats.md section 1, "Updates and removals").
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

import msgspec

from adapters.payload import Payload
from adapters.policy import AlertView, SegmentView, life_stamp

CONTENT_TYPE = "application/json"
FALLBACK_STREET = "Emergency response area"
DEFAULT_END_GRACE_S = 600.0  # one poll interval ("every few minutes") + the display delay
DESCRIPTIONS = {
    "approaching": "Emergency vehicle approaching",
    "on_scene": "Emergency vehicle on scene",
}
_NOT_ALNUM = re.compile(r"[^A-Za-z0-9]")
_encoder = msgspec.json.Encoder()


def local_time(ts: datetime, tz: ZoneInfo) -> str:
    """``yyyy-MM-ddTHH:mm:ss+HH:mm`` in local time (CIFS wants local time, to the second)."""
    return ts.astimezone(tz).isoformat(timespec="seconds")


def cifs_id(alert_id: str) -> str:
    """An alphanumeric id of at least 3 characters, a pure function of the alert id."""
    cleaned = _NOT_ALNUM.sub("", alert_id)
    return cleaned if len(cleaned) >= 3 else f"ev{cleaned:0>3}"


def polyline_lonlat(view: AlertView) -> list[tuple[float, float]]:
    """The ``[lon, lat]`` points of the item in travel order (see :func:`located`)."""
    return located(view)[0]


def line_source(view: AlertView) -> Literal["path", "segments", "zone"]:
    """Which of the view's fields gives the item its line (see :func:`located`)."""
    if len(set(view.path)) >= 2:
        return "path"
    return "segments" if view.segments else "zone"


def located(view: AlertView) -> tuple[list[tuple[float, float]], str]:
    """The item's points (``[lon, lat]``, travel order) and its CIFS ``direction``.

    The stretch ahead when the view has one with two distinct points (ONE_DIRECTION); else the
    longest warning segment no other continues (:func:`_last_pieces`; ONE_DIRECTION, or
    BOTH_DIRECTIONS for a ``"both"`` segment); else
    the exterior ring of the zone's first (largest in the engine's output) polygon
    (BOTH_DIRECTIONS).
    """
    match line_source(view):
        case "path":
            return list(view.path), "ONE_DIRECTION"
        case "segments":
            seg = max(_last_pieces(view.segments), key=lambda s: _length_deg(s.line))
            return list(seg.line), ("BOTH_DIRECTIONS" if seg.directions == "both"
                                    else "ONE_DIRECTION")
    zone = view.zone
    ring = zone["coordinates"][0][0] if zone["type"] == "MultiPolygon" else zone["coordinates"][0]
    return [(float(p[0]), float(p[1])) for p in ring], "BOTH_DIRECTIONS"


def _last_pieces(segments: Sequence[SegmentView]) -> Sequence[SegmentView]:
    """The segments no other one continues (none starts, with the same directions, where it
    ends): on scene, the pieces that reach the unit. The walk upstream of a scene is cut at
    junctions, so its longest piece may end a junction or more before the unit. All of them
    if every one is continued (a loop)."""
    starts = {(s.line[0], s.directions) for s in segments}
    last = [s for s in segments if (s.line[-1], s.directions) not in starts]
    return last or segments


def street_named(view: AlertView) -> bool:
    """Whether the item's ``street`` is the view's own (else :data:`FALLBACK_STREET`: CIFS
    wants at least two characters)."""
    return view.street is not None and len(view.street) >= 2


def _length_deg(line: Sequence[tuple[float, float]]) -> float:
    """A line's length in degrees, longitude scaled by the latitude's cosine (to compare
    lines of one place, not to measure them)."""
    k = math.cos(math.radians(line[0][1])) if line else 1.0
    return sum(
        math.hypot((b[0] - a[0]) * k, b[1] - a[1]) for a, b in itertools.pairwise(line)
    )


def polyline(points_lonlat: Sequence[tuple[float, float]]) -> str:
    """``"lat lon lat lon ..."``, 6 decimals: the lon/lat pairs are swapped here."""
    return " ".join(f"{lat:.6f} {lon:.6f}" for lon, lat in points_lonlat)


def item(
    view: AlertView, *, subtype: str, tz: ZoneInfo, end_grace_s: float = DEFAULT_END_GRACE_S,
    life_in_id: bool = False,
) -> dict[str, Any]:
    """One CIFS incident for an alert step (the latest step the feed holds for that life).

    ``endtime``: the cancel time of a cancel; else the alert expiry, + ``end_grace_s`` on
    scene (an approaching item's stretch is stale within a minute: never held past expiry).
    ``life_in_id``: the id also carries the life's start, for a partner given the engine's
    alert id (the same for every life: an earlier life's cancelled item and the new life's
    live one would share an id in one feed).
    """
    cancel = view.action == "cancel"
    grace = timedelta(seconds=end_grace_s if view.kind == "on_scene" else 0.0)
    end = view.ts if cancel else view.expires_at + grace
    ident = view.alert_id + (life_stamp(view.started_at) if life_in_id else "")
    out: dict[str, Any] = {
        "id": cifs_id(ident),
        "type": "HAZARD",
    }
    if subtype:
        out["subtype"] = subtype
    points, direction = located(view)
    out.update(
        {
            "polyline": polyline(points),
            "direction": direction,
            "street": view.street if street_named(view) else FALLBACK_STREET,
            "starttime": local_time(view.started_at, tz),
            "endtime": local_time(end, tz),
            "updatetime": local_time(view.ts, tz),
            "description": DESCRIPTIONS[view.kind],
        }
    )
    return out


def render(
    views: Sequence[AlertView], *, subtype: str = "HAZARD_ON_ROAD",
    timezone: str = "America/New_York", wrap_items: bool = False, feed_name: str = "cifs",
    end_grace_s: float = DEFAULT_END_GRACE_S, life_in_id: bool = False,
) -> Payload:
    """The whole feed: ``{"incidents": [...]}`` (flat items, or wrapped with ``wrap_items``)."""
    tz = ZoneInfo(timezone)
    items = [item(v, subtype=subtype, tz=tz, end_grace_s=end_grace_s, life_in_id=life_in_id)
             for v in views]
    body = {"incidents": [{"incident": i} for i in items] if wrap_items else items}
    return Payload(body=_encoder.encode(body), content_type=CONTENT_TYPE, message_id=feed_name)
