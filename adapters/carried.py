"""Which of a view's fields each partner format writes: the audit log's ``fields``.

The audit answers "what did we send to whom". A view lists every field the partner's policy
let through (``AlertView.fields_sent``), but not every format has a place for each: CAP writes
no path, speed or heading, GeoJSON no path, a CIFS item one line (the path, else a warning
segment) and the street. The log named them as sent all the same (a privacy review).
"""

from __future__ import annotations

from adapters.config import Format
from adapters.policy import CORE_FIELDS, AlertView
from adapters.waze_cifs import line_source, street_named

# the optional fields each format writes when the view has them (the alert core always goes,
# in each format's own terms; a CIFS item has no version, and its zone only without a line)
_CAP = frozenset({"agency", "incident_id", "unit_type", "position", "cancel_reason", "street"})
_GEOJSON_DROPS = frozenset({"path"})  # a feature's geometry is the zone; segments: their own
_CIFS_CORE = frozenset(CORE_FIELDS) - {"version", "zone"}


def feed_format(fmt: Format) -> Format:
    """The format a partner's pull feed is written in: a webhook partner's is GeoJSON."""
    return "geojson" if fmt == "webhook" else fmt


def fields_carried(fmt: Format, view: AlertView) -> tuple[str, ...]:
    """The names of ``view.fields_sent`` that a message of format ``fmt`` carries, in order."""
    match fmt:
        case "webhook":
            return view.fields_sent
        case "geojson":
            return tuple(f for f in view.fields_sent if f not in _GEOJSON_DROPS)
        case "cap":
            return tuple(f for f in view.fields_sent if f in CORE_FIELDS or f in _CAP)
        case "waze_cifs":  # one line (the path, else a segment, else the zone's ring)
            line = line_source(view)
            named = street_named(view)  # else its placeholder
            return tuple(f for f in view.fields_sent
                         if f in _CIFS_CORE or f == line or (f == "street" and named))
