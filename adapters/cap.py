"""OASIS CAP 1.2 XML: one ``<alert>`` per alert step; an Atom feed of them for pull partners.

``identifier`` = partner-facing alert id + ``-`` + the life's start (UTC, to the microsecond)
+ ``-v`` + version as the partner sees it (``AlertView.partner_version``: from 1 in each life
under a pseudonym), + ``-feed`` in a pull feed's copies (whose ``references`` name feed copies
too: a pushed message and the feed's under one identifier could differ), a new one for every
message: unique for the sender (CAP 1.2) also for a partner given the engine's alert id, which
is the same for every life of a unit's alert (a life the engine started again at version 1
repeated the previous life's identifiers).
``msgType`` is Alert for the first message (whatever its version: a push partner whose
first message of an alert is v3 gets an Alert, not an Update that references nothing), Update
for later ones and Cancel at the end; Update and Cancel list the message they supersede in
``references`` (``sender,identifier,sent``).
Elements are written in the order the XSD's ``xs:sequence`` demands (formats.md section 2).

Dates are ``YYYY-MM-DDThh:mm:ss-00:00`` (UTC, no ``Z``, no fractions: the XSD pattern
rejects both). Polygons are ``lat,lon`` pairs, swapped from GeoJSON's ``[lon, lat]``, closed,
at least 4 pairs; the XSD cannot check that, so ``polygon_text`` does. A MultiPolygon zone
gives one ``<polygon>`` per part; holes are dropped (CAP polygons have none: the area only
grows, never hides a hazard).
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from adapters.payload import Payload
from adapters.policy import CANCEL_TTL, AlertView, life_stamp

CAP_NS = "urn:oasis:names:tc:emergency:cap:1.2"
ATOM_NS = "http://www.w3.org/2005/Atom"
CONTENT_TYPE = "application/cap+xml"
FEED_CONTENT_TYPE = "application/atom+xml"
EVENTS = {"approaching": "Emergency vehicle approaching", "on_scene": "Emergency vehicle on scene"}
HEADLINES = {
    "approaching": "Emergency vehicle approaching: move over and let it pass",
    "on_scene": "Emergency vehicle stopped on the road: slow down and pass with care",
}
MSG_TYPES = {"create": "Alert", "update": "Update", "cancel": "Cancel"}
# ends the identifier of a pull feed's copy of a message (``identifier``): never the pushed one's
FEED_SUFFIX = "-feed"
# a pull feed's live copies expire this long after the alert (``render_feed``): a poll interval
# of a few minutes; pushed messages keep the alert's own expiry
DEFAULT_FEED_EXPIRES_GRACE_S = 300.0


@dataclass(frozen=True, slots=True)
class Reference:
    """An earlier CAP message this one supersedes."""

    identifier: str
    sent: datetime


def cap_time(ts: datetime) -> str:
    """CAP date-time: UTC written as ``-00:00``, to the second."""
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S-00:00")


def identifier(alert_id: str, started_at: datetime, version: int, *, feed: bool = False) -> str:
    """The CAP identifier of one step of the alert life that began at ``started_at`` (no
    spaces, commas, ``<`` or ``&``); ``version`` as the partner sees it
    (``AlertView.partner_version_of``), never the engine's for a pseudonymous partner.

    ``feed``: the pull feed's copy, which ends in :data:`FEED_SUFFIX`. A partner that gets CAP
    by push and by feed (the county) got two messages under one identifier: the pushed one
    references the last message it received, the feed's the life's create, and their
    ``msgType`` may differ too (CAP 1.2: an identifier is unique for its sender).
    """
    ident = f"{alert_id}-{life_stamp(started_at)}-v{version}{FEED_SUFFIX if feed else ''}"
    if any(c in ident for c in " ,<&"):
        raise ValueError(f"CAP identifier may not contain spaces, commas, '<' or '&': {ident!r}")
    return ident


def polygon_text(ring_lonlat: Sequence[Sequence[float]]) -> str:
    """A GeoJSON ring (``[lon, lat]``) as CAP ``"lat,lon lat,lon ..."``, closed, >= 4 pairs."""
    pairs = [(float(p[1]), float(p[0])) for p in ring_lonlat]  # swap to lat, lon
    if pairs and pairs[0] != pairs[-1]:
        pairs.append(pairs[0])
    if len(pairs) < 4:
        raise ValueError(f"a CAP polygon needs at least 4 pairs, got {len(pairs)}")
    return " ".join(f"{lat:.6f},{lon:.6f}" for lat, lon in pairs)


def zone_polygons(zone: dict[str, Any]) -> list[str]:
    """One CAP polygon per part of a Polygon/MultiPolygon zone (exterior rings only)."""
    if zone["type"] == "Polygon":
        return [polygon_text(zone["coordinates"][0])]
    if zone["type"] == "MultiPolygon":
        return [polygon_text(poly[0]) for poly in zone["coordinates"]]
    raise ValueError(f"zone must be a Polygon or MultiPolygon, not {zone['type']!r}")


# Characters XML 1.0 cannot carry at all (ElementTree escapes <, & and quotes, but writes these
# raw, and one of them makes the whole document unparseable: a county's entire feed). The codec
# refuses control characters in input; this keeps a renderer safe on its own.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def xml_text(text: str) -> str:
    """``text`` without the characters XML 1.0 cannot carry.

    Examples
    --------
    >>> xml_text("Engine" + chr(7) + " 7 <E7>")
    'Engine 7 <E7>'
    """
    return _NOT_XML.sub("", text)


def _sub(parent: ET.Element, tag: str, text: str | None = None) -> ET.Element:
    el = ET.SubElement(parent, f"{{{CAP_NS}}}{tag}")
    if text is not None:
        el.text = xml_text(text)
    return el


def alert_element(
    view: AlertView, *, sender: str, references: Sequence[Reference] = (),
    expires_grace_s: float = 0.0, feed: bool = False, cancel_expires_at: datetime | None = None,
) -> ET.Element:
    """The ``<alert>`` element of one alert step (element order as in the CAP 1.2 XSD).

    ``expires_grace_s``: added to a live step's ``expires`` (a pull feed's copies:
    ``render_feed``); a pushed message keeps the alert's own expiry, and a cancel its own.
    ``feed``: the feed's copy, with its own identifier (``identifier``).
    ``cancel_expires_at``: a cancel's ``expires`` no earlier than this (a pull feed's cancel
    stays in force as long as the copies it cancels: ``render_feed``).

    A create is an ``Alert``; one with version > 1 is an ``Update`` only when the caller gives
    it an earlier message to reference: with none, it is the recipient's first message (the
    first of a re-created alert's new life too: ``fanout.received_in_life``).
    """
    cancel = view.action == "cancel"
    msg_type = MSG_TYPES[view.action]
    if msg_type == "Alert" and view.partner_version > 1 and references:
        msg_type = "Update"  # the recipient has an earlier message of this alert
    alert = ET.Element(f"{{{CAP_NS}}}alert")
    _sub(alert, "identifier",
         identifier(view.alert_id, view.started_at, view.partner_version, feed=feed))
    _sub(alert, "sender", sender)
    _sub(alert, "sent", cap_time(view.ts))
    _sub(alert, "status", "Actual")
    _sub(alert, "msgType", msg_type)
    _sub(alert, "scope", "Public")
    if msg_type != "Alert" and references:
        refs = " ".join(f"{sender},{r.identifier},{cap_time(r.sent)}" for r in references)
        _sub(alert, "references", refs)
    if view.incident_id:
        _sub(alert, "incidents", view.incident_id.replace(" ", "_").replace(",", "_"))
    info = _sub(alert, "info")
    _sub(info, "language", "en-US")
    _sub(info, "category", "Fire")
    _sub(info, "category", "Transport")
    _sub(info, "event", EVENTS[view.kind])
    _sub(info, "responseType", "AllClear" if cancel else "Avoid")
    _sub(info, "urgency", "Past" if cancel else "Immediate")
    _sub(info, "severity", "Moderate")
    _sub(info, "certainty", "Observed")
    _sub(info, "effective", cap_time(view.ts))
    _sub(info, "onset", cap_time(view.started_at))
    # a cancel's AllClear stays in force as long as it is delivered: expiring at its own
    # ``sent``, it had expired on arrival, and a consumer that drops expired messages kept
    # the alert it cancels until that alert's own expiry
    if cancel:
        expires = view.ts + CANCEL_TTL
        if cancel_expires_at is not None:
            expires = max(expires, cancel_expires_at)
    else:
        expires = view.expires_at + timedelta(seconds=expires_grace_s)
    _sub(info, "expires", cap_time(expires))
    if view.agency:
        _sub(info, "senderName", view.agency)
    headline = "All clear: emergency vehicle warning ended" if cancel else HEADLINES[view.kind]
    _sub(info, "headline", headline)
    params = {
        "unitType": view.unit_type,
        "unitPosition": None if view.lat is None else f"{view.lat:.6f},{view.lon:.6f}",
        "cancelReason": view.cancel_reason,
    }
    for name, value in params.items():
        if value is not None:
            p = _sub(info, "parameter")
            _sub(p, "valueName", name)
            _sub(p, "value", value)
    area = _sub(info, "area")
    _sub(area, "areaDesc", view.street or "Emergency vehicle warning zone")
    for poly in zone_polygons(view.zone):
        _sub(area, "polygon", poly)
    return alert


def render(view: AlertView, *, sender: str, references: Sequence[Reference] = ()) -> Payload:
    """One CAP 1.2 message as UTF-8 bytes with an XML declaration."""
    body = ET.tostring(
        alert_element(view, sender=sender, references=references),
        encoding="utf-8", xml_declaration=True, default_namespace=CAP_NS,
    )
    return Payload(body=body, content_type=CONTENT_TYPE, message_id=view.message_id)


def feed_references(view: AlertView, last_live: AlertView | None = None) -> list[Reference]:
    """For a pull feed: an Update or Cancel references the Alert that began this life of the
    alert (its create: version ``first_version``, sent at ``started_at``); a cancel also the
    feed's copy of the life's last live step when it is known (``last_live``, a step of the same
    life, kept beside the cancel in the feeds' table) and is not that create: a strict
    consumer holds each copy it got until that copy's ``expires``, and a Cancel that named only
    the create left it the last live copy (until 2026-12-08).

    The feed does not know which intermediate versions a poller saw, but every life begins with
    a create, stamped at ``started_at``. A re-created alert continues its id's version count
    (engine), so for a partner given the engine's id that create need not be version 1 (under
    a pseudonym it is: versions count per life, ``AlertView.partner_version``); and the
    partner-facing id is per life (``policy.public_alert_id``), so the earlier life's messages
    carry another identifier. The create itself references nothing: it is an ``Alert``. The
    reference names the feed's copy of the create (``identifier(..., feed=True)``), never the
    pushed one, which may be another message.
    """
    if view.version <= view.first_version:
        return []
    first = view.partner_version_of(view.first_version)
    refs = [Reference(identifier=identifier(view.alert_id, view.started_at, first, feed=True),
                      sent=view.started_at)]
    if last_live is not None and view.first_version < last_live.version < view.version:
        live = view.partner_version_of(last_live.version)
        refs.append(Reference(identifier=identifier(view.alert_id, view.started_at, live,
                                                    feed=True),
                              sent=last_live.ts))  # that copy's ``sent``
    return refs


def render_feed(
    views: Sequence[AlertView], *, sender: str, feed_id: str, now: datetime,
    expires_grace_s: float = DEFAULT_FEED_EXPIRES_GRACE_S,
    last_live: Sequence[AlertView | None] = (), keep_cancelled_s: float = 0.0,
) -> Payload:
    """An Atom (RFC 4287) feed whose entries each carry one CAP ``<alert>`` as their content.

    A live entry's ``expires`` is the alert's expiry plus ``expires_grace_s`` (the partner's
    ``cap_feed_expires_grace_s``): the engine's expiry is about a minute ahead, so a poller
    fetching every two minutes held only expired copies of a live alert about half the time
    (until 2026-12-08). A fixed offset from the alert's own expiry, as CIFS's ``endtime``.

    ``last_live``: empty, or one per view, for a cancel the life's last live step (None when
    unknown; ignored for a live step). A cancel's ``expires`` is no earlier than that step's
    copy's (its expiry plus ``expires_grace_s``) nor than ``keep_cancelled_s`` (the partner's
    ``feed_keep_cancelled_s``, as long as the feed shows it) after its own ``sent``, nor than
    ``CANCEL_TTL`` after it: expiring before the copies it cancels (at ``sent`` + 5 min, when
    they had the grace; until 2026-12-08), a consumer that drops expired messages kept the
    live copy up to 55 minutes after the cancel (a 3600 s grace). It references that copy
    too (``feed_references``).

    The feed has the ``id``, ``title``, ``updated`` and ``author`` that RFC 4287 section 4.1.1
    requires of it (an Atom feed without an author is invalid, and CAP aggregators validate
    the feed before they read its entries); the author is the CAP sender.
    """
    feed = ET.Element(f"{{{ATOM_NS}}}feed")
    ET.SubElement(feed, f"{{{ATOM_NS}}}id").text = f"urn:ev-alert-broker:feed:{feed_id}"
    ET.SubElement(feed, f"{{{ATOM_NS}}}title").text = "Emergency vehicle alerts (CAP 1.2)"
    ET.SubElement(feed, f"{{{ATOM_NS}}}updated").text = cap_time(now)
    author = ET.SubElement(feed, f"{{{ATOM_NS}}}author")
    ET.SubElement(author, f"{{{ATOM_NS}}}name").text = xml_text(sender)
    if last_live and len(last_live) != len(views):
        raise ValueError(f"last_live has {len(last_live)} items for {len(views)} views")
    lives = last_live or [None] * len(views)
    grace = timedelta(seconds=expires_grace_s)
    for view, live in zip(views, lives, strict=True):
        if view.action != "cancel":
            live = None
        until = view.ts + timedelta(seconds=keep_cancelled_s)
        if live is not None:
            until = max(until, live.expires_at + grace)
        entry = ET.SubElement(feed, f"{{{ATOM_NS}}}entry")
        ident = identifier(view.alert_id, view.started_at, view.partner_version, feed=True)
        ET.SubElement(entry, f"{{{ATOM_NS}}}id").text = f"urn:cap:{sender}:{ident}"
        ET.SubElement(entry, f"{{{ATOM_NS}}}title").text = EVENTS[view.kind]
        ET.SubElement(entry, f"{{{ATOM_NS}}}updated").text = cap_time(view.ts)
        content = ET.SubElement(entry, f"{{{ATOM_NS}}}content", {"type": CONTENT_TYPE})
        content.append(alert_element(view, sender=sender,
                                     references=feed_references(view, live),
                                     expires_grace_s=expires_grace_s, feed=True,
                                     cancel_expires_at=until))
    ET.register_namespace("atom", ATOM_NS)  # prefixes (idempotent): the content element has
    ET.register_namespace("cap", CAP_NS)  # an unqualified attribute, so no default namespace
    body = ET.tostring(feed, encoding="utf-8", xml_declaration=True)
    return Payload(body=body, content_type=FEED_CONTENT_TYPE, message_id=feed_id)
