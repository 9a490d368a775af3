"""A re-created alert through a real worker on Kafka (docs/privacy.md, item 4): the same engine
id lives twice (v1..v4, then v5..v7 forty minutes later, as the engine counts), written to
``alerts`` one step at a time. Each pseudonymous partner gets each life under its own id,
counting from 1: the webhook body and id, the CAP identifier and references. The worker's
bookkeeping (its mailbox, the ``delivered`` table, the audit log) keeps the engine's version,
and still knows what the partner received of a life (no second create)."""

from __future__ import annotations

from pathlib import Path

import pytest
from kafka import KafkaProducer
from lxml import etree

from adapters.audit import read_audit
from adapters.policy import life_stamp
from broker import codec
from broker.sink import SinkServer
from tests.integration.conftest import Run
from tests.integration.test_worker_delivery import SAMPLE, real_secrets, wait_for
from tests.unit.adapters.factory import T0
from tests.unit.adapters.test_life_versions import LATER, two_lives

pytestmark = pytest.mark.integration
NS = {"c": "urn:oasis:names:tc:emergency:cap:1.2"}


def test_a_re_created_alert_counts_from_1_in_each_life_at_every_push_partner(
    kafka_run: Run, tmp_path: Path
) -> None:
    env = real_secrets()
    with SinkServer(secrets=[env["NAVAPP_WEBHOOK_SECRET"], env["COUNTY_WEBHOOK_SECRET"]]) as sink:
        partners_file = tmp_path / "partners.toml"
        partners_file.write_text(SAMPLE.read_text().replace("http://127.0.0.1:8088", sink.url))
        audit_file = tmp_path / "audit.jsonl"
        worker = kafka_run.worker(
            BROKER_PARTNERS=str(partners_file), BROKER_AUDIT_FILE=str(audit_file),
            BROKER_DELIVERY_MAX_AGE_S="",  # hand-made events of 2026-11-25
            **env,
        )
        worker.wait_ready()
        producer = KafkaProducer(bootstrap_servers=kafka_run.bootstrap)
        events = two_lives()
        for k, ev in enumerate(events, start=1):  # one step at a time: none superseded

            def both_have_it(k: int = k) -> bool:
                paths = [r.path for r in sink.received]
                return paths.count("/hooks/navapp") == k and paths.count("/hooks/county") == k

            producer.send(kafka_run.topic("alerts"), key=ev.alert_id.encode(),
                          value=codec.encode(ev))
            producer.flush()
            wait_for(both_have_it, f"step {k} at both partners",
                     detail=lambda: ([(r.path, r.message_id) for r in sink.received],
                                     worker.log_tail(30)))
        producer.close()

    navapp = [r for r in sink.received if r.path == "/hooks/navapp"]
    old, new = navapp[0].body["data"]["alert_id"], navapp[-1].body["data"]["alert_id"]
    assert old != new
    assert [(r.body["data"]["alert_id"], r.body["data"]["version"], r.body["type"], r.message_id)
            for r in navapp] == [
        (a, n, t, f"{a}-v{n}") for a, n, t in zip(
            [old] * 4 + [new] * 3, [1, 2, 3, 4, 1, 2, 3],
            ["alert.created", "alert.updated", "alert.updated", "alert.cancelled",
             "alert.created", "alert.updated", "alert.cancelled"], strict=True)]

    county = [r for r in sink.received if r.path == "/hooks/county"]
    docs = [etree.fromstring(r.body["data"]["cap"].encode()) for r in county]
    cap_new = docs[-1].findtext("c:identifier", namespaces=NS).split("-")[0]
    stem = f"{cap_new}-{life_stamp(LATER)}"
    assert [(d.findtext("c:identifier", namespaces=NS), d.findtext("c:msgType", namespaces=NS),
             (d.findtext("c:references", namespaces=NS) or ",").split(",")[1])
            for d in docs[4:]] == [(f"{stem}-v1", "Alert", ""), (f"{stem}-v2", "Update",
                                   f"{stem}-v1"), (f"{stem}-v3", "Cancel", f"{stem}-v2")]
    first_stem = f"{docs[0].findtext('c:identifier', namespaces=NS).split('-')[0]}-" \
                 f"{life_stamp(T0)}"
    assert [d.findtext("c:identifier", namespaces=NS) for d in docs[:4]] == [
        f"{first_stem}-v{n}" for n in (1, 2, 3, 4)]

    records = list(read_audit(audit_file))
    for path, got in (("navapp", navapp), ("county", county)):
        delivered = [r for r in records if r.partner == path and r.status == "delivered"]
        assert [r.message_id for r in delivered] == [r.message_id for r in got]
        assert [r.version for r in delivered] == [ev.version for ev in events]  # the engine's
