"""The deploy of per-life versions (2026-12-07) in the middle of a re-created life.

Before it, a pseudonymous partner got the engine's count: a life that began at engine v5 went
as ``P-v5``, ``P-v6``, ``P-v7``, and the ``delivered`` table holds that last message id beside
engine version 7. Counted per life, engine v7 is ``P-v3``: that record was not recognised, so
the life's next update went as a create numbered 4 (versions going backwards at the partner),
its cancel as ``P-v6`` (a webhook-id the partner had de-duplicated: broker/sink.py drops it) and
the cancel owed was given up at its ts + 5 min. Such a life keeps the engine's count to its end
(``fanout.as_known``): fan-out, the worker's mailbox and attempts, ``render_for`` and the
restart's seeds decide it in one place. Real adapter objects in fake time (no sockets)."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import timedelta

import httpx
import pytest

from adapters.audit import AuditRecord, read_audit
from adapters.dispatch import Dispatcher
from adapters.fanout import LastSent, as_known, received_in_life, render_for
from adapters.policy import life_stamp, view_for
from adapters.transparency import build_reports
from tests.unit.adapters.factory import CONFIG, PARTNERS, FakeTime, fake_hub
from tests.unit.adapters.test_dispatch import CountingMetrics, RecordingHub
from tests.unit.adapters.test_life_versions import LATER, NS, SENDER, cap_of, deliveries, life


def _legacy(pid: str, n: int = 3) -> tuple[list, LastSent]:
    """The life v5 (create) .. v10 (cancel) from ``LATER``; what the old code left of its
    first ``n`` steps for ``pid``: the last one's record, its id in the engine's count."""
    evs = life(5, LATER, 6)
    last = deliveries(pid, evs)[n - 1]
    return evs, LastSent(last.version, last.view.ts, f"{last.view.alert_id}-v{last.version}",
                         last.view.ts, LATER)


def test_a_life_the_partner_has_in_the_engines_count_keeps_it_to_its_end() -> None:
    """The rest of the life goes as updates 8, 9 and cancel 10 (webhook-id, body, CAP
    identifier and references in one count), never repeating an id sent before the deploy."""
    for pid in ("navapp", "county"):
        evs, seen = _legacy(pid)
        partner = PARTNERS.partners[pid]
        pre = {f"{seen.message_id.rsplit('-v', 1)[0]}-v{v}" for v in (5, 6, 7)}
        out = []
        for d in deliveries(pid, evs)[3:]:
            assert received_in_life(d.view, seen) == seen
            p = render_for(partner, d.view, sender=SENDER, delivered=seen)
            body = json.loads(p.body)
            out.append((p.message_id.rsplit("-v", 1)[1], body["data"]["action"],
                        body["data"]["version"]))
            assert p.message_id not in pre
            if partner.format == "cap":
                doc = cap_of(p.body)
                stem = f"{d.view.alert_id}-{life_stamp(LATER)}"
                assert doc.findtext("c:identifier", namespaces=NS) == f"{stem}-v{d.version}"
                ref = doc.findtext("c:references", namespaces=NS).split(",")[1]
                assert ref == f"{stem}-v{seen.version}"
            seen = LastSent(d.version, d.view.ts, p.message_id, d.view.ts, LATER)
        assert out == [("8", "update", 8), ("9", "update", 9), ("10", "cancel", 10)], (pid, out)


def test_the_cancel_owed_for_such_a_life_is_never_given_up() -> None:
    """``received_in_life`` recognises the record, so the worker's deadline for the cancel is
    NEVER (it was the cancel's ts + 5 min)."""
    evs, seen = _legacy("navapp")
    cancel = deliveries("navapp", evs)[-1]
    assert cancel.view.action == "cancel"
    assert received_in_life(cancel.view, seen) == seen


def test_only_a_life_already_in_the_engines_count_keeps_it() -> None:
    """A record in the per-life count, one of another life, a life begun at v1 (both counts
    alike) and a partner given the engine's id are left as they are."""
    evs, legacy = _legacy("navapp")
    view = deliveries("navapp", evs)[3].view
    assert view.per_life_versions and not as_known(view, legacy).per_life_versions
    per_life = replace(legacy, message_id=view.message_id_of(7))
    assert as_known(view, per_life) is view and received_in_life(view, per_life) == per_life
    assert as_known(view, replace(legacy, started_at=LATER - timedelta(hours=1))) is view
    assert as_known(view, None) is view
    first = deliveries("navapp", life(1, LATER, 4))[2].view
    assert as_known(first, LastSent(2, LATER, first.message_id_of(2), LATER, LATER)) is first
    raw = view_for(evs[3], replace(PARTNERS.partners["navapp"].policy,
                                   fields=frozenset({"alert_id"})), key=b"k")
    assert as_known(raw, LastSent(7, LATER, f"{raw.alert_id}-v7", LATER, LATER)) is raw


@pytest.mark.parametrize("v7_went", [True, False])
async def test_across_the_restart_the_worker_carries_on_in_the_engines_count(
    tmp_path, v7_went: bool
) -> None:
    """The old code's worker settled v5..v7 (its table: ids in the engine's count; v7 went, or
    expired so the table is settled past what was delivered and fan-out cannot tell: the
    worker decides from the seed); the new one, restarted, gets v8, v9 and the cancel v10
    through the real hub. navapp gets updates 8 and 9 and the cancel 10 (no create, no
    repeated id), and the cancel, answered 503 until past its ts + 5 min, is kept until it
    went. The audit names what was sent."""
    evs = life(5, LATER, 6)
    table: dict = {}
    old = RecordingHub()
    before = Dispatcher(partners=PARTNERS, hub=old,  # type: ignore[arg-type]
                        metrics=CountingMetrics(), settled_get=table.get,  # type: ignore[arg-type]
                        settled_put=lambda k, v: table.__setitem__(k, v), owns=lambda a: True,
                        wall=lambda: LATER)
    had: dict[str, LastSent] = {}
    for ev in evs[:3]:
        before.handle(ev, lambda: None)
        for d, cb in old.queued:  # the old code sent (and recorded) the engine's count
            sent = LastSent(d.version, LATER, f"{d.view.alert_id}-v{d.version}", d.view.ts)
            if v7_went or d.version < 7:
                cb(d, "delivered", sent)
                had[d.partner_id] = sent
            else:
                cb(d, "expired", had[d.partner_id])
        old.queued = []

    fake = FakeTime(evs[3].ts)
    got: list[tuple[str, str, int]] = []
    cancel_from = evs[5].ts + timedelta(minutes=6)

    def partner(request: httpx.Request) -> httpx.Response:
        data = json.loads(request.content)
        if data["data"]["action"] == "cancel" and fake.now < cancel_from:
            return httpx.Response(503)
        if request.url.path.endswith("/navapp"):
            got.append((request.headers["webhook-id"], data["type"], data["data"]["version"]))
        return httpx.Response(204)

    async with httpx.AsyncClient(transport=httpx.MockTransport(partner)) as client:
        hub = fake_hub(client, tmp_path, fake)
        after = Dispatcher(partners=PARTNERS, hub=hub, metrics=CountingMetrics(),  # type: ignore[arg-type]
                           settled_get=table.get,
                           settled_put=lambda k, v: table.__setitem__(k, v), owns=lambda a: True,
                           wall=fake.clock)
        async with hub:
            for ev in evs[3:]:
                fake.now = max(fake.now, ev.ts)
                after.handle(ev, lambda: None)
                await hub.drain()
    pid_ = deliveries("navapp", evs)[0].view.alert_id
    assert got == [(f"{pid_}-v8", "alert.updated", 8), (f"{pid_}-v9", "alert.updated", 9),
                   (f"{pid_}-v10", "alert.cancelled", 10)]
    assert fake.now >= cancel_from and hub.stats()["navapp"].expired == 0
    records = [r for r in read_audit(tmp_path / "a.jsonl") if r.partner == "navapp"]
    assert [r.message_id for r in records if r.status == "delivered"] == [m for m, *_ in got]
    assert {r.message_id for r in records} == {m for m, *_ in got}


def _rec(version: int, message_id: str, status: str, k: int) -> AuditRecord:
    return AuditRecord(at=LATER + timedelta(seconds=k), partner="navapp", alert_id="P",
                       version=version, action="update", status=status, attempt=1,
                       message_id=message_id, started_at=LATER)


@pytest.mark.parametrize(("records", "counts"), [
    # the create v5 went as P-v5 before the deploy, its restart cut it short (nothing of the
    # life delivered: counted from 1 after it); v9 went as P-v5 after it
    ([_rec(5, "P-v5", "sending", 0),
      *[_rec(v, f"P-v{v - 4}", s, 2 * v + k) for v in range(5, 10)
        for k, s in enumerate(("sending", "delivered"))]], (5, 1)),
    # an audit log of the adapters between the per-life deploy and this fix: P-v6 cut short
    # before the deploy, the life renumbered after it (v8 as P-v4, the cancel v10 as P-v6)
    ([_rec(5, "P-v5", "sending", 0), _rec(5, "P-v5", "delivered", 1),
      _rec(6, "P-v6", "sending", 2),
      _rec(8, "P-v4", "sending", 3), _rec(8, "P-v4", "delivered", 4),
      _rec(10, "P-v6", "sending", 5), _rec(10, "P-v6", "delivered", 6)], (3, 1)),
])
def test_the_transparency_report_keeps_two_messages_of_one_id_apart(
    records: list[AuditRecord], counts: tuple[int, int]
) -> None:
    """A message cut short before the deploy and another sent under its id after it are two
    messages: the first is counted as possibly received, not absorbed by the second."""
    (r,) = [r for r in build_reports(CONFIG, records) if r.partner.id == "navapp"]
    assert (r.messages_delivered, r.messages_uncertain) == counts
    assert (r.alerts_sent, r.alerts_uncertain) == (1, 0)
