"""The join of AVL fixes and CAD status (broker.join): rules, and status changes that act alone."""

from __future__ import annotations

from datetime import timedelta

from hypothesis import given
from hypothesis import strategies as st
from msgspec.structs import replace

from broker import join
from broker.agencies import LightbarRule, Unit
from broker.model import Fix, UnitStatus, VehicleState
from broker.settings import EngineConfig
from tests.conftest import at, fix

CFG = EngineConfig()
UNIT = Unit("CFD-E7", "charlotte-fd", "engine", LightbarRule(attribute="in2", equals=True))


def avl(t: float = 0.0, *, lights: bool | None = None, **kw: object) -> Fix:
    """A split-form fix: the position, and the lightbar when the AVL reports one."""
    return Fix(vehicle_id="CFD-E7", ts=at(t), lat=35.2271, lon=-80.8431, speed_mps=12.0,
               heading_deg=90.0, lights_sirens=lights, **kw)  # type: ignore[arg-type]


def cad(t: float, status: str, *, lights: bool | None = None, incident: str | None = "F1",
        **kw: object) -> UnitStatus:
    return UnitStatus(vehicle_id="CFD-E7", ts=at(t), status=status,  # type: ignore[arg-type]
                      incident_id=incident, lights_sirens=lights, **kw)  # type: ignore[arg-type]


def as_fix(pos: object) -> Fix:
    """The combined-form fix of a conftest position."""
    from broker import codec

    out = codec.decode_position(codec.encode(pos))  # type: ignore[arg-type]
    assert isinstance(out, Fix)
    return out


def test_a_combined_fix_merges_to_exactly_the_position_it_always_was() -> None:
    pos = fix(3.0, 40.0)
    assert join.merge(as_fix(pos), None, None) == pos


def test_a_combined_fix_wins_over_cad() -> None:
    pos = fix(3.0, 40.0, status="available", lights_sirens=False, incident_id=None)
    merged = join.merge(as_fix(pos), cad(2.0, "responding", lights=True), UNIT)
    assert (merged.status, merged.lights_sirens, merged.incident_id) == ("available", False, None)


def test_a_split_fix_takes_status_and_incident_from_cad_and_lights_from_the_lightbar() -> None:
    merged = join.merge(avl(lights=True), cad(0.0, "responding", lights=False), UNIT)
    assert (merged.status, merged.incident_id, merged.lights_sirens) == ("responding", "F1", True)
    # no lightbar reported: CAD's word on the lights, else off
    assert join.merge(avl(), cad(0.0, "responding", lights=True), UNIT).lights_sirens is True
    assert join.merge(avl(), cad(0.0, "responding"), UNIT).lights_sirens is False


def test_agency_and_unit_type_come_from_the_fix_then_cad_then_the_agency_file() -> None:
    assert join.merge(avl(), None, UNIT).agency == "charlotte-fd"
    assert join.merge(avl(), cad(0.0, "available", agency="medic"), UNIT).agency == "medic"
    assert join.merge(avl(agency="cmpd"), cad(0.0, "available", agency="medic"), UNIT).agency \
        == "cmpd"
    assert join.merge(avl(), None, None).unit_type == "unknown"
    assert join.merge(avl(), None, UNIT).unit_type == "engine"


def test_lights_without_any_status_warn_only_when_configured() -> None:
    assert join.merge(avl(lights=True), None, UNIT).status == "unknown"
    warned = join.merge(avl(lights=True), None, UNIT, lights_without_cad=True)
    assert (warned.status, warned.lights_sirens) == ("responding", True)
    assert join.merge(avl(lights=False), None, UNIT, lights_without_cad=True).status == "unknown"


def state_after(fix_: Fix, status: UnitStatus | None, *, alert: bool = False) -> VehicleState:
    """A state whose last fix is ``fix_`` merged with ``status``."""
    state = VehicleState(vehicle_id="CFD-E7", cad=status)
    state = join.remember_fix(state, fix_)
    state = replace(state, last_fix=join.merge(fix_, status, UNIT))
    if alert:
        from broker.engine import step

        live, _ = step(None, state.last_fix, now=fix_.ts, cfg=CFG)  # type: ignore[arg-type]
        state = replace(state, alert=live.alert)
    return state


def test_a_status_that_changes_nothing_restates_nothing() -> None:
    status = cad(0.0, "responding", lights=True)
    state = state_after(avl(0.0), status, alert=True)
    assert join.restated(replace(state, cad=replace(status, ts=at(5.0))), CFG) is None


def test_going_available_restates_the_last_fix_at_the_status_time() -> None:
    state = state_after(avl(0.0), cad(0.0, "responding", lights=True), alert=True)
    pos = join.restated(replace(state, cad=cad(4.0, "available", incident=None)), CFG)
    assert pos is not None
    assert (pos.ts, pos.status, pos.incident_id) == (at(4.0), "available", None)
    assert (pos.lat, pos.lon) == (state.last_fix.lat, state.last_fix.lon)  # type: ignore[union-attr]


def test_a_status_older_than_the_last_fix_acts_just_after_it() -> None:
    state = state_after(avl(5.0), cad(0.0, "responding", lights=True), alert=True)
    pos = join.restated(replace(state, cad=cad(3.0, "available", incident=None)), CFG)
    assert pos is not None and pos.ts == at(5.0) + join.JUST_AFTER


def test_starting_to_respond_needs_a_fresh_fix() -> None:
    idle = state_after(avl(0.0, lights=True), cad(0.0, "available", incident=None))
    fresh = join.restated(replace(idle, cad=cad(10.0, "responding")), CFG)
    assert fresh is not None and fresh.status == "responding" and fresh.lights_sirens
    late = at(0.0) + timedelta(seconds=CFG.stale_timeout_s)
    stale = replace(idle, cad=replace(cad(0.0, "responding"), ts=late))
    assert join.restated(stale, CFG) is None  # the next fix will start it


def test_a_combined_form_fix_is_not_overridden_by_a_status() -> None:
    pos = as_fix(fix(0.0))
    state = state_after(pos, cad(0.0, "responding", lights=True), alert=True)
    assert state.fix_status
    assert join.restated(replace(state, cad=cad(4.0, "available")), CFG) is None


def test_a_unit_without_cad_status_keeps_nothing_extra() -> None:
    state = VehicleState(vehicle_id="CFD-E7")
    assert join.remember_fix(state, as_fix(fix(0.0))) is state
    assert join.remember_fix(state, avl(0.0)) is state
    assert join.remember_fix(state, avl(0.0, lights=True)).lightbar is True


statuses = st.sampled_from(
    ["available", "dispatched", "responding", "on_scene", "returning", "out_of_service"]
)


@given(
    status=statuses, lights=st.booleans(), incident=st.none() | st.text(max_size=8),
    cad_status=st.none() | statuses, cad_lights=st.none() | st.booleans(),
)
def test_the_combined_form_always_keeps_what_its_fix_says(
    status: str, lights: bool, incident: str | None, cad_status: str | None,
    cad_lights: bool | None,
) -> None:
    f = replace(avl(), status=status, lights_sirens=lights, incident_id=incident)
    other = None if cad_status is None else cad(0.0, cad_status, lights=cad_lights,
                                                incident="OTHER")
    merged = join.merge(f, other, UNIT, lights_without_cad=True)
    assert (merged.status, merged.lights_sirens, merged.incident_id) == (status, lights, incident)


@given(cad_status=statuses, cad_lights=st.none() | st.booleans(), bar=st.none() | st.booleans())
def test_the_split_form_takes_the_status_from_cad_and_the_lightbar_first(
    cad_status: str, cad_lights: bool | None, bar: bool | None,
) -> None:
    merged = join.merge(avl(lights=bar), cad(0.0, cad_status, lights=cad_lights), UNIT)
    assert merged.status == cad_status and merged.incident_id == "F1"
    assert merged.lights_sirens is (bar if bar is not None else bool(cad_lights))
