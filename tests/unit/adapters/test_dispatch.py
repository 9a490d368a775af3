"""The worker's fan-out bookkeeping: ack after settle, settled state across a restart, expiry
in wall time. A recording hub stands in for the HTTP side (no Kafka, no sockets)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

from adapters.audit import AuditRecord, ProducerAudit
from adapters.dispatch import (
    Dispatcher,
    decode_settled,
    encode_settled,
    in_wall_time,
    settle,
)
from adapters.fanout import LastSent
from tests.unit.adapters.factory import PARTNERS, T0, lifecycle

WALL = datetime(2030, 1, 1, tzinfo=UTC)  # far from the events' time on purpose


@dataclass
class RecordingHub:
    """Keeps submitted deliveries and their callbacks; ``settle_all`` plays the partners."""

    queued: list = field(default_factory=list)
    seeds: list = field(default_factory=list)  # what the dispatcher said the partner had
    owed: list = field(default_factory=list)  # ... and whether it may hold the alert live

    def submit(self, delivery, on_settled, delivered=None, *, maybe_live=False,  # type: ignore[no-untyped-def]
               on_maybe_live=None) -> None:
        self.queued.append((delivery, on_settled))
        self.seeds.append((delivery.partner_id, delivery.version, delivered))
        self.owed.append((delivery.partner_id, delivery.version, maybe_live))

    def settle_all(self, how: str = "delivered") -> list:
        done, self.queued = self.queued, []
        for d, cb in done:
            got = LastSent(d.version, WALL, d.message_id, d.view.ts) if how == "delivered" else None
            cb(d, how, got)
        return [d for d, _ in done]


@dataclass
class CountingMetrics:
    """The dispatcher's counts, kept in plain fields."""

    queued_by_partner: dict[str, int] = field(default_factory=dict)
    pending_now: int = 0

    def queued(self, partner_id: str) -> None:
        self.queued_by_partner[partner_id] = self.queued_by_partner.get(partner_id, 0) + 1

    def pending(self, n: int) -> None:
        self.pending_now = n


def worker(table: dict, hub: RecordingHub) -> Dispatcher:
    return Dispatcher(
        partners=PARTNERS, hub=hub, metrics=CountingMetrics(),  # type: ignore[arg-type]
        settled_get=table.get,
        settled_put=lambda k, v: table.__setitem__(k, v) if v is not None else table.pop(k),
        owns=lambda aid: True, wall=lambda: WALL,
    )


def test_an_event_is_acked_only_once_every_delivery_settled() -> None:
    hub, table, acks = RecordingHub(), {}, []
    fan = worker(table, hub)
    create = lifecycle(n_updates=0)[0]
    n = fan.handle(create, lambda: acks.append(create.version))
    assert n == 2 and acks == []  # navapp and county
    last, cb = hub.queued.pop()
    cb(last, "expired", None)  # one of two settled
    assert acks == []
    hub.settle_all()
    assert acks == [1]
    assert set(decode_settled(table[create.alert_id])) == {"navapp", "county"}


def test_restart_resends_exactly_what_had_not_settled() -> None:
    events = lifecycle(n_updates=3)  # versions 1..5, 10 s apart (no throttle hits for navapp)
    hub, table = RecordingHub(), {}
    fan = worker(table, hub)
    fan.handle(events[0], lambda: None)
    fan.handle(events[1], lambda: None)
    hub.settle_all()  # v1 and v2 settled
    fan.handle(events[2], lambda: None)  # v3 queued, then the worker dies
    # a new worker: only the table survives; Kafka hands back v3.. (not acked)
    hub2 = RecordingHub()
    fan2 = worker(table, hub2)
    for ev in events[2:]:
        fan2.handle(ev, lambda: None)
    seeds = [(v, got.version if got else None) for p, v, got in hub2.seeds if p == "navapp"]
    assert seeds[0] == (3, 2)  # the partner's last received message (v2) rides along
    navapp = [d.view.version for d in hub2.settle_all() if d.partner_id == "navapp"]
    assert navapp == [3, 4, 5]
    # the cancel settled: the record stays for the cancel's life (a late old version is
    # skipped), then may go
    records = decode_settled(table[events[0].alert_id])
    assert records["navapp"].version == 5 and records["navapp"].last_delivered.version == 5
    assert not fan2.forgettable(table[events[0].alert_id], WALL)
    assert fan2.forgettable(table[events[0].alert_id], WALL + timedelta(minutes=12))
    assert fan2.handle(events[1], lambda: None) == 0  # an old version of a cancelled alert


def test_settled_versions_are_not_sent_again_after_a_restart() -> None:
    events = lifecycle(n_updates=1)
    hub, table = RecordingHub(), {}
    fan = worker(table, hub)
    fan.handle(events[0], lambda: None)
    hub.settle_all()
    fan2 = worker(table, RecordingHub())
    assert fan2.handle(events[0], lambda: None) == 0  # a redelivered v1: skipped


def test_settle_keeps_the_newest_version_and_what_the_partner_received() -> None:
    got2 = LastSent(2, T0, "m2", T0)
    got1 = LastSent(1, T0, "m1", T0)
    later = T0 + timedelta(minutes=5)
    one = settle({}, "p", 2, got2, later)
    assert one["p"].version == 2 and one["p"].last_delivered == got2
    assert settle(one, "p", 1, got1, T0) == one  # a stale redelivery never moves it back
    superseded = settle(one, "p", 4, None, later)  # v3, v4 settled unsent: v2 is still the last
    assert superseded["p"].version == 4 and superseded["p"].last_delivered == got2
    assert decode_settled(encode_settled(superseded)) == superseded
    assert decode_settled(None) == {} and decode_settled(b'{"p": {"old": "shape"}}') == {}


def test_expiry_moves_to_wall_time_keeping_the_remaining_life() -> None:
    hub, table = RecordingHub(), {}
    fan = worker(table, hub)
    ev = lifecycle(n_updates=0)[0]
    fan.handle(ev, lambda: None)
    d, _ = hub.queued[0]
    assert d.expires_at == WALL + (ev.expires_at - ev.ts)
    capped = in_wall_time(d, WALL, max_age_s=5)
    assert capped.expires_at == d.event_ts + timedelta(seconds=5)


def test_with_a_max_age_a_delivery_never_outlives_its_own_expiry() -> None:
    """Live traffic caught up late (after a Kafka outage): the version's own expires_at
    bounds it, however young it is against the max age."""
    ev = lifecycle(n_updates=0)[0]
    hub, table = RecordingHub(), {}
    worker(table, hub).handle(ev, lambda: None)
    queued, _ = hub.queued[0]
    d = replace(queued, expires_at=ev.expires_at)  # as fan_out makes it, before wall time
    late = ev.expires_at + timedelta(seconds=10)  # fanned out 10 s after the zone expired
    assert in_wall_time(d, late, max_age_s=3600).expires_at == ev.expires_at
    assert in_wall_time(d, late).expires_at == late + (ev.expires_at - ev.ts)  # replays


async def test_producer_audit_produces_json_keyed_by_partner() -> None:
    sent: list = []

    def produce(key: bytes, value: bytes) -> asyncio.Future[object]:
        sent.append((key, value))
        done: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done

    audit = ProducerAudit(produce)
    audit.write(AuditRecord(at=T0, partner="navapp", alert_id="ev1", version=1,
                            action="create", status="delivered"))
    assert sent[0][0] == b"navapp" and b'"status":"delivered"' in sent[0][1]
    assert audit.barrier() is None  # Kafka has it: nothing to wait for
