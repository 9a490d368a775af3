"""The lease on a worker's partitions (broker.streams.membership) and what it holds back: a
worker resumed after a stall past its group session (``make faults``, ``worker_freeze``) ticks
nothing, flushes nothing and acts on no record until a heartbeat is answered again."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka.protocol.commit import OffsetCommitRequest_v2
from aiokafka.protocol.group import HeartbeatRequest_v1, SyncGroupRequest_v1

from broker.streams.membership import (
    HEARTBEAT_API_KEY,
    SYNC_GROUP_API_KEY,
    Membership,
    watch_coordinator,
)
from broker.streams.readiness import is_ready, leased
from broker.streams.states import VehicleStates
from tests.unit.streams.fakes import Written


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_lease_lapses_a_session_after_the_last_renewal_was_sent() -> None:
    clock = Clock()
    m = Membership(8.0, clock=clock)
    assert m.held()  # no coordinator watched yet: nothing says otherwise
    m.renewed(100.0)
    clock.now = 107.9
    assert m.held()
    clock.now = 108.0
    assert not m.held()
    assert m.first_look() and not m.first_look()  # said once per lapse
    m.renewed(99.0)  # an older answer renews nothing
    assert not m.held()
    m.renewed(107.5)
    assert m.held() and not m.first_look()


def _response(error_code: int) -> Any:
    return SimpleNamespace(error_code=error_code)


def test_the_api_keys_are_aiokafkas() -> None:
    assert HeartbeatRequest_v1.API_KEY == HEARTBEAT_API_KEY
    assert SyncGroupRequest_v1.API_KEY == SYNC_GROUP_API_KEY
    assert OffsetCommitRequest_v2.API_KEY not in (HEARTBEAT_API_KEY, SYNC_GROUP_API_KEY)


@pytest.mark.parametrize(
    ("api_key", "error_code", "renews"),
    [
        (HEARTBEAT_API_KEY, 0, True),
        (SYNC_GROUP_API_KEY, 0, True),
        (HEARTBEAT_API_KEY, 25, False),  # unknown member: evicted
        (HEARTBEAT_API_KEY, 27, False),  # rebalancing
        (OffsetCommitRequest_v2.API_KEY, 0, False),
    ],
)
async def test_a_heartbeat_or_sync_answered_renews_at_its_send_time(
    api_key: int, error_code: int, renews: bool
) -> None:
    request_ = SimpleNamespace(API_KEY=api_key)
    clock = Clock()
    m = Membership(8.0, clock=clock)
    m.renewed(90.0)

    async def send(request: Any) -> Any:
        clock.now = 103.0  # the answer comes later than the request went
        return _response(error_code)

    coordinator = SimpleNamespace(_send_req=send)
    watch_coordinator(coordinator, m)
    assert (await coordinator._send_req(request_)).error_code == error_code
    clock.now = 108.5  # past 100 + 8 (send time), before 103 + 8 (answer time)
    assert not m.held()
    clock.now = 107.9
    assert m.held() is renews


def _app(rebalancing: bool = False, generation: int = 3) -> Any:
    completed = SimpleNamespace(is_set=lambda: True)
    return SimpleNamespace(rebalancing=rebalancing, consumer_generation_id=generation,
                           tables=SimpleNamespace(recovery=SimpleNamespace(completed=completed)))


def test_a_lapsed_lease_makes_the_worker_not_ready_so_nothing_ticks() -> None:
    clock = Clock()
    m = Membership(8.0, clock=clock)
    m.renewed(100.0)
    rt: Any = SimpleNamespace(membership=m)
    assert is_ready(_app(), rt)
    clock.now = 130.0  # thawed 30 s later
    assert not is_ready(_app(), rt)


async def test_a_record_waits_for_the_lease_and_is_dropped_when_a_rebalance_comes() -> None:
    clock = Clock()
    m = Membership(8.0, clock=clock)
    m.renewed(100.0)
    clock.now = 130.0
    app = _app()
    rt: Any = SimpleNamespace(membership=m)
    waiting = asyncio.ensure_future(leased(app, rt))
    await asyncio.sleep(0.12)
    assert not waiting.done()
    app.rebalancing = True  # the heartbeat said "unknown member": the rebalance begins
    assert await asyncio.wait_for(waiting, 2) is False
    app.rebalancing = False
    m.renewed(129.0)  # joined again
    assert await leased(app, rt) is True


async def test_a_flush_does_not_start_while_the_lease_is_lapsed() -> None:
    write = Written()
    written = write.keys
    acked: list[int] = []
    lease = [True]
    states = VehicleStates(read=lambda key: None, write=write, epoch=lambda: 0,
                           leased=lambda: lease[0])
    states.begin()
    states.forget(b"U1")  # a change to write (a tombstone: no state needed)
    states.processed(lambda: acked.append(1))
    lease[0] = False
    result = await states.flush()
    assert result.deferred and written == [] and acked == []
    lease[0] = True  # renewed without a rebalance: the next flush writes and acks it
    result = await states.flush()
    assert not result.deferred and acked == [1]


@pytest.mark.parametrize("rebalance", [True, False])
async def test_a_flush_frozen_mid_way_writes_nothing_until_the_lease_is_back(
    rebalance: bool,
) -> None:
    """The stall hits while the flush awaits its alerts: after the thaw it writes no state
    while the lease is lapsed; the rebalance drops it (not acked: the records come again), a
    renewed lease lets it finish."""
    write = Written()
    written = write.keys
    acked: list[int] = []
    lease, epoch = [True], [0]
    states = VehicleStates(read=lambda key: None, write=write, epoch=lambda: epoch[0],
                           leased=lambda: lease[0])
    states.begin()
    alert_sent = asyncio.get_running_loop().create_future()
    states.sent(alert_sent)
    states.forget(b"U1")
    states.processed(lambda: acked.append(1))
    flush = asyncio.ensure_future(states.flush())
    await asyncio.sleep(0)
    lease[0] = False  # frozen past the session while Kafka had the alert
    alert_sent.set_result(None)
    await asyncio.sleep(0.15)
    assert not flush.done() and written == [] and acked == []
    if rebalance:
        epoch[0] = 1
    else:
        lease[0] = True
    result = await asyncio.wait_for(flush, 2)
    if rebalance:
        assert result.dropped and written == [] and acked == []
    else:
        assert not result.dropped and written == [b"U1"] and acked == [1]


@pytest.mark.parametrize(("code", "renews"), [(0, True), (25, False), (27, False)])
async def test_aiokafkas_own_heartbeat_goes_through_the_watched_request(
    code: int, renews: bool
) -> None:
    """``GroupCoordinator._do_heartbeat`` itself (not a stand-in) sends through the instance's
    ``_send_req`` the watch replaces: answered 0 it renews the lease; 25 (unknown member) and
    27 (rebalance in progress) do not. An aiokafka that sent heartbeats some other way would
    leave the lease held for ever, silently."""
    from aiokafka.consumer.group_coordinator import GroupCoordinator

    now = [100.0]
    membership = Membership(8.0, clock=lambda: now[0])
    membership.renewed(50.0)  # lapsed: 50 + 8 < 100

    class Client:
        async def send(self, node_id: Any, request: Any, group: Any = None) -> Any:
            now[0] = 101.0
            return SimpleNamespace(error_code=code)

    coordinator: Any = GroupCoordinator.__new__(GroupCoordinator)
    coordinator.group_id, coordinator.generation = "g", 3
    coordinator.member_id, coordinator.coordinator_id = "m-1", 0
    coordinator._client = Client()
    coordinator.reset_generation = coordinator.request_rejoin = lambda: None
    coordinator.coordinator_dead = lambda: None
    watch_coordinator(coordinator, membership)
    await coordinator._do_heartbeat()
    assert membership.held() is renews
