"""Data minimisation: what a partner's view holds, and what it never holds."""

from __future__ import annotations

import msgspec
import pytest

from adapters.policy import NotAnEmergencyAlert, Policy, public_alert_id, view_as_dict, view_for
from tests.unit.adapters.factory import KEY, alert


def test_a_view_without_identifying_fields_has_no_vehicle_incident_or_raw_alert_id() -> None:
    ev = alert("update", 2)
    view = view_for(ev, Policy(fields=frozenset({"position", "path"})), key=KEY)
    text = msgspec.json.encode(view_as_dict(view)).decode()
    for secret in (ev.vehicle_id, ev.incident_id, ev.alert_id, "CFD", "F261125"):
        assert secret not in text
    assert view.alert_id == public_alert_id(ev.alert_id, KEY)


def test_public_alert_id_is_stable_per_alert_and_depends_on_the_key() -> None:
    a = public_alert_id("CFD-E7:F1:approaching", KEY)
    assert a == public_alert_id("CFD-E7:F1:approaching", KEY)
    assert a != public_alert_id("CFD-E7:F1:on_scene", KEY)
    assert a != public_alert_id("CFD-E7:F1:approaching", b"another key")
    assert a.isalnum()


def test_a_cancel_never_carries_the_units_position_or_movement() -> None:
    everything = Policy(fields=frozenset({"position", "speed", "heading", "path", "vehicle_id"}))
    view = view_for(alert("cancel", 4), everything, key=KEY)
    assert view.lat is None and view.lon is None and view.speed_mps is None
    assert view.heading_deg is None and view.path == ()
    assert view.vehicle_id == "CFD-E7"  # allowed for this (agency) policy
    assert "position" not in view.fields_sent


def test_coordinates_are_rounded_to_the_policy_precision() -> None:
    view = view_for(alert(), Policy(frozenset({"position"}), coordinate_decimals=3), key=KEY)
    assert view.lat == round(view.lat, 3)
    for lon, lat in view.zone["coordinates"][0]:
        assert (lon, lat) == (round(lon, 3), round(lat, 3))
    assert view.zone["coordinates"][0][0] == view.zone["coordinates"][0][-1]


def test_anything_but_an_emergency_alert_is_refused() -> None:
    from broker.model import Position
    from tests.unit.adapters.factory import T0

    pos = Position(vehicle_id="CFD-E7", ts=T0, lat=35.2, lon=-80.8, status="available")
    with pytest.raises(NotAnEmergencyAlert):
        view_for(pos, Policy(), key=KEY)  # type: ignore[arg-type]


def test_unknown_policy_fields_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown policy fields"):
        Policy(fields=frozenset({"driver_name"}))
