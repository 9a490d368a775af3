"""Several lives of one engine alert id (docs/engine.md): a re-created alert continues its id's
version count, and one the engine forgot starts again at version 1. Each life is a new alert
for the partner (its own partner-facing id): delivery and the worker's settled records keep
what a partner got *per life*, so no life is skipped, held back or kept alive by another.
Real adapter objects over ``httpx.MockTransport`` in fake time (no sockets, no waiting)."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from datetime import timedelta

import httpx
import msgspec

from adapters.dispatch import decode_settled, encode_settled, settle
from adapters.fanout import LastSent, fan_out, received_in_life
from adapters.policy import Policy, view_for
from tests.unit.adapters.factory import (
    KNOWN,
    PARTNERS,
    T0,
    FakeTime,
    alert,
    fake_hub,
    known_steps,
    navapp_deliveries,
    one_at_a_time,
    run_hub,
)
from tests.unit.adapters.test_dispatch import WALL, RecordingHub, worker

LATER = T0 + timedelta(minutes=2)  # the second life begins (the engine forgot the id meanwhile)


def first_life(cancel_version: int = 2):  # type: ignore[no-untyped-def]
    return [alert("create", 1, ttl_s=600),
            alert("cancel", cancel_version, at=T0 + timedelta(seconds=20), started_at=T0)]


def sent(request: httpx.Request) -> tuple[str, int, str]:
    body = json.loads(request.content)
    return body["data"]["alert_id"], body["data"]["version"], body["type"]


async def test_a_life_that_starts_again_at_version_1_reaches_the_partner(tmp_path) -> None:
    """The engine forgot the id (idle unit, or past REMEMBERED_ALERTS): its next life counts
    from v1 again. The partner got the first life up to its cancel v2; the second life's v1 and
    v2 were settled as "superseded" by that v2 and never sent: an alert that went missing."""
    got: list[tuple[str, int, str]] = []

    def partner(request: httpx.Request) -> httpx.Response:
        got.append(sent(request))
        return httpx.Response(204)

    second = [alert("create", 1, at=LATER, started_at=LATER, ttl_s=600),
              alert("update", 2, at=LATER + timedelta(seconds=10), started_at=LATER, ttl_s=600)]
    ds = navapp_deliveries(*first_life(), *second)
    hub, _, _, _ = await run_hub(partner, ds, tmp_path, sequential=True)
    old_id, new_id = ds[0].view.alert_id, ds[2].view.alert_id
    assert old_id != new_id  # a life per partner-facing id
    assert got == [(old_id, 1, "alert.created"), (old_id, 2, "alert.cancelled"),
                   (new_id, 1, "alert.created"), (new_id, 2, "alert.updated")]
    assert hub.stats()["navapp"].superseded == 0


async def test_a_cancel_of_a_life_the_partner_never_got_ends_with_it(tmp_path) -> None:
    """The partner got the first life (create, cancel), then went down before the second
    life's create: that life's cancel has nothing to cancel at the partner, so it ends at its
    own expiry. It was taken for the cancel of an alert the partner has (the engine id is the
    same) and retried for as long as the partner was down (an hour here)."""
    fake = FakeTime(T0)
    got: list[tuple[str, int, str]] = []

    def partner(request: httpx.Request) -> httpx.Response:
        if len(got) >= 2 and fake.now < T0 + timedelta(hours=1):
            return httpx.Response(503)
        got.append(sent(request))
        return httpx.Response(204)

    second = [alert("create", 3, at=LATER, started_at=LATER, ttl_s=60),  # the count goes on
              alert("cancel", 4, at=LATER + timedelta(seconds=5), started_at=LATER)]
    ds = navapp_deliveries(*first_life(), *second)
    hub, records, letters, _ = await run_hub(partner, ds, tmp_path, fake=fake, sequential=True)
    assert [v for _, v, _ in got] == [1, 2]  # nothing of the second life once down
    assert fake.now < ds[-1].expires_at + timedelta(seconds=10)  # given up at its expiry
    assert [r.status for r in records if r.version == 4][-1] == "expired"
    assert letters == [] and hub.stats()["navapp"].expired == 2  # its create and its cancel


async def test_a_new_life_goes_before_updates_of_alerts_the_partner_has(tmp_path) -> None:
    """The first life of X is over (create and cancel delivered); X is created again while
    four alerts the partner has wait with updates: X's create is a new alert for the partner
    and goes first. It queued behind the updates, as if the partner had it."""
    aid = "X:F1:approaching"
    x_first = navapp_deliveries(alert("create", 1, alert_id=aid, vehicle_id="X", ttl_s=3600),
                                alert("cancel", 2, alert_id=aid, vehicle_id="X", started_at=T0))
    x_again = navapp_deliveries(alert("create", 3, alert_id=aid, vehicle_id="X", at=LATER,
                                      started_at=LATER, ttl_s=3600))
    order = await one_at_a_time(tmp_path, [*known_steps("create", 1), *x_first],
                                [*known_steps("update", 2), *x_again])
    assert order[6:] == ["X:alert.created"] + [f"{v}:alert.updated" for v in KNOWN]


async def test_a_new_life_never_takes_the_place_of_the_last_ones_cancel(tmp_path) -> None:
    """The first life's cancel still waits (the partner is slow) when the alert is created
    again: the second life's create is another alert for the partner, not a newer version of
    the first. It took the cancel's place, and the first life stayed live at the partner."""
    got: list[tuple[str, int, str]] = []
    gate = asyncio.Event()

    async def partner(request: httpx.Request) -> httpx.Response:
        if got:  # the first request (the create) is answered at once, the rest once let go
            await gate.wait()
        got.append(sent(request))
        return httpx.Response(204)

    second = alert("create", 3, at=LATER, started_at=LATER, ttl_s=600)
    ds = navapp_deliveries(*first_life(), second)
    fake = FakeTime(T0)
    async with httpx.AsyncClient(transport=httpx.MockTransport(partner)) as client:
        hub = fake_hub(client, tmp_path, fake)
        hub.submit(ds[0])
        await hub.drain()
        hub.hold()  # both wait in the mailbox together
        hub.submit(ds[1])
        hub.submit(ds[2])
        hub.release()
        await asyncio.sleep(0)
        gate.set()
        await hub.drain()
    old_id, new_id = ds[0].view.alert_id, ds[2].view.alert_id
    assert sorted(got) == sorted([(old_id, 1, "alert.created"), (old_id, 2, "alert.cancelled"),
                                  (new_id, 3, "alert.created")])


def test_a_settled_record_of_an_earlier_life_skips_nothing_of_the_next() -> None:
    """The worker restarts during the second life (started again at v1): the ``delivered``
    table still holds the first life's record (settled up to its cancel v5). The second
    life's v2 and v3, handed back by Kafka, were skipped as settled, and acked: lost."""
    aid = "CFD-E7:F261125-0042:approaching"
    table: dict = {}
    hub = RecordingHub()
    fan = worker(table, hub)
    first = [alert("create", 1, ttl_s=600),
             *[alert("update", v, ttl_s=600, started_at=T0) for v in (2, 3, 4)],
             alert("cancel", 5, started_at=T0)]
    for ev in first:
        fan.handle(ev, lambda: None)
        hub.settle_all()
    assert decode_settled(table[aid])["navapp"].version == 5
    second = [alert("create", 1, at=LATER, started_at=LATER, ttl_s=600),
              *[alert("update", v, at=LATER + timedelta(seconds=10 * (v - 1)), started_at=LATER,
                      ttl_s=600) for v in (2, 3)]]
    fan.handle(second[0], lambda: None)
    hub.settle_all()  # v1 settled, then the worker dies with v2 queued
    fan.handle(second[1], lambda: None)
    hub2 = RecordingHub()
    fan2 = worker(table, hub2)
    acks: list[int] = []
    for ev in second[1:]:
        fan2.handle(ev, lambda ev=ev: acks.append(ev.version))
    seeds = [(v, got.version if got else None) for p, v, got in hub2.seeds if p == "navapp"]
    assert seeds[0] == (2, 1)  # the second life's v1 rides along, not the first life's v5
    assert [d.version for d in hub2.settle_all() if d.partner_id == "navapp"] == [2, 3]
    assert acks == [2, 3]
    assert decode_settled(table[aid])["navapp"].version == 3


def test_a_late_settle_of_an_earlier_life_leaves_the_next_lifes_record() -> None:
    """Lives settle independently: the first life's cancel may settle after the second life's
    create. The record is the newest life's; an older life's settle does not move it (it is
    kept apart, in ``earlier``: a restart must not send that life's versions again)."""
    life1, life2 = T0, LATER
    got1 = LastSent(5, T0, "a-v5", T0, life1)
    got2 = LastSent(1, LATER, "b-v1", LATER, life2)
    one = settle({}, "p", 1, got2, WALL, started_at=life2)
    late = settle(one, "p", 5, got1, WALL, started_at=life1)
    assert msgspec.structs.replace(late["p"], earlier=()) == one["p"]
    assert late["p"].for_life(life1).last_delivered == got1  # type: ignore[union-attr]
    again = settle(settle({}, "p", 5, got1, WALL, started_at=life1), "p", 1, got2, WALL,
                   started_at=life2)
    assert again["p"].version == 1 and again["p"].started_at == life2
    assert again["p"].last_delivered == got2
    assert again["p"].for_life(life1).version == 5  # type: ignore[union-attr]
    assert decode_settled(encode_settled(again)) == again


def test_a_message_of_another_life_with_the_same_id_and_version_does_not_count() -> None:
    """A policy that passes the engine's id on: a life started again at v1 has the very
    message ids of the one before (``<id>-v1``); only the life tells them apart."""
    view = view_for(alert("create", 1, at=LATER, started_at=LATER),
                    Policy(frozenset({"alert_id"})), key=b"k")
    earlier = LastSent(1, T0, f"{view.alert_id}-v1", T0, T0)
    this_life = replace(earlier, started_at=LATER)
    assert received_in_life(view, earlier) is None
    assert received_in_life(view, this_life) == this_life


def test_fan_out_judges_a_partner_by_what_it_has_of_the_events_life() -> None:
    """The throttle state holds the first life (its cancel never came through here): the next
    life, counting from v1, is not skipped as already sent. A late redelivery of the first
    life's update still goes (partners de-duplicate on webhook-id) and leaves the state the
    second life's."""
    old = alert("update", 5, started_at=T0, ttl_s=600)
    state, _ = fan_out(old, PARTNERS, {}, old.ts)
    new = alert("create", 1, at=LATER, started_at=LATER, ttl_s=600)
    state, ds = fan_out(new, PARTNERS, state, new.ts)
    assert "navapp" in {d.partner_id for d in ds}
    assert state[("navapp", new.alert_id)].started_at == LATER
    state2, ds = fan_out(old, PARTNERS, state, LATER)
    assert "navapp" in {d.partner_id for d in ds}
    assert state2 == state


def test_a_late_redelivery_of_an_earlier_life_leaves_the_working_state_alone() -> None:
    table: dict = {}
    hub = RecordingHub()
    fan = worker(table, hub)
    new = alert("create", 1, at=LATER, started_at=LATER, ttl_s=600)
    fan.handle(new, lambda: None)
    before = dict(fan.working[new.alert_id])
    assert fan.handle(alert("update", 3, started_at=T0, ttl_s=600), lambda: None) > 0
    assert fan.working[new.alert_id] == before
    hub.settle_all()
    assert decode_settled(table[new.alert_id])["navapp"].started_at == LATER


async def test_a_partner_given_the_engine_id_never_gets_a_step_after_a_later_one(
    tmp_path,
) -> None:
    """A policy that passes the engine's id on: every life has one partner-facing id, so one
    mailbox entry, steps in order of (started_at, version). The first life's cancel v2 got a
    503 and was backing off when the second life's create v3 came: kept apart, the create went
    first and the cancel after it, and a partner applying them in order dropped the live alert.
    Now the create takes the waiting cancel's place (the partner's alert under that id is
    replaced by the new life's create)."""
    later = T0 + timedelta(seconds=21)
    policy = Policy(frozenset({"alert_id"}))
    events = [alert("create", 1, ttl_s=600),
              alert("cancel", 2, at=T0 + timedelta(seconds=20), started_at=T0),
              alert("create", 3, at=later, started_at=later, ttl_s=600)]
    ds = [replace(d, view=view_for(ev, policy, key=b"k"))
          for d, ev in zip(navapp_deliveries(*events), events, strict=True)]
    got: list[tuple[str, int, str]] = []
    tries: dict[int, int] = {}

    def partner(request: httpx.Request) -> httpx.Response:
        step = sent(request)
        tries[step[1]] = tries.get(step[1], 0) + 1
        if step[1] == 2 and tries[2] == 1:
            return httpx.Response(503)
        got.append(step)
        return httpx.Response(204)

    fake = FakeTime(T0)
    async with httpx.AsyncClient(transport=httpx.MockTransport(partner)) as client:
        hub = fake_hub(client, tmp_path, fake)
        hub.submit(ds[0])
        await hub.drain()
        hub.submit(ds[1])
        await asyncio.sleep(0)  # the cancel is in flight: 503, backing off
        hub.submit(ds[2])
        await hub.drain()
    aid = events[0].alert_id
    assert got == [(aid, 1, "alert.created"), (aid, 3, "alert.created")]
    assert hub.stats()["navapp"].superseded == 1  # the cancel, replaced by the next life


def _play(hub: RecordingHub, how_for) -> None:  # type: ignore[no-untyped-def]
    """Settle the queued deliveries ``how_for(d)`` says (None: leave it queued)."""
    keep = []
    for d, cb in hub.queued:
        how = how_for(d)
        if how is None:
            keep.append((d, cb))
            continue
        cb(d, how, LastSent(d.version, WALL, d.message_id, d.view.ts, d.view.started_at)
           if how == "delivered" else None)
    hub.queued = keep


def test_a_restart_sends_nothing_of_an_earlier_life_the_partner_has_settled() -> None:
    """navapp got the first life's create v1 and cancel v3 (v2 superseded, never sent) and the
    second life's create v4; county still retries v2, so Kafka hands v2 to v4 back after a
    restart. The record held the second life only: navapp was sent v2 as a *create* (its
    webhook-id never sent: the cancelled alert came back) and v3 again."""
    later = T0 + timedelta(seconds=40)
    events = [alert("create", 1, ttl_s=600), alert("update", 2, started_at=T0, ttl_s=600),
              alert("cancel", 3, at=T0 + timedelta(seconds=20), started_at=T0),
              alert("create", 4, at=later, started_at=later, ttl_s=600)]
    table: dict = {}
    hub = RecordingHub()
    fan = worker(table, hub)
    navapp_only = lambda d: "delivered" if d.partner_id == "navapp" else None  # noqa: E731
    fan.handle(events[0], lambda: None)
    _play(hub, lambda d: "delivered")
    fan.handle(events[1], lambda: None)
    _play(hub, lambda d: "superseded" if d.partner_id == "navapp" else None)  # county: retrying
    for ev in events[2:]:
        fan.handle(ev, lambda: None)
        _play(hub, navapp_only)
    hub2 = RecordingHub()
    fan2 = worker(table, hub2)  # the restart
    for ev in events[1:]:
        fan2.handle(ev, lambda: None)
    assert [d.partner_id for d, _ in hub2.queued] == ["county"] * 3  # navapp: all settled
    # county: told it has the first life's v1 for that life's steps, nothing for the next life
    assert [(v, got and got.version) for _, v, got in hub2.seeds] == [(2, 1), (3, 1), (4, None)]


def test_a_restart_keeps_the_cancel_owed_of_an_earlier_life() -> None:
    """The first life's cancel is still owed to navapp (it got the create; the partner is down)
    when the second life's create to navapp settles ``expired``. The record then said nothing
    of the first life: after a restart the redelivered cancel was told navapp had nothing, so
    it was given up at its expiry instead of never (docs/partners.md item 3)."""
    later = T0 + timedelta(seconds=25)
    c1 = alert("create", 1, ttl_s=600)
    x1 = alert("cancel", 2, at=T0 + timedelta(seconds=20), started_at=T0)
    c2 = alert("create", 3, at=later, started_at=later, ttl_s=60)
    table: dict = {}
    hub = RecordingHub()
    fan = worker(table, hub)
    fan.handle(c1, lambda: None)
    _play(hub, lambda d: "delivered")
    fan.handle(x1, lambda: None)
    hub.queued = []  # retrying, never settled
    fan.handle(c2, lambda: None)
    _play(hub, lambda d: "expired")
    record = decode_settled(table[c1.alert_id])["navapp"]
    assert record.started_at == later and record.last_delivered is None
    hub2 = RecordingHub()
    fan2 = worker(table, hub2)
    fan2.handle(x1, lambda: None)  # Kafka hands the cancel back
    seeds = {p: got for p, v, got in hub2.seeds if v == 2}
    x1_navapp = next(d for d, _ in hub2.queued if d.partner_id == "navapp")
    assert seeds["navapp"] is not None and seeds["navapp"].version == 1
    assert received_in_life(x1_navapp.view, seeds["navapp"]) == seeds["navapp"]  # owed: never
    # given up (DeliveryLoop._deadline)


def test_an_earlier_lifes_record_goes_once_it_has_outlived_its_alert() -> None:
    life1, life2 = T0, LATER
    soon, late = WALL + timedelta(minutes=10), WALL + timedelta(hours=1)
    one = settle({}, "p", 2, LastSent(2, WALL, "a-v2", T0, life1), soon, started_at=life1)
    two = settle(one, "p", 3, None, late, started_at=life2, now=WALL)
    assert two["p"].for_life(life1) is not None and two["p"].last_until == late
    assert settle(two, "p", 4, None, late, started_at=life2, now=soon)["p"].earlier == ()
    older = b'{"p": {"version": 2, "until": "2030-01-01T00:00:00Z", "delivered": null}}'
    assert decode_settled(older)["p"].earlier == ()  # a record from before: no earlier lives


async def test_a_partner_given_the_engine_id_still_gets_a_cancel_it_is_owed(tmp_path) -> None:
    """The engine's id passed on: the partner got the first life's create, then went down; the
    second life's steps took the place of the first life's owed cancel under the one id. The
    second life's cancel is then what ends the alert the partner holds under that id: it is
    never given up (it was dropped at its expiry, as a cancel of a life the partner never got,
    and the first life stayed live at a partner ignoring expires_at)."""
    later = T0 + timedelta(seconds=21)
    fake = FakeTime(T0)
    policy = Policy(frozenset({"alert_id"}))
    events = [alert("create", 1, ttl_s=600),
              alert("cancel", 2, at=T0 + timedelta(seconds=20), started_at=T0),
              alert("create", 3, at=later, started_at=later, ttl_s=60),
              alert("cancel", 4, at=later + timedelta(seconds=5), started_at=later)]
    ds = [replace(d, view=view_for(ev, policy, key=b"k"))
          for d, ev in zip(navapp_deliveries(*events), events, strict=True)]
    got: list[tuple[str, int, str]] = []

    def partner(request: httpx.Request) -> httpx.Response:
        if got and fake.now < T0 + timedelta(hours=1):
            return httpx.Response(503)
        got.append(sent(request))
        return httpx.Response(204)

    async with httpx.AsyncClient(transport=httpx.MockTransport(partner)) as client:
        hub = fake_hub(client, tmp_path, fake)
        hub.submit(ds[0])
        await hub.drain()
        hub.submit(ds[1])
        await asyncio.sleep(0)  # the first life's cancel: 503, backing off
        hub.submit(ds[2])  # takes its place ...
        hub.submit(ds[3])  # ... and the second life's cancel takes the create's
        await hub.drain()
    aid = events[0].alert_id
    assert got == [(aid, 1, "alert.created"), (aid, 4, "alert.cancelled")]


def test_an_earlier_lifes_record_stays_while_its_cancel_is_still_under_way() -> None:
    """A cancel owed is retried past its life's ``until`` (an outage of an hour): while it is
    under way, a later life's settle keeps the earlier life's record and the value is not
    forgettable, or a restart would take the cancel for one of nothing and give it up."""
    c1 = alert("create", 1, ttl_s=600)
    x1 = alert("cancel", 2, at=T0 + timedelta(seconds=20), started_at=T0)
    c2 = alert("create", 3, at=LATER, started_at=LATER, ttl_s=60)
    table: dict = {}
    hub = RecordingHub()
    fan = worker(table, hub)
    fan.handle(c1, lambda: None)
    hub.settle_all()
    fan.handle(x1, lambda: None)
    owed, hub.queued = hub.queued, []  # retrying through the outage
    fan.wall = lambda: WALL + timedelta(hours=1)
    fan.handle(c2, lambda: None)
    hub.settle_all("expired")
    record = decode_settled(table[c1.alert_id])["navapp"]
    first = record.for_life(T0)
    assert record.started_at == LATER
    assert first is not None and first.until < fan.wall()  # kept: its cancel is under way
    assert not fan.forgettable(table[c1.alert_id], WALL + timedelta(hours=2), c1.alert_id)
    hub.queued = owed
    hub.settle_all()
    assert fan.forgettable(table[c1.alert_id], WALL + timedelta(hours=2), c1.alert_id)


async def test_a_partner_given_the_engine_id_gets_a_life_counting_from_1_again(tmp_path) -> None:
    """One mailbox entry for all lives (the engine's id passed on) is ordered by (started_at,
    version), not by version: the second life's v1 and v2 come after the first life's v5."""
    got: list[tuple[str, int, str]] = []

    def partner(request: httpx.Request) -> httpx.Response:
        got.append(sent(request))
        return httpx.Response(204)

    policy = Policy(frozenset({"alert_id"}))
    events = [alert("create", 5, ttl_s=600),
              alert("create", 1, at=LATER, started_at=LATER, ttl_s=600),
              alert("update", 2, at=LATER + timedelta(seconds=10), started_at=LATER, ttl_s=600)]
    ds = [replace(d, view=view_for(ev, policy, key=b"k"))
          for d, ev in zip(navapp_deliveries(*events), events, strict=True)]
    hub, _, _, _ = await run_hub(partner, ds, tmp_path, sequential=True)
    aid = events[0].alert_id
    assert got == [(aid, 5, "alert.created"), (aid, 1, "alert.created"),
                   (aid, 2, "alert.updated")]
    assert hub.stats()["navapp"].superseded == 0
